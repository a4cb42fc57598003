//! The KV version 2 secrets engine: values come back as [`Secret`]s.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use vaultrs::kv2;

use super::{check_path, mount_path, Vault, VaultError};
use crate::secrets::Secret;

/// The API path of a KV v2 operation, for messages: `secret/data/shop/db`.
fn api_path(mount: &str, kind: &str, path: &str) -> String {
    format!("{}/{kind}/{path}", mount_path(mount))
}

fn check(mount: &str, path: &str) -> Result<(), VaultError> {
    check_path("KV mount", mount_path(mount))?;
    check_path("KV path", path)
}

impl Vault {
    /// The latest version of a secret: each key's value as a Secret (non-string values as
    /// their JSON text).
    pub async fn kv_get(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<BTreeMap<String, Secret>, VaultError> {
        check(mount, path)?;
        let data: HashMap<String, Value> = self
            .call(
                &api_path(mount, "data", path),
                kv2::read(&self.client, mount_path(mount), path),
            )
            .await?;
        Ok(data
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (key, Secret::new(text))
            })
            .collect())
    }

    /// Writes a new version of a secret (replacing every key); returns the version number.
    pub async fn kv_put(
        &self,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<u64, VaultError> {
        check(mount, path)?;
        let written = self
            .call(
                &api_path(mount, "data", path),
                kv2::set(&self.client, mount_path(mount), path, data),
            )
            .await?;
        Ok(written.version)
    }

    /// The keys under a path (`shop/` for a folder, `db` for a secret); none when empty.
    pub async fn kv_list(&self, mount: &str, path: &str) -> Result<Vec<String>, VaultError> {
        check_path("KV mount", mount_path(mount))?;
        let path = path.trim_matches('/');
        if !path.is_empty() {
            check_path("KV path", path)?;
        }
        match self
            .call(
                &api_path(mount, "metadata", path),
                kv2::list(&self.client, mount_path(mount), path),
            )
            .await
        {
            Err(VaultError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Deletes the latest version (recoverable with `bao kv undelete`).
    pub async fn kv_delete(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        check(mount, path)?;
        self.call(
            &api_path(mount, "data", path),
            kv2::delete_latest(&self.client, mount_path(mount), path),
        )
        .await
    }

    /// Deletes every version and the metadata of a secret: gone for good.
    pub async fn kv_destroy(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        check(mount, path)?;
        self.call(
            &api_path(mount, "metadata", path),
            kv2::delete_metadata(&self.client, mount_path(mount), path),
        )
        .await
    }

    /// The metadata of a secret: current and oldest version, times, and each version's state.
    pub async fn kv_metadata(&self, mount: &str, path: &str) -> Result<Value, VaultError> {
        check(mount, path)?;
        let meta = self
            .call(
                &api_path(mount, "metadata", path),
                kv2::read_metadata(&self.client, mount_path(mount), path),
            )
            .await?;
        let mut versions: Vec<Value> = meta
            .versions
            .iter()
            .map(|(number, v)| {
                serde_json::json!({
                    "version": number.parse::<u64>().unwrap_or_default(),
                    "created_time": v.created_time,
                    "deletion_time": v.deletion_time,
                    "destroyed": v.destroyed,
                })
            })
            .collect();
        versions.sort_by_key(|v| v["version"].as_u64());
        Ok(serde_json::json!({
            "current_version": meta.current_version,
            "oldest_version": meta.oldest_version,
            "created_time": meta.created_time,
            "updated_time": meta.updated_time,
            "max_versions": meta.max_versions,
            "custom_metadata": meta.custom_metadata,
            "versions": versions,
        }))
    }

    /// Whether this connection may read a secret: tries a real read; a missing secret counts
    /// as readable (the server checks permission first), permission denied as not.
    pub async fn kv_readable(&self, mount: &str, path: &str) -> Result<bool, VaultError> {
        match self.kv_get(mount, path).await {
            Ok(_) | Err(VaultError::NotFound { .. }) => Ok(true),
            Err(VaultError::Denied { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }
}
