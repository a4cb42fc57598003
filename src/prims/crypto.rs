//! Checksums and other crypto helpers.

use std::io::Read;
use std::path::Path;

use rhai::plugin::*;
use sha2::{Digest, Sha256};

use crate::run::Run;

/// SHA-256 of a file, streamed, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[export_module]
pub mod api {
    /// SHA-256 of a string's UTF-8 bytes, as lowercase hex.
    pub fn sha256(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// SHA-256 of a file (streamed, any size), as lowercase hex.
    #[rhai_fn(return_raw)]
    pub fn sha256_file(ctx: NativeCallContext, path: &str) -> Result<String, Box<EvalAltResult>> {
        let resolved = super::super::checked_path(&Run::of(&ctx), path)?;
        super::sha256_file(&resolved)
            .map_err(|e| super::super::error(format!("cannot checksum {path}: {e}")))
    }
}
