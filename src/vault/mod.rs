//! A Vault (or OpenBao) server reached through its HTTP API with vaultrs: the connection,
//! its configuration from the environment, and the operations playbooks need. Every error
//! names the server and the API path; secret values come back as [`Secret`].

mod approle;
mod error;
mod kv;
mod pki;
mod status;
mod sys;
mod token;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub use approle::{Login, RoleSettings, SecretId};
pub use error::VaultError;
pub use pki::{IssueSettings, Issued, PkiRoleSettings, Root, RootSettings, Stored};
pub use status::Status;
pub use sys::{EngineSettings, Mount};

use crate::secrets::Secret;

/// How long one request may take before the server counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server is and who we are to it.
#[derive(Clone)]
pub struct Config {
    /// `http(s)://host:port`, without a trailing slash.
    pub address: String,
    pub token: Option<Secret>,
    pub namespace: Option<String>,
    /// A PEM file of CA certificates to trust for an https address.
    pub ca_cert: Option<PathBuf>,
}

impl Config {
    /// The configuration in `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE`, `VAULT_CACERT`
    /// (each falling back to its `BAO_` spelling); `None` when no address is set.
    pub fn from_env() -> Option<Config> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same, from any lookup of variables (the environment, a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Config> {
        let var = |suffix: &str| {
            get(&format!("VAULT_{suffix}"))
                .or_else(|| get(&format!("BAO_{suffix}")))
                .filter(|v| !v.is_empty())
        };
        Some(Config {
            address: var("ADDR")?.trim_end_matches('/').to_string(),
            token: var("TOKEN").map(Secret::new),
            namespace: var("NAMESPACE"),
            ca_cert: var("CACERT").map(PathBuf::from),
        })
    }

    /// True when `VAULT_ADDR` or `BAO_ADDR` is set.
    pub fn in_env() -> bool {
        Self::from_env().is_some()
    }
}

/// A connection to one Vault server with one token (or none, for status and logins).
pub struct Vault {
    config: Config,
    client: VaultClient,
}

impl Vault {
    /// Prepares a connection; nothing is sent until the first call.
    pub fn connect(config: Config) -> Result<Vault, VaultError> {
        let url = reqwest::Url::parse(&config.address)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                VaultError::Invalid(format!(
                    "`{}` is not a Vault address: expected http(s)://host:port",
                    config.address
                ))
            })?;
        // vaultrs puts these in HTTP headers and panics on characters a header cannot carry.
        if let Some(token) = &config.token {
            if !header_safe(token.expose()) {
                return Err(VaultError::Invalid(
                    "the Vault token contains characters a token cannot have (a newline?)".into(),
                ));
            }
        }
        if let Some(ns) = &config.namespace {
            if !header_safe(ns) {
                return Err(VaultError::Invalid(format!(
                    "`{ns}` is not a Vault namespace"
                )));
            }
        }
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(url.as_str())
            .token(config.token.as_ref().map_or("", |t| t.expose()))
            .ca_certs(
                config
                    .ca_cert
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            )
            .verify(true)
            .identity(None)
            .timeout(Some(REQUEST_TIMEOUT));
        if let Some(ns) = &config.namespace {
            settings.set_namespace(ns.clone());
        }
        let settings = settings
            .build()
            .map_err(|e| VaultError::Invalid(format!("Vault at {}: {e}", config.address)))?;
        let client = VaultClient::new(settings)
            .map_err(|e| error::classify(&config.address, "", false, e))?;
        Ok(Vault { config, client })
    }

    /// The server's address, for messages.
    pub fn address(&self) -> &str {
        &self.config.address
    }

    /// The token this connection uses, if any.
    pub fn token(&self) -> Option<&Secret> {
        self.config.token.as_ref()
    }

    /// The same server with another token.
    pub fn with_token(&self, token: Secret) -> Result<Vault, VaultError> {
        Vault::connect(Config {
            token: Some(token),
            ..self.config.clone()
        })
    }

    /// Runs one vaultrs call, turning its error into a sentence about `path`.
    async fn call<T>(
        &self,
        path: &str,
        fut: impl Future<Output = Result<T, vaultrs::error::ClientError>>,
    ) -> Result<T, VaultError> {
        fut.await
            .map_err(|e| error::classify(self.address(), path, self.config.token.is_some(), e))
    }
}

fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Checks a name that becomes one segment of an API path (a role, a policy).
pub fn check_name(what: &str, name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::Invalid(format!(
            "{what} `{name}` must be letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// Checks a slash-separated path inside a mount (a KV path, a mount path): no empty, `.` or
/// `..` segments, nothing that would change the URL.
pub fn check_path(what: &str, path: &str) -> Result<(), VaultError> {
    let ok = !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| !c.is_control() && !matches!(c, '?' | '#' | '%' | '\\'))
        });
    if ok {
        Ok(())
    } else {
        Err(VaultError::Invalid(format!(
            "{what} `{path}` must be non-empty segments separated by `/`, without `.`, `..`, `?`, `#` or `%`"
        )))
    }
}

/// A mount path as the API wants it: no leading or trailing slash.
fn mount_path(mount: &str) -> &str {
    mount.trim_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn vault_variables_win_over_bao_ones() {
        let env: HashMap<&str, &str> = [
            ("BAO_ADDR", "http://bao:8200/"),
            ("VAULT_TOKEN", "s.vault-token-value"),
            ("BAO_TOKEN", "s.bao-token-value"),
            ("BAO_NAMESPACE", "team"),
        ]
        .into();
        let config = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.address, "http://bao:8200");
        assert_eq!(config.token.unwrap().expose(), "s.vault-token-value");
        assert_eq!(config.namespace.as_deref(), Some("team"));
        assert!(config.ca_cert.is_none());
        assert!(Config::from_lookup(|_| None).is_none());
    }

    #[test]
    fn names_and_paths_cannot_escape_their_api_path() {
        assert!(check_name("role", "shop-api_1").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(check_name("role", bad).is_err(), "{bad}");
        }
        assert!(check_path("path", "shop/db").is_ok());
        for bad in [
            "",
            "shop//db",
            "shop/../sys",
            "/shop",
            "shop/",
            "a?x=1",
            "a%2e",
        ] {
            assert!(check_path("path", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_addresses_and_tokens_are_refused_before_any_request() {
        let config = |address: &str, token: &str| Config {
            address: address.into(),
            token: Some(Secret::new(token)),
            namespace: None,
            ca_cert: None,
        };
        let err = Vault::connect(config("127.0.0.1:8200", "t0ken"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("is not a Vault address"), "{err}");
        let err = Vault::connect(config("http://127.0.0.1:8200", "tok\nen"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("a newline"), "{err}");
        assert!(Vault::connect(config("http://127.0.0.1:8200", "t0ken")).is_ok());
    }
}
