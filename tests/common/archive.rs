//! Helpers for the archive tests: trees to seal and compare, and the standard tools (`age`,
//! `zstd`, `tar`) to prove interop with.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// SHA-256 of a file, hex (not the library's: `common` is shared by test crates that do not
/// link it).
pub fn file_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// True when running as root (owners can be set and must survive).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sets atime and mtime of a path without following a final symlink.
pub fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Deterministic pseudo-random bytes (xorshift), so content is incompressible but repeatable.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tree with what a Docker volume holds: nested files with modes and owners, an empty
/// directory, relative and dangling absolute symlinks, a hard link pair, a long name, a
/// non-ASCII name, a file with a setuid bit, and fixed mtimes everywhere.
pub fn make_tree(root: &Path) {
    let write = |rel: &str, content: &[u8], mode: u32| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    std::fs::create_dir_all(root).unwrap();
    write("etc/app.conf", b"listen = 127.0.0.1:8080\n", 0o644);
    write("etc/secret.key", b"not really a key\n", 0o600);
    write("bin/tool", b"#!/bin/sh\necho hi\n", 0o755);
    write("bin/suid-tool", b"#!/bin/sh\n", 0o4755);
    write("data/blob.bin", &noise(3 << 20, 7), 0o640);
    write(
        "data/text.log",
        "line of a log\n".repeat(20_000).as_bytes(),
        0o644,
    );
    write("data/empty", b"", 0o644);
    let long = format!("deep/{}/{}.txt", "d".repeat(120), "n".repeat(110));
    write(&long, b"long name", 0o644);
    write("unicodé/naïve ☃.txt", b"snow", 0o644);
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    std::fs::set_permissions(
        root.join("empty/dir"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("../etc/app.conf", root.join("bin/conf-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("bin/dangling")).unwrap();
    std::fs::hard_link(
        root.join("etc/app.conf"),
        root.join("data/app.conf.hardlink"),
    )
    .unwrap();
    if is_root() {
        std::os::unix::fs::lchown(root.join("etc/secret.key"), Some(999), Some(999)).unwrap();
        std::os::unix::fs::lchown(root.join("data"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("bin/conf-link"), Some(4321), Some(8765)).unwrap();
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut all = Vec::new();
    walk(root, root, &mut |rel, _| all.push(rel.to_path_buf()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(&root.join(rel), 1_600_000_000 + i as i64 * 3600);
    }
}

fn walk(root: &Path, at: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let meta = std::fs::symlink_metadata(at).unwrap();
    let rel = at.strip_prefix(root).unwrap();
    let is_dir = meta.is_dir();
    visit(rel, &meta);
    if is_dir {
        let mut children: Vec<_> = std::fs::read_dir(at)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, visit);
        }
    }
}

/// Everything an operator expects back after a restore, per path: kind, mode, owner,
/// mtime, content digest, link target, and which earlier path it is hard-linked to.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(root, root, &mut |rel, meta| {
        let abs = root.join(rel);
        let name = if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.display().to_string()
        };
        let kind = if meta.file_type().is_symlink() {
            format!("symlink -> {}", std::fs::read_link(&abs).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            let linked = if meta.nlink() > 1 {
                match inodes.get(&meta.ino()) {
                    Some(first) => format!(" (hard link of {first})"),
                    None => {
                        inodes.insert(meta.ino(), name.clone());
                        String::new()
                    }
                }
            } else {
                String::new()
            };
            format!(
                "file {} bytes sha256 {}{linked}",
                meta.len(),
                file_digest(&abs)
            )
        };
        let mode = if meta.file_type().is_symlink() {
            0
        } else {
            meta.mode() & 0o7777
        };
        out.insert(
            name,
            format!(
                "{kind} mode {mode:04o} owner {}:{} mtime {}",
                meta.uid(),
                meta.gid(),
                meta.mtime()
            ),
        );
    });
    out
}

/// Asserts two trees are the same, showing the first differences.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, b) = (snapshot(expected), snapshot(actual));
    if a != b {
        let mut diff = String::new();
        for key in a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if a.get(key) != b.get(key) {
                diff.push_str(&format!(
                    "{key}:\n  expected {:?}\n  actual   {:?}\n",
                    a.get(key),
                    b.get(key)
                ));
            }
        }
        panic!(
            "trees differ ({} vs {}):\n{diff}",
            expected.display(),
            actual.display()
        );
    }
}

/// Runs a shell command line, panicking with its stderr when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the standard `age` tool under a pseudo-terminal (it reads passphrases only from a
/// terminal), typing `passphrase` once per prompt.
pub fn age_with_passphrase(args: &str, passphrase: &str, prompts: usize) {
    let mut child = Command::new("script")
        .args(["-qec", &format!("age {args}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..prompts {
        std::thread::sleep(std::time::Duration::from_millis(400));
        stdin
            .write_all(format!("{passphrase}\n").as_bytes())
            .unwrap();
        stdin.flush().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "age {args} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A path inside a temp dir, as a string for shell command lines.
pub fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    assert!(!text.contains('\''), "test paths have no quotes");
    format!("'{text}'")
}

/// A directory next to others in a temp dir.
pub fn dir_in(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
