//! Policies, auth methods and secrets engines (`sys/policy`, `sys/auth`, `sys/mounts`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use vaultrs::api::sys::requests::{EnableEngineDataConfigBuilder, EnableEngineRequest};
use vaultrs::sys;

use super::{check_name, check_path, mount_path, Vault, VaultError};

/// An enabled auth method or secrets engine, by its path.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mount {
    /// `approle`, `kv`, `pki`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub accessor: String,
    /// Engine options (`version: "2"` for KV v2).
    pub options: BTreeMap<String, String>,
}

/// Settings for enabling a secrets engine.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// `max_lease_ttl` of the mount (the longest certificate a PKI mount issues).
    pub max_lease_ttl: Option<String>,
    /// Engine options, e.g. `version = 2` for KV.
    pub options: BTreeMap<String, String>,
}

/// An entry of `sys/auth` or `sys/mounts` (two reply types with the same fields), keyed by
/// its path without the trailing slash.
fn mount(
    path: String,
    kind: String,
    description: String,
    accessor: String,
    options: Option<HashMap<String, String>>,
) -> (String, Mount) {
    let mount = Mount {
        kind,
        description,
        accessor,
        options: options.unwrap_or_default().into_iter().collect(),
    };
    (path.trim_end_matches('/').to_string(), mount)
}

impl Vault {
    /// Creates or replaces a policy.
    pub async fn policy_write(&self, name: &str, rules: &str) -> Result<(), VaultError> {
        check_name("policy", name)?;
        self.call(
            &format!("sys/policy/{name}"),
            sys::policy::set(&self.client, name, rules),
        )
        .await
    }

    /// The rules of a policy.
    pub async fn policy_read(&self, name: &str) -> Result<String, VaultError> {
        check_name("policy", name)?;
        let policy = self
            .call(
                &format!("sys/policy/{name}"),
                sys::policy::read(&self.client, name),
            )
            .await?;
        Ok(policy.rules)
    }

    /// The names of every policy.
    pub async fn policy_list(&self) -> Result<Vec<String>, VaultError> {
        let list = self
            .call("sys/policy", sys::policy::list(&self.client))
            .await?;
        Ok(list.policies)
    }

    /// Deletes a policy.
    pub async fn policy_delete(&self, name: &str) -> Result<(), VaultError> {
        check_name("policy", name)?;
        self.call(
            &format!("sys/policy/{name}"),
            sys::policy::delete(&self.client, name),
        )
        .await
    }

    /// The enabled auth methods by path (without the trailing slash).
    pub async fn auth_list(&self) -> Result<BTreeMap<String, Mount>, VaultError> {
        let methods = self.call("sys/auth", sys::auth::list(&self.client)).await?;
        Ok(methods
            .into_iter()
            .map(|(path, m)| mount(path, m.mount_type, m.description, m.accessor, m.options))
            .collect())
    }

    /// Enables an auth method of `kind` at `path`.
    pub async fn auth_enable(&self, path: &str, kind: &str) -> Result<(), VaultError> {
        check_path("auth path", mount_path(path))?;
        check_name("auth method type", kind)?;
        self.call(
            &format!("sys/auth/{}", mount_path(path)),
            sys::auth::enable(&self.client, mount_path(path), kind, None),
        )
        .await
    }

    /// The enabled secrets engines by path (without the trailing slash).
    pub async fn mount_list(&self) -> Result<BTreeMap<String, Mount>, VaultError> {
        let mounts = self
            .call("sys/mounts", sys::mount::list(&self.client))
            .await?;
        Ok(mounts
            .into_iter()
            .map(|(path, m)| mount(path, m.mount_type, m.description, m.accessor, m.options))
            .collect())
    }

    /// Enables a secrets engine of `kind` at `path`.
    pub async fn mount_enable(
        &self,
        path: &str,
        kind: &str,
        settings: &EngineSettings,
    ) -> Result<(), VaultError> {
        check_path("mount path", mount_path(path))?;
        check_name("secrets engine type", kind)?;
        let mut request = EnableEngineRequest::builder();
        if let Some(ttl) = &settings.max_lease_ttl {
            request.config(
                EnableEngineDataConfigBuilder::default()
                    .max_lease_ttl(ttl.clone())
                    .build()
                    .map_err(|e| VaultError::Invalid(e.to_string()))?,
            );
        }
        if !settings.options.is_empty() {
            request.options(
                settings
                    .options
                    .clone()
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
            );
        }
        self.call(
            &format!("sys/mounts/{}", mount_path(path)),
            sys::mount::enable(&self.client, mount_path(path), kind, Some(&mut request)),
        )
        .await
    }
}
