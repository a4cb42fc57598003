//! Tokens: looking one up (its policies and expiry) and revoking it.

use serde_json::{json, Value};
use vaultrs::token;

use super::{Vault, VaultError};
use crate::secrets::Secret;

fn describe(t: vaultrs::api::token::responses::LookupTokenResponse) -> Value {
    // `id` is the token itself: it is left out.
    json!({
        "accessor": t.accessor,
        "display_name": t.display_name,
        "policies": t.policies,
        "ttl": t.ttl,
        "creation_ttl": t.creation_ttl,
        "expire_time": t.expire_time,
        "renewable": t.renewable.unwrap_or(false),
        "orphan": t.orphan,
        "num_uses": t.num_uses,
        "path": t.path,
        "role": t.role,
        "meta": t.meta,
    })
}

impl Vault {
    /// What this connection's token is: policies, TTL, expiry, accessor.
    pub async fn token_lookup_self(&self) -> Result<Value, VaultError> {
        self.call("auth/token/lookup-self", token::lookup_self(&self.client))
            .await
            .map(describe)
    }

    /// What another token is.
    pub async fn token_lookup(&self, other: &Secret) -> Result<Value, VaultError> {
        self.call(
            "auth/token/lookup",
            token::lookup(&self.client, other.expose()),
        )
        .await
        .map(describe)
    }

    /// Revokes this connection's token (and its children).
    pub async fn token_revoke_self(&self) -> Result<(), VaultError> {
        self.call("auth/token/revoke-self", token::revoke_self(&self.client))
            .await
    }

    /// Revokes another token (and its children).
    pub async fn token_revoke(&self, other: &Secret) -> Result<(), VaultError> {
        self.call(
            "auth/token/revoke",
            token::revoke(&self.client, other.expose()),
        )
        .await
    }
}
