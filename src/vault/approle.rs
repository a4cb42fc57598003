//! AppRole: roles, their role-id and secret-ids, and logging in with them.

use serde_json::{json, Value};
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::auth::approle;

use super::{check_name, check_path, mount_path, Vault, VaultError};
use crate::secrets::Secret;

/// The settings of an AppRole role; durations as Vault reads them (`1h`, `720h`, `3600s`).
#[derive(Debug, Clone, Default)]
pub struct RoleSettings {
    pub token_policies: Vec<String>,
    pub token_ttl: Option<String>,
    pub token_max_ttl: Option<String>,
    pub secret_id_ttl: Option<String>,
    pub secret_id_num_uses: Option<u64>,
    pub token_num_uses: Option<u64>,
}

/// The outcome of a login: a connection with the new token, and what the token is.
pub struct Login {
    pub vault: Vault,
    /// The token's accessor (names it without revealing it).
    pub accessor: String,
    pub policies: Vec<String>,
    /// Seconds the token lives.
    pub lease_duration: u64,
}

/// A freshly generated secret-id.
pub struct SecretId {
    pub secret_id: Secret,
    pub accessor: String,
    /// Seconds it stays valid (0: forever).
    pub ttl: u64,
}

fn role_path(mount: &str, role: &str) -> String {
    format!("auth/{}/role/{role}", mount_path(mount))
}

fn check_role(mount: &str, role: &str) -> Result<(), VaultError> {
    check_path("AppRole mount", mount_path(mount))?;
    check_name("AppRole role", role)
}

impl Vault {
    /// Creates or updates a role.
    pub async fn approle_role_write(
        &self,
        mount: &str,
        role: &str,
        settings: &RoleSettings,
    ) -> Result<(), VaultError> {
        check_role(mount, role)?;
        let mut request = SetAppRoleRequest::builder();
        request.token_policies(settings.token_policies.clone());
        if let Some(ttl) = &settings.token_ttl {
            request.token_ttl(ttl.clone());
        }
        if let Some(ttl) = &settings.token_max_ttl {
            request.token_max_ttl(ttl.clone());
        }
        if let Some(ttl) = &settings.secret_id_ttl {
            request.secret_id_ttl(ttl.clone());
        }
        if let Some(uses) = settings.secret_id_num_uses {
            request.secret_id_num_uses(uses);
        }
        if let Some(uses) = settings.token_num_uses {
            request.token_num_uses(uses);
        }
        self.call(
            &role_path(mount, role),
            approle::role::set(&self.client, mount_path(mount), role, Some(&mut request)),
        )
        .await
    }

    /// A role's settings, durations in seconds.
    pub async fn approle_role_read(&self, mount: &str, role: &str) -> Result<Value, VaultError> {
        check_role(mount, role)?;
        let r = self
            .call(
                &role_path(mount, role),
                approle::role::read(&self.client, mount_path(mount), role),
            )
            .await?;
        Ok(json!({
            "token_policies": r.token_policies,
            "token_ttl": r.token_ttl,
            "token_max_ttl": r.token_max_ttl,
            "secret_id_ttl": r.secret_id_ttl,
            "secret_id_num_uses": r.secret_id_num_uses,
            "token_num_uses": r.token_num_uses,
            "bind_secret_id": r.bind_secret_id,
            "token_type": r.token_type,
        }))
    }

    /// The names of the roles of an AppRole mount.
    pub async fn approle_role_list(&self, mount: &str) -> Result<Vec<String>, VaultError> {
        check_path("AppRole mount", mount_path(mount))?;
        match self
            .call(
                &format!("auth/{}/role", mount_path(mount)),
                approle::role::list(&self.client, mount_path(mount)),
            )
            .await
        {
            Ok(list) => Ok(list.keys),
            Err(VaultError::NotFound { .. }) => Ok(Vec::new()),
            Err(other) => Err(other),
        }
    }

    /// The role-id of a role (half of its credentials, the non-secret half).
    pub async fn approle_role_id(&self, mount: &str, role: &str) -> Result<String, VaultError> {
        check_role(mount, role)?;
        let id = self
            .call(
                &format!("{}/role-id", role_path(mount, role)),
                approle::role::read_id(&self.client, mount_path(mount), role),
            )
            .await?;
        Ok(id.role_id)
    }

    /// Generates a new secret-id for a role.
    pub async fn approle_secret_id(&self, mount: &str, role: &str) -> Result<SecretId, VaultError> {
        check_role(mount, role)?;
        let generated = self
            .call(
                &format!("{}/secret-id", role_path(mount, role)),
                approle::role::secret::generate(&self.client, mount_path(mount), role, None),
            )
            .await?;
        Ok(SecretId {
            secret_id: Secret::new(generated.secret_id),
            accessor: generated.secret_id_accessor,
            ttl: generated.secret_id_ttl,
        })
    }

    /// Logs in with a role-id and secret-id; the returned connection carries the new token.
    pub async fn login_approle(
        &self,
        mount: &str,
        role_id: &Secret,
        secret_id: &Secret,
    ) -> Result<Login, VaultError> {
        check_path("AppRole mount", mount_path(mount))?;
        let path = format!("auth/{}/login", mount_path(mount));
        let auth = self
            .call(
                &path,
                approle::login(
                    &self.client,
                    mount_path(mount),
                    role_id.expose(),
                    secret_id.expose(),
                ),
            )
            .await
            .map_err(|e| match e {
                // A wrong secret-id is a 400 "invalid role or secret ID"; say it plainly.
                VaultError::Refused {
                    address,
                    path,
                    message,
                } if message.contains("invalid") => VaultError::Refused {
                    address,
                    path,
                    message: format!("login refused: {message}"),
                },
                other => other,
            })?;
        Ok(Login {
            vault: self.with_token(Secret::new(auth.client_token))?,
            accessor: auth.accessor,
            policies: auth.policies,
            lease_duration: auth.lease_duration,
        })
    }
}
