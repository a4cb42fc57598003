//! age X25519 keys: generation, recipients (`age1...`) and identity files, in the formats of
//! the standard `age-keygen` tool.

use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use super::{Error, Problem};
use crate::secrets::Secret;

/// A fresh key pair: the public recipient to encrypt to, the secret key to open with.
pub struct GeneratedIdentity {
    /// `age1...`: safe to share, to put in a playbook, to give to a backup host.
    pub recipient: String,
    /// `AGE-SECRET-KEY-1...`: opens everything encrypted to the recipient.
    pub secret_key: Secret,
}

impl GeneratedIdentity {
    /// The identity file as `age-keygen` writes it (readable by `age -d -i FILE`).
    pub fn identity_file(&self, created: &str) -> String {
        format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient,
            self.secret_key.expose()
        )
    }
}

/// Generates an X25519 key pair from the OS random number generator.
pub fn generate_identity() -> GeneratedIdentity {
    let identity = age::x25519::Identity::generate();
    GeneratedIdentity {
        recipient: identity.to_public().to_string(),
        secret_key: Secret::new(identity.to_string().expose_secret()),
    }
}

/// Parses a recipient (`age1...`).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, String> {
    let text = text.trim();
    if text.starts_with("ssh-") {
        return Err(format!(
            "SSH recipients are not supported (`{}...`); use an age X25519 key (age1...)",
            &text[..text.len().min(11)]
        ));
    }
    age::x25519::Recipient::from_str(text)
        .map_err(|e| format!("`{text}` is not an age recipient ({e}); expected age1..."))
}

/// Reads the X25519 identities of an identity file (`age-keygen` format: comments, blank
/// lines, one `AGE-SECRET-KEY-1...` per line).
pub fn read_identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path, "read the identity file", e))?;
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is secret: the error names its number, never its text.
        let identity = age::x25519::Identity::from_str(line).map_err(|e| {
            Error::new(
                path,
                Problem::Key(format!(
                    "line {} is not an age identity ({e}); expected AGE-SECRET-KEY-1...",
                    number + 1
                )),
            )
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(Error::new(
            path,
            Problem::Key("the identity file holds no AGE-SECRET-KEY-1... line".into()),
        ));
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_file_reads_back_to_the_same_recipient() {
        let generated = generate_identity();
        assert!(generated.recipient.starts_with("age1"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, generated.identity_file("2026-11-23T00:00:00Z")).unwrap();
        let identities = read_identity_file(&path).unwrap();
        assert_eq!(identities.len(), 1);
        assert_eq!(identities[0].to_public().to_string(), generated.recipient);
        assert!(parse_recipient(&generated.recipient).is_ok());
    }

    #[test]
    fn bad_identity_lines_are_named_by_number_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, "# comment\nAGE-SECRET-KEY-1NOTAKEYcanary\n").unwrap();
        let Err(e) = read_identity_file(&path) else {
            panic!("a bad line was accepted")
        };
        let message = e.to_string();
        assert!(
            message.contains("line 2 is not an age identity"),
            "{message}"
        );
        assert!(!message.contains("canary"), "{message}");
    }

    #[test]
    fn recipients_are_checked() {
        assert!(parse_recipient("age1xyz")
            .unwrap_err()
            .contains("is not an age recipient"));
        assert!(parse_recipient("ssh-ed25519 AAAA")
            .unwrap_err()
            .contains("SSH recipients are not supported"));
    }
}
