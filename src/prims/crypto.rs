//! Checksums, random secrets, MACs and age keys.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::Rng;
use rhai::plugin::*;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{checked_path, error, plain_or_secret, PrimResult};
use crate::archive;
use crate::run::Run;
use crate::secrets::Secret;

pub use crate::archive::sha256_file;

/// Letters and digits: safe in URLs, connection strings, YAML and shell words unquoted.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_password(length: i64) -> PrimResult<Secret> {
    if !(8..=4096).contains(&length) {
        return Err(error(format!(
            "a password length must be between 8 and 4096, got {length}"
        )));
    }
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..length)
        .map(|_| PASSWORD_ALPHABET[rng.gen_range(0..PASSWORD_ALPHABET.len())] as char)
        .collect();
    Ok(Secret::new(password))
}

fn random_token(bytes: i64) -> PrimResult<Secret> {
    if !(8..=4096).contains(&bytes) {
        return Err(error(format!(
            "a token must have between 8 and 4096 bytes, got {bytes}"
        )));
    }
    let mut raw = vec![0u8; bytes as usize];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    Ok(Secret::new(hex::encode(raw)))
}

fn hmac_sha256(key: &Dynamic, message: &[u8]) -> PrimResult<String> {
    let key = plain_or_secret(key, "the HMAC key")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(message);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn age_keygen(ctx: &NativeCallContext, path: &str) -> PrimResult<rhai::Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, path)?;
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(error(format!(
            "{path} already exists; an identity is never overwritten (what was encrypted to it \
             would become unreadable)"
        )));
    }
    let mut map = rhai::Map::new();
    map.insert("identity_file".into(), target.display().to_string().into());
    if !run.mutate(
        "crypto::age_keygen",
        format!(
            "write a new age identity to {} (mode 0600)",
            target.display()
        ),
    ) {
        map.insert("planned".into(), true.into());
        return Ok(map);
    }
    if let Some(parent) = target.parent().filter(|p| !p.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| error(format!("cannot create the directory of {path}: {e}")))?;
    }
    let generated = archive::generate_identity();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    crate::atomic_file::write(&target, generated.identity_file(&created).as_bytes(), 0o600)
        .map_err(|e| error(format!("cannot write {path}: {e}")))?;
    map.insert("recipient".into(), generated.recipient.into());
    Ok(map)
}

/// Reads one line from the terminal with echo off, restoring the terminal afterwards.
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use std::os::unix::io::AsRawFd;
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: tcgetattr fills the zeroed termios for a descriptor we hold open.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    // SAFETY: a termios obtained from tcgetattr, modified in its flags only.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = write!(tty, "{prompt}");
    let _ = tty.flush();
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    let _ = writeln!(tty);
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[export_module]
pub mod api {
    use rhai::{Array, Blob, Map, INT};

    use crate::secrets::Secret;

    /// SHA-256 of a string's UTF-8 bytes, as lowercase hex.
    pub fn sha256(text: &str) -> String {
        hex::encode(super::Sha256::digest(text.as_bytes()))
    }

    /// SHA-256 of bytes (a blob), as lowercase hex.
    #[rhai_fn(name = "sha256")]
    pub fn sha256_blob(data: Blob) -> String {
        hex::encode(super::Sha256::digest(&data))
    }

    /// SHA-256 of a file (streamed, any size), as lowercase hex.
    #[rhai_fn(return_raw)]
    pub fn sha256_file(ctx: NativeCallContext, path: &str) -> Result<String, Box<EvalAltResult>> {
        let resolved = super::checked_path(&Run::of(&ctx), path)?;
        super::sha256_file(&resolved)
            .map_err(|e| super::error(format!("cannot checksum {path}: {e}")))
    }

    /// A random password of 32 letters and digits (about 190 bits) from the OS random
    /// number generator, as a Secret.
    #[rhai_fn(name = "random_password", return_raw)]
    pub fn random_password_default() -> Result<Secret, Box<EvalAltResult>> {
        super::random_password(32)
    }

    /// A random password of `length` letters and digits (8-4096), as a Secret.
    #[rhai_fn(return_raw)]
    pub fn random_password(length: INT) -> Result<Secret, Box<EvalAltResult>> {
        super::random_password(length)
    }

    /// A random token of 32 bytes from the OS random number generator, as 64 hex digits in
    /// a Secret.
    #[rhai_fn(name = "random_token", return_raw)]
    pub fn random_token_default() -> Result<Secret, Box<EvalAltResult>> {
        super::random_token(32)
    }

    /// A random token of `bytes` bytes (8-4096), as hex in a Secret.
    #[rhai_fn(return_raw)]
    pub fn random_token(bytes: INT) -> Result<Secret, Box<EvalAltResult>> {
        super::random_token(bytes)
    }

    /// Compares two strings or secrets in constant time (the time depends on the length
    /// only), for tokens and MACs.
    #[rhai_fn(return_raw)]
    pub fn constant_time_eq(a: Dynamic, b: Dynamic) -> Result<bool, Box<EvalAltResult>> {
        let a = super::plain_or_secret(&a, "the first value")?;
        let b = super::plain_or_secret(&b, "the second value")?;
        Ok(a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes())))
    }

    /// HMAC-SHA256 of a message with a key (a string or a Secret), as lowercase hex.
    #[rhai_fn(return_raw)]
    pub fn hmac_sha256(key: Dynamic, message: &str) -> Result<String, Box<EvalAltResult>> {
        super::hmac_sha256(&key, message.as_bytes())
    }

    /// HMAC-SHA256 of bytes (a blob) with a key (a string or a Secret), as lowercase hex.
    #[rhai_fn(name = "hmac_sha256", return_raw)]
    pub fn hmac_sha256_blob(key: Dynamic, message: Blob) -> Result<String, Box<EvalAltResult>> {
        super::hmac_sha256(&key, &message)
    }

    /// Generates an age X25519 identity into a new file (0600, in the `age-keygen` format,
    /// usable with `age -d -i FILE`); never overwrites one. Returns `#{identity_file,
    /// recipient}`: encrypt to the recipient (`age1...`), decrypt with the file.
    #[rhai_fn(return_raw)]
    pub fn age_keygen(ctx: NativeCallContext, path: &str) -> Result<Map, Box<EvalAltResult>> {
        super::age_keygen(&ctx, path)
    }

    /// The recipients (`age1...` public keys) of the identities in an identity file.
    #[rhai_fn(return_raw)]
    pub fn age_recipients(
        ctx: NativeCallContext,
        identity_file: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let path = super::checked_path(&Run::of(&ctx), identity_file)?;
        let identities = super::archive::read_identity_file(super::Path::new(&path))
            .map_err(|e| super::error(e.to_string()))?;
        Ok(identities
            .iter()
            .map(|i| Dynamic::from(i.to_public().to_string()))
            .collect())
    }

    /// Asks for a passphrase on the terminal (not echoed) and returns it as a Secret; refused
    /// when there is no terminal (give a secret parameter instead).
    #[rhai_fn(return_raw)]
    pub fn prompt_passphrase(
        ctx: NativeCallContext,
        question: &str,
    ) -> Result<Secret, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        if !run.options.interactive {
            return Err(run.refuse(format!(
                "cannot ask \"{question}\": no terminal; give the passphrase as a secret \
                 parameter (env:NAME or file:PATH)"
            )));
        }
        let answer = super::read_hidden(&format!("{question} "))
            .map_err(|e| super::error(format!("cannot read the passphrase: {e}")))?;
        if answer.is_empty() {
            return Err(super::error("the passphrase is empty"));
        }
        Ok(Secret::new(answer))
    }
}
