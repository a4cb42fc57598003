//! The PKI secrets engine: a root CA, roles, and certificates issued from them.

use vaultrs::api::pki::requests::{
    GenerateCertificateRequest, GenerateRootRequest, SetRoleRequest,
};
use vaultrs::pki;

use super::sys::EngineSettings;
use super::{check_name, check_path, mount_path, Vault, VaultError};
use crate::secrets::Secret;

/// Settings of a root CA.
#[derive(Debug, Clone, Default)]
pub struct RootSettings {
    pub ttl: Option<String>,
    /// `rsa`, `ec` or `ed25519`.
    pub key_type: Option<String>,
    pub key_bits: Option<u64>,
}

/// Settings of a PKI role: which names it may issue for, and for how long.
#[derive(Debug, Clone, Default)]
pub struct PkiRoleSettings {
    pub allowed_domains: Vec<String>,
    pub allow_subdomains: Option<bool>,
    pub allow_bare_domains: Option<bool>,
    pub allow_localhost: Option<bool>,
    pub allow_any_name: Option<bool>,
    pub allow_ip_sans: Option<bool>,
    pub ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub key_type: Option<String>,
    pub key_bits: Option<u64>,
}

/// Settings of one certificate to issue.
#[derive(Debug, Clone, Default)]
pub struct IssueSettings {
    pub ttl: Option<String>,
    pub alt_names: Vec<String>,
    pub ip_sans: Vec<String>,
}

/// A root CA just generated.
pub struct Root {
    pub certificate: String,
    pub serial: String,
    /// Unix seconds.
    pub expiration: u64,
}

/// An issued certificate with its key.
pub struct Issued {
    pub certificate: String,
    pub issuing_ca: String,
    pub ca_chain: Vec<String>,
    pub private_key: Secret,
    pub private_key_type: String,
    pub serial: String,
    /// Unix seconds.
    pub expiration: u64,
}

/// A certificate as a PKI mount stores it (issued ones and its CAs).
pub struct Stored {
    pub serial: String,
    pub certificate: String,
    pub revoked: bool,
}

/// How many certificates are read at the same time.
const READ_CONCURRENCY: usize = 8;

fn check_mount(mount: &str) -> Result<(), VaultError> {
    check_path("PKI mount", mount_path(mount))
}

impl Vault {
    /// Enables a PKI engine at `mount` that may issue certificates up to `max_ttl`.
    pub async fn pki_enable(&self, mount: &str, max_ttl: &str) -> Result<(), VaultError> {
        let settings = EngineSettings {
            max_lease_ttl: Some(max_ttl.to_string()),
            ..EngineSettings::default()
        };
        self.mount_enable(mount, "pki", &settings).await
    }

    /// Generates the mount's root CA (key kept inside Vault); returns its certificate.
    pub async fn pki_root(
        &self,
        mount: &str,
        common_name: &str,
        settings: &RootSettings,
    ) -> Result<Root, VaultError> {
        check_mount(mount)?;
        let mut request = GenerateRootRequest::builder();
        request.common_name(common_name);
        if let Some(ttl) = &settings.ttl {
            request.ttl(ttl.clone());
        }
        if let Some(kind) = &settings.key_type {
            request.key_type(kind.clone());
        }
        if let Some(bits) = settings.key_bits {
            request.key_bits(bits);
        }
        let path = format!("{}/root/generate/internal", mount_path(mount));
        let root = self
            .call(
                &path,
                pki::cert::ca::generate(
                    &self.client,
                    mount_path(mount),
                    "internal",
                    Some(&mut request),
                ),
            )
            .await?
            .ok_or_else(|| VaultError::Refused {
                address: self.address().to_string(),
                path,
                message: "no certificate in the reply (a root CA may already exist)".into(),
            })?;
        Ok(Root {
            certificate: root.certificate,
            serial: root.serial_number,
            expiration: root.expiration,
        })
    }

    /// Creates or updates a role certificates are issued under.
    pub async fn pki_role(
        &self,
        mount: &str,
        name: &str,
        settings: &PkiRoleSettings,
    ) -> Result<(), VaultError> {
        check_mount(mount)?;
        check_name("PKI role", name)?;
        let mut request = SetRoleRequest::builder();
        request.allowed_domains(settings.allowed_domains.clone());
        if let Some(v) = settings.allow_subdomains {
            request.allow_subdomains(v);
        }
        if let Some(v) = settings.allow_bare_domains {
            request.allow_bare_domains(v);
        }
        if let Some(v) = settings.allow_localhost {
            request.allow_localhost(v);
        }
        if let Some(v) = settings.allow_any_name {
            request.allow_any_name(v);
        }
        if let Some(v) = settings.allow_ip_sans {
            request.allow_ip_sans(v);
        }
        if let Some(ttl) = &settings.ttl {
            request.ttl(ttl.clone());
        }
        if let Some(ttl) = &settings.max_ttl {
            request.max_ttl(ttl.clone());
        }
        if let Some(kind) = &settings.key_type {
            request.key_type(kind.clone());
        }
        if let Some(bits) = settings.key_bits {
            request.key_bits(bits);
        }
        self.call(
            &format!("{}/roles/{name}", mount_path(mount)),
            pki::role::set(&self.client, mount_path(mount), name, Some(&mut request)),
        )
        .await
    }

    /// Issues a certificate for `common_name` under a role; the private key is a Secret.
    pub async fn pki_issue(
        &self,
        mount: &str,
        role: &str,
        common_name: &str,
        settings: &IssueSettings,
    ) -> Result<Issued, VaultError> {
        check_mount(mount)?;
        check_name("PKI role", role)?;
        let mut request = GenerateCertificateRequest::builder();
        request.common_name(common_name);
        if let Some(ttl) = &settings.ttl {
            request.ttl(ttl.clone());
        }
        if !settings.alt_names.is_empty() {
            request.alt_names(settings.alt_names.join(","));
        }
        if !settings.ip_sans.is_empty() {
            request.ip_sans(settings.ip_sans.join(","));
        }
        let issued = self
            .call(
                &format!("{}/issue/{role}", mount_path(mount)),
                pki::cert::generate(&self.client, mount_path(mount), role, Some(&mut request)),
            )
            .await?;
        Ok(Issued {
            certificate: issued.certificate,
            issuing_ca: issued.issuing_ca,
            ca_chain: issued.ca_chain.unwrap_or_default(),
            private_key: Secret::new(issued.private_key),
            private_key_type: issued.private_key_type,
            serial: issued.serial_number,
            expiration: issued.expiration.unwrap_or_default(),
        })
    }

    /// Every certificate the mount has stored (what it issued and its CAs, revoked ones
    /// marked), read eight at a time.
    pub async fn pki_certificates(&self, mount: &str) -> Result<Vec<Stored>, VaultError> {
        use futures_util::{StreamExt, TryStreamExt};
        check_mount(mount)?;
        let serials = match self
            .call(
                &format!("{}/certs", mount_path(mount)),
                pki::cert::list(&self.client, mount_path(mount)),
            )
            .await
        {
            Err(VaultError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        futures_util::stream::iter(serials)
            .map(|serial| async move {
                let read = self
                    .call(
                        &format!("{}/cert/{serial}", mount_path(mount)),
                        pki::cert::read(&self.client, mount_path(mount), &serial),
                    )
                    .await?;
                Ok(Stored {
                    serial,
                    certificate: read.certificate,
                    revoked: read.revocation_time > 0,
                })
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }
}
