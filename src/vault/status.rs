//! The server's health, read with a plain GET of `sys/health`: vaultrs' own health call does
//! not parse OpenBao's reply, and this one must work on a sealed or uninitialised server.

use serde::Serialize;

use super::{Vault, VaultError};

/// What `sys/health` says about a server.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub address: String,
    /// `active`, `standby`, `sealed` or `uninitialized`.
    pub state: String,
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub version: String,
}

/// The state a `sys/health` status code stands for (Vault's documented defaults).
fn state_of(code: u16) -> Option<&'static str> {
    Some(match code {
        200 => "active",
        429 | 472 | 473 => "standby",
        501 => "uninitialized",
        503 => "sealed",
        _ => return None,
    })
}

impl Vault {
    /// Whether the server is initialised, sealed or standby, and its version.
    pub async fn status(&self) -> Result<Status, VaultError> {
        let path = "sys/health";
        let url = format!("{}/v1/{path}", self.address());
        let response = self
            .client
            .http
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| super::error::unreachable(self.address(), &e))?;
        let code = response.status().as_u16();
        let state = state_of(code).ok_or_else(|| VaultError::Refused {
            address: self.address().to_string(),
            path: path.into(),
            message: format!("unexpected health status HTTP {code}"),
        })?;
        let body: serde_json::Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let flag = |key: &str, default: bool| body[key].as_bool().unwrap_or(default);
        Ok(Status {
            address: self.address().to_string(),
            state: state.to_string(),
            initialized: flag("initialized", state != "uninitialized"),
            sealed: flag("sealed", state == "sealed"),
            standby: flag("standby", state == "standby"),
            version: body["version"].as_str().unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_codes_map_to_states() {
        assert_eq!(state_of(200), Some("active"));
        assert_eq!(state_of(429), Some("standby"));
        assert_eq!(state_of(501), Some("uninitialized"));
        assert_eq!(state_of(503), Some("sealed"));
        assert_eq!(state_of(500), None);
    }
}
