//! The openssl CLI, to make the certificates TLS and cert-check tests use.

use std::path::Path;
use std::process::Command;

/// Whether the openssl CLI is there (skips, or fails in CI, when it is not).
pub fn available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    super::require("openssl", ok, "openssl CLI not found")
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
