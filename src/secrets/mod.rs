//! The `Secret` value type and the redaction of secret values from every output.
//!
//! A `Secret` prints as a mask in print, debug, errors, the journal and JSON. As a second
//! line of defence every secret value created in this process is remembered, and all text
//! runbook writes (logs, journal, reports, errors) passes through [`redact`], so a value
//! that leaked into a command's output or an error message is masked there too.
//!
//! [`store`] keeps them: Vault KV, or the local age-encrypted store.

pub mod store;

use std::fmt;
use std::sync::{Arc, RwLock};

/// What a secret prints as, everywhere.
pub const MASK: &str = "***";

/// Values shorter than this are not scrubbed from free text: masking every "a" or "1" would
/// destroy the output without protecting anything.
const MIN_REDACTED_LEN: usize = 4;

static KNOWN: RwLock<Vec<Arc<str>>> = RwLock::new(Vec::new());

/// A secret value: a password, token or key. It can be handed to primitives that need it
/// (exec environment, stdin, 0600 files, Vault), never printed.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value as a secret and registers it for redaction.
    pub fn new(value: impl Into<String>) -> Self {
        let value: Arc<str> = Arc::from(value.into());
        if value.len() >= MIN_REDACTED_LEN {
            let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
            if !known.iter().any(|k| **k == *value) {
                known.push(value.clone());
                // Longest first, so a secret that contains another is masked whole.
                known.sort_by_key(|k| std::cmp::Reverse(k.len()));
            }
        }
        Secret(value)
    }

    /// The plaintext, for the primitives that deliver it (never for display).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with another secret in constant time.
    pub fn matches(&self, other: &Secret) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// Replaces every known secret value in `text` with the mask.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for value in known.iter() {
        if out.contains(&**value) {
            out = out.replace(&**value, MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2-canary-value");
        assert_eq!(s.to_string(), MASK);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2-canary-value");
    }

    #[test]
    fn redact_masks_known_values_in_free_text() {
        let _ = Secret::new("canary-abc-123");
        let _ = Secret::new("canary-abc-123-longer");
        assert_eq!(
            redact("pw=canary-abc-123-longer and canary-abc-123."),
            "pw=*** and ***."
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_scrubbed_from_text() {
        let _ = Secret::new("ab");
        assert_eq!(redact("tab"), "tab");
    }

    #[test]
    fn matches_compares_whole_values() {
        assert!(Secret::new("same-value").matches(&Secret::new("same-value")));
        assert!(!Secret::new("same-value").matches(&Secret::new("same-valuf")));
        assert!(!Secret::new("same").matches(&Secret::new("same-value")));
    }
}
