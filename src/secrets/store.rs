//! Where `secrets::get/put/list/delete` keep values: Vault KV v2 when a Vault is configured,
//! else a local store, an age-encrypted file in the user's data dir. Same paths, same maps of
//! keys to values, same errors; a playbook does not care which one it got.
//!
//! The local store is `secrets.age` (0600), encrypted to the X25519 identity in `secrets.key`
//! (0600, created on first write, the standard age format: `age -d -i secrets.key secrets.age`
//! reads it). Writers take an exclusive lock on `secrets.lock`, so two runs do not lose each
//! other's updates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::secrets::Secret;
use crate::vault::{check_path, Vault, VaultError};

/// A failed store operation, naming the store and the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("local secret store {}: {path}: not found", file.display())]
    NotFound { file: PathBuf, path: String },
    #[error("local secret store {}: {reason}", file.display())]
    Local { file: PathBuf, reason: String },
}

/// The backend a facade call goes to.
pub enum SecretStore {
    /// KV version 2 at `mount` on a Vault server.
    Vault {
        vault: Arc<Vault>,
        mount: String,
    },
    Local(LocalStore),
}

impl SecretStore {
    /// In words, for plans and logs: `Vault at http://..:8200 (KV secret/)`.
    pub fn describe(&self) -> String {
        match self {
            SecretStore::Vault { vault, mount } => {
                format!(
                    "Vault at {} (KV {}/)",
                    vault.address(),
                    mount.trim_matches('/')
                )
            }
            SecretStore::Local(local) => format!("local store {}", local.file().display()),
        }
    }

    /// The keys and values at `path`.
    pub async fn get(&self, path: &str) -> Result<BTreeMap<String, Secret>, StoreError> {
        match self {
            SecretStore::Vault { vault, mount } => Ok(vault.kv_get(mount, path).await?),
            SecretStore::Local(local) => local.get(path),
        }
    }

    /// Replaces the keys and values at `path`.
    pub async fn put(
        &self,
        path: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        match self {
            SecretStore::Vault { vault, mount } => {
                vault.kv_put(mount, path, values).await?;
                Ok(())
            }
            SecretStore::Local(local) => local.put(path, values),
        }
    }

    /// The entries under `prefix`: `name` for a secret, `name/` for a folder.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            SecretStore::Vault { vault, mount } => Ok(vault.kv_list(mount, prefix).await?),
            SecretStore::Local(local) => local.list(prefix),
        }
    }

    /// Deletes the secret at `path` for good (every version, in Vault).
    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match self {
            SecretStore::Vault { vault, mount } => Ok(vault.kv_destroy(mount, path).await?),
            SecretStore::Local(local) => local.delete(path),
        }
    }
}

/// What the encrypted file holds.
#[derive(Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// The age-encrypted store in a directory (the user's data dir by default).
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// The store in `dir`; nothing is created until the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStore { dir: dir.into() }
    }

    /// The encrypted file.
    pub fn file(&self) -> PathBuf {
        self.dir.join("secrets.age")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("secrets.key")
    }

    fn fail(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Local {
            file: self.file(),
            reason: reason.into(),
        }
    }

    fn check(&self, path: &str) -> Result<(), StoreError> {
        check_path("secret path", path).map_err(|e| self.fail(e.to_string()))
    }

    /// The identity the file is encrypted to; created (0600) when `create` and missing.
    fn identity(&self, create: bool) -> Result<Option<age::x25519::Identity>, StoreError> {
        let key_file = self.key_file();
        match std::fs::metadata(&key_file) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(self.fail(format!(
                        "its key {} is open to other users (mode {mode:04o}); run `chmod 600 {}`",
                        key_file.display(),
                        key_file.display()
                    )));
                }
                let text = std::fs::read_to_string(&key_file).map_err(|e| {
                    self.fail(format!("cannot read its key {}: {e}", key_file.display()))
                })?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                    .ok_or_else(|| {
                        self.fail(format!("{} holds no age identity", key_file.display()))
                    })?;
                age::x25519::Identity::from_str(line)
                    .map(Some)
                    .map_err(|_| {
                        self.fail(format!(
                            "{} holds no valid age identity",
                            key_file.display()
                        ))
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let identity = age::x25519::Identity::generate();
                let text = format!(
                    "# runbook local secret store key; losing it loses the store\n# public key: {}\n{}\n",
                    identity.to_public(),
                    identity.to_string().expose_secret()
                );
                atomic_file::write(&key_file, text.as_bytes(), 0o600).map_err(|e| {
                    self.fail(format!("cannot write its key {}: {e}", key_file.display()))
                })?;
                Ok(Some(identity))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(format!("cannot read its key {}: {e}", key_file.display()))),
        }
    }

    fn load(&self) -> Result<Contents, StoreError> {
        let bytes = match std::fs::read(self.file()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(self.fail(format!("cannot read: {e}"))),
        };
        let identity = self.identity(false)?.ok_or_else(|| {
            self.fail(format!(
                "its key {} is missing, so it cannot be decrypted",
                self.key_file().display()
            ))
        })?;
        let plain = age::decrypt(&identity, &bytes).map_err(|e| {
            self.fail(format!(
                "cannot decrypt with {}: {e}",
                self.key_file().display()
            ))
        })?;
        serde_json::from_slice(&plain).map_err(|_| self.fail("decrypted, but not a secret store"))
    }

    fn save(&self, contents: &Contents) -> Result<(), StoreError> {
        let identity = self.identity(true)?.expect("created when missing");
        let plain = serde_json::to_vec(contents).map_err(|e| self.fail(e.to_string()))?;
        let sealed = age::encrypt(&identity.to_public(), &plain)
            .map_err(|e| self.fail(format!("cannot encrypt: {e}")))?;
        atomic_file::write(&self.file(), &sealed, 0o600)
            .map_err(|e| self.fail(format!("cannot write: {e}")))
    }

    /// Runs a read-modify-write under the store's lock.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| self.fail(format!("cannot create {}: {e}", self.dir.display())))?;
        }
        let _lock = Lock::take(&self.dir.join("secrets.lock"))
            .map_err(|e| self.fail(format!("cannot lock: {e}")))?;
        let mut contents = self.load()?;
        let out = change(&mut contents)?;
        contents.version = 1;
        self.save(&contents)?;
        Ok(out)
    }

    /// The keys and values at `path`.
    pub fn get(&self, path: &str) -> Result<BTreeMap<String, Secret>, StoreError> {
        self.check(path)?;
        let mut contents = self.load()?;
        let values = contents
            .secrets
            .remove(path)
            .ok_or_else(|| StoreError::NotFound {
                file: self.file(),
                path: path.to_string(),
            })?;
        Ok(values
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect())
    }

    /// Replaces the keys and values at `path`.
    pub fn put(&self, path: &str, values: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.check(path)?;
        self.update(|contents| {
            contents.secrets.insert(path.to_string(), values.clone());
            Ok(())
        })
    }

    /// The entries under `prefix`, Vault-style: `db` for a secret, `shop/` for a folder.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            self.check(prefix)?;
        }
        let contents = self.load()?;
        Ok(children(contents.secrets.keys(), prefix))
    }

    /// Deletes the secret at `path`.
    pub fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.check(path)?;
        self.update(|contents| {
            contents
                .secrets
                .remove(path)
                .map(|_| ())
                .ok_or_else(|| StoreError::NotFound {
                    file: self.file(),
                    path: path.to_string(),
                })
        })
    }
}

/// The immediate children of `prefix` among `paths`, sorted and unique.
fn children<'a>(paths: impl Iterator<Item = &'a String>, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = paths
        .filter_map(|path| {
            let rest = if prefix.is_empty() {
                path.as_str()
            } else {
                path.strip_prefix(prefix)?.strip_prefix('/')?
            };
            Some(match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_string(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// An exclusive `flock` held until dropped.
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> io::Result<Lock> {
        let file = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; blocks until the other writer is done.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn put_get_list_delete_round_trip_through_the_encrypted_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("data"));
        assert!(store.list("").unwrap().is_empty());
        store
            .put("shop/db", &values(&[("password", "local-canary-1234")]))
            .unwrap();
        store
            .put("shop/api", &values(&[("key", "k-5678")]))
            .unwrap();
        store
            .put("billing/db", &values(&[("password", "p")]))
            .unwrap();
        let got = store.get("shop/db").unwrap();
        assert_eq!(got["password"].expose(), "local-canary-1234");
        assert_eq!(store.list("").unwrap(), ["billing/", "shop/"]);
        assert_eq!(store.list("shop").unwrap(), ["api", "db"]);
        store.delete("shop/api").unwrap();
        assert_eq!(store.list("shop/").unwrap(), ["db"]);
        assert!(matches!(
            store.get("shop/api"),
            Err(StoreError::NotFound { .. })
        ));

        let raw = std::fs::read(store.file()).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("local-canary-1234"));
        assert!(raw.starts_with(b"age-encryption.org/v1"));
        for file in [store.file(), store.key_file()] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let dir_mode = std::fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn a_missing_or_exposed_key_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put("a", &values(&[("k", "v")])).unwrap();
        std::fs::set_permissions(store.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.get("a").unwrap_err().to_string();
        assert!(err.contains("open to other users (mode 0644)"), "{err}");
        std::fs::remove_file(store.key_file()).unwrap();
        let err = store.get("a").unwrap_err().to_string();
        assert!(
            err.contains("is missing, so it cannot be decrypted"),
            "{err}"
        );
    }

    #[test]
    fn paths_follow_the_same_rules_as_vault() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        assert!(store.put("../x", &values(&[("k", "v")])).is_err());
        assert!(store.put("a//b", &values(&[("k", "v")])).is_err());
    }

    #[test]
    fn children_are_immediate_entries() {
        let paths: Vec<String> = ["a/b/c", "a/d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(children(paths.iter(), ""), ["a/", "e"]);
        assert_eq!(children(paths.iter(), "a"), ["b/", "d"]);
        assert!(children(paths.iter(), "x").is_empty());
    }
}
