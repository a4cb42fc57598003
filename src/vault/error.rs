//! What can go wrong talking to Vault, in sentences that name the server and the path.

use vaultrs::error::ClientError;

/// A failed Vault call, with the server and API path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no Vault configured: set VAULT_ADDR (or BAO_ADDR) to the server's address")]
    NotConfigured,
    /// Bad configuration or arguments, caught before any request (a name that would escape its
    /// API path, a CA file that does not parse).
    #[error("{0}")]
    Invalid(String),
    #[error("Vault at {address} is sealed; unseal it (`bao operator unseal`) and retry")]
    Sealed { address: String },
    #[error("Vault at {address} is unreachable: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("Vault at {address}: {path}: permission denied{hint}")]
    Denied {
        address: String,
        path: String,
        hint: &'static str,
    },
    #[error("Vault at {address}: {path}: not found")]
    NotFound { address: String, path: String },
    #[error("Vault at {address}: {path}: {message}")]
    Refused {
        address: String,
        path: String,
        message: String,
    },
}

/// The server could not be reached: the innermost cause of the failure ("Connection refused
/// (os error 111)" rather than "error sending request"), with the fix for an untrusted
/// certificate.
pub(crate) fn unreachable(address: &str, err: &(dyn std::error::Error + 'static)) -> VaultError {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let mut reason = cause.to_string();
    if reason.contains("certificate") {
        reason.push_str(" (set VAULT_CACERT to the CA that signed the server's certificate)");
    }
    VaultError::Unreachable {
        address: address.to_string(),
        reason,
    }
}

/// Turns a vaultrs error into a sentence. Response bodies are never quoted: a reply that
/// failed to parse may hold a secret (a private key, a token).
pub fn classify(address: &str, path: &str, has_token: bool, err: ClientError) -> VaultError {
    use rustify::errors::ClientError as Http;
    let address = address.to_string();
    let path = path.to_string();
    let api = |code: u16, errors: &[String]| match code {
        503 if errors.iter().any(|e| e.contains("sealed")) => VaultError::Sealed {
            address: address.clone(),
        },
        403 => VaultError::Denied {
            address: address.clone(),
            path: path.clone(),
            hint: if has_token {
                ": the token is invalid or expired, or none of its policies allows this path \
                 (check VAULT_TOKEN, or `bao token lookup` and the policy)"
            } else {
                " (no token: set VAULT_TOKEN or log in with AppRole)"
            },
        },
        404 => VaultError::NotFound {
            address: address.clone(),
            path: path.clone(),
        },
        _ => VaultError::Refused {
            address: address.clone(),
            path: path.clone(),
            message: if errors.is_empty() {
                format!("refused with HTTP {code}")
            } else {
                format!("{} (HTTP {code})", errors.join("; "))
            },
        },
    };
    match err {
        ClientError::APIError { code, errors } => api(code, &errors),
        ClientError::RestClientError { source } => match source {
            Http::ServerResponseError { code, .. } => api(code, &[]),
            Http::RequestError { .. } => unreachable(&address, &source),
            Http::ResponseParseError { .. } | Http::ResponseConversionError { .. } => {
                VaultError::Refused {
                    address,
                    path,
                    message:
                        "the reply was not the expected JSON (is this a Vault or OpenBao server?)"
                            .into(),
                }
            }
            other => VaultError::Refused {
                address,
                path,
                message: other.to_string(),
            },
        },
        ClientError::FileReadError { path: file, source } => {
            VaultError::Invalid(format!("cannot read the CA certificate {file}: {source}"))
        }
        ClientError::ParseCertificateError { path: file, .. } => VaultError::Invalid(format!(
            "the CA certificate {file} is not a PEM certificate"
        )),
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            VaultError::Refused {
                address,
                path,
                message: "the reply was empty".into(),
            }
        }
        other => VaultError::Refused {
            address,
            path,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_name_the_server_and_path() {
        let denied = classify(
            "http://127.0.0.1:8200",
            "secret/data/shop/db",
            true,
            ClientError::APIError {
                code: 403,
                errors: vec!["permission denied".into()],
            },
        );
        assert_eq!(
            denied.to_string(),
            "Vault at http://127.0.0.1:8200: secret/data/shop/db: permission denied: the token is \
             invalid or expired, or none of its policies allows this path (check VAULT_TOKEN, or \
             `bao token lookup` and the policy)"
        );
        let sealed = classify(
            "http://127.0.0.1:8200",
            "secret/data/x",
            true,
            ClientError::APIError {
                code: 503,
                errors: vec!["Vault is sealed".into()],
            },
        );
        assert_eq!(
            sealed.to_string(),
            "Vault at http://127.0.0.1:8200 is sealed; unseal it (`bao operator unseal`) and retry"
        );
        let other = classify(
            "http://v:8200",
            "sys/auth/approle",
            true,
            ClientError::APIError {
                code: 400,
                errors: vec!["path is already in use at approle/".into()],
            },
        );
        assert_eq!(
            other.to_string(),
            "Vault at http://v:8200: sys/auth/approle: path is already in use at approle/ (HTTP 400)"
        );
    }

    #[test]
    fn denied_without_a_token_says_so() {
        let denied = classify(
            "http://v:8200",
            "secret/data/a",
            false,
            ClientError::APIError {
                code: 403,
                errors: vec![],
            },
        );
        assert!(denied
            .to_string()
            .ends_with("permission denied (no token: set VAULT_TOKEN or log in with AppRole)"));
    }
}
