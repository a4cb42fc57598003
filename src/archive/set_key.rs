//! The data key of a backup set (format v2): one random age X25519 identity per set. Every
//! artifact of the set is encrypted to it, so reading an artifact costs an X25519 operation,
//! never a key derivation; the identity itself is stored in the set as `key.age`, encrypted
//! with the operator's key (a passphrase: one scrypt per set; or age recipients, so a host
//! that writes backups to recipients still cannot read them back). The same identity keys the
//! MAC that authenticates the set's manifest.
//!
//! `key.age` is an ordinary age file holding an `age-keygen` identity file:
//! `age -d -o set.key key.age` opens it, then `age -d -i set.key ARTIFACT` opens any artifact.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{seal, unseal, Compression, Encryption, Error, Key, Problem, SealOptions};
use super::{Sealed, UnsealOptions};
use crate::secrets::Secret;

/// The file of a set that holds its data key, wrapped by the operator's key.
pub const SET_KEY_FILE: &str = "key.age";

/// Separates the manifest MAC's key from every other use of the identity.
const MAC_CONTEXT: &[u8] = b"runbook backup set v2: manifest MAC";

/// A set's data key: the identity that opens its artifacts and keys its manifest's MAC.
#[derive(Clone)]
pub struct SetKey {
    /// `AGE-SECRET-KEY-1...`, registered for redaction like every Secret.
    identity: Secret,
    /// `age1...`: what the set's artifacts are encrypted to.
    pub recipient: String,
}

impl SetKey {
    /// A fresh key from the OS random number generator.
    pub fn generate() -> SetKey {
        let identity = age::x25519::Identity::generate();
        SetKey {
            recipient: identity.to_public().to_string(),
            identity: Secret::new(identity.to_string().expose_secret()),
        }
    }

    /// The key held by an identity line (`AGE-SECRET-KEY-1...`).
    pub fn from_identity(identity: &Secret) -> Result<SetKey, String> {
        let parsed = age::x25519::Identity::from_str(identity.expose().trim())
            .map_err(|_| "the set key is not an age identity (AGE-SECRET-KEY-1...)".to_string())?;
        Ok(SetKey {
            recipient: parsed.to_public().to_string(),
            identity: Secret::new(identity.expose().trim()),
        })
    }

    /// The identity, as a Secret (masked wherever it is shown).
    pub fn identity(&self) -> &Secret {
        &self.identity
    }

    /// What opens the set's artifacts.
    pub fn key(&self) -> Key {
        let identity = age::x25519::Identity::from_str(self.identity.expose())
            .expect("a SetKey holds a valid identity");
        Key::Identities(vec![identity])
    }

    /// What the set's artifacts are sealed with.
    pub fn encryption(&self) -> Encryption {
        let recipient = age::x25519::Recipient::from_str(&self.recipient)
            .expect("a SetKey holds a valid recipient");
        Encryption::Recipients(vec![recipient])
    }

    /// Writes the key to `path` (atomically, 0600) encrypted with the operator's key, as an
    /// identity file `age -d` turns back into one `age -i` reads.
    pub fn wrap(&self, path: &Path, operator: &Encryption) -> Result<Sealed, Error> {
        if matches!(operator, Encryption::None) {
            return Err(Error::new(
                path,
                Problem::Key(
                    "a backup set's key must be encrypted: give a passphrase or recipients".into(),
                ),
            ));
        }
        let file = format!(
            "# runbook backup set key\n# public key: {}\n{}\n",
            self.recipient,
            self.identity.expose()
        );
        let options = SealOptions {
            compression: Compression::None,
            encryption: operator.clone(),
            artifact: Some("the set key".into()),
            stop: None,
        };
        seal(file.as_bytes(), path, &options)
    }

    /// Reads the key of `path` with the operator's key (one scrypt for a passphrase).
    pub fn unwrap(path: &Path, operator: &Key) -> Result<SetKey, Error> {
        let mut options = UnsealOptions::new(operator.clone());
        options.artifact = Some("the set key".into());
        let mut text = String::new();
        let mut opened = unseal(path, &options)?;
        opened
            .read_to_string(&mut text)
            .map_err(|e| Error::from_io(e, path, "read").for_artifact(Some("the set key")))?;
        opened.finish()?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| {
                Error::new(
                    path,
                    Problem::Key("it holds no AGE-SECRET-KEY-1... line".into()),
                )
            })?;
        SetKey::from_identity(&Secret::new(line)).map_err(|why| Error::new(path, Problem::Key(why)))
    }

    /// HMAC-SHA256 of `message` under a key derived from the identity, lowercase hex.
    pub fn mac(&self, message: &[u8]) -> String {
        hex::encode(self.mac_state(message).finalize().into_bytes())
    }

    /// Whether `mac` (hex) is the MAC of `message`, compared in constant time.
    pub fn mac_matches(&self, message: &[u8], mac: &str) -> bool {
        match hex::decode(mac) {
            Ok(expected) => self.mac_state(message).verify_slice(&expected).is_ok(),
            Err(_) => false,
        }
    }

    fn mac_state(&self, message: &[u8]) -> Hmac<Sha256> {
        let mut derive = Hmac::<Sha256>::new_from_slice(self.identity.expose().as_bytes())
            .expect("HMAC takes any key");
        derive.update(MAC_CONTEXT);
        let mac_key = derive.finalize().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(&mac_key).expect("HMAC takes any key");
        mac.update(message);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(text: &str) -> Encryption {
        Encryption::Passphrase {
            passphrase: Secret::new(text),
            work_factor: 10,
        }
    }

    #[test]
    fn wraps_and_unwraps_with_a_passphrase_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SET_KEY_FILE);
        let key = SetKey::generate();
        key.wrap(&path, &passphrase("set-key-canary")).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("AGE-SECRET-KEY"));
        let opened =
            SetKey::unwrap(&path, &Key::Passphrase(Secret::new("set-key-canary"))).unwrap();
        assert_eq!(opened.recipient, key.recipient);
        let message = SetKey::unwrap(&path, &Key::Passphrase(Secret::new("other")))
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("wrong passphrase"), "{message}");
    }

    #[test]
    fn wraps_to_recipients_so_only_their_identity_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SET_KEY_FILE);
        let operator = age::x25519::Identity::generate();
        let key = SetKey::generate();
        key.wrap(&path, &Encryption::Recipients(vec![operator.to_public()]))
            .unwrap();
        let opened = SetKey::unwrap(&path, &Key::Identities(vec![operator])).unwrap();
        assert_eq!(opened.recipient, key.recipient);
        let stranger = Key::Identities(vec![age::x25519::Identity::generate()]);
        assert!(SetKey::unwrap(&path, &stranger).is_err());
    }

    #[test]
    fn the_mac_depends_on_every_byte_and_on_the_key() {
        let key = SetKey::generate();
        let mac = key.mac(b"manifest");
        assert_eq!(mac.len(), 64);
        assert!(key.mac_matches(b"manifest", &mac));
        assert!(!key.mac_matches(b"manifesT", &mac));
        assert!(!key.mac_matches(b"manifest", "zz"));
        assert!(!SetKey::generate().mac_matches(b"manifest", &mac));
    }

    #[test]
    fn refuses_to_store_the_key_unencrypted() {
        let dir = tempfile::tempdir().unwrap();
        let err = SetKey::generate()
            .wrap(&dir.path().join(SET_KEY_FILE), &Encryption::None)
            .unwrap_err();
        assert!(err.to_string().contains("must be encrypted"), "{err}");
    }
}
