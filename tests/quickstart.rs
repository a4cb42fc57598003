//! The README's quickstart, as a new user runs it: nothing but the binary, the Docker engine
//! and fresh XDG directories (no runbook configuration, state or data from before), against
//! the stack `demo-stack` creates: demo-stack → backup → verify-backup → dr drill.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::docker::{available, Objects, BUSYBOX, POSTGRES};

/// Runs `runbook ARGS` in `dir` as a user whose XDG directories are empty: no RUNBOOK_*
/// overrides, HOME and XDG_* inside the temp dir.
fn runbook(dir: &Path, args: &[&str]) -> common::Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(dir.join("work"))
        .env_remove("RUNBOOK_STATE_DIR")
        .env_remove("RUNBOOK_CONFIG_DIR")
        .env_remove("RUNBOOK_DATA_DIR")
        .env_remove("RUNBOOK_BACKUP_PASSPHRASE")
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .env("XDG_STATE_HOME", dir.join("home/.local/state"))
        .env("XDG_DATA_HOME", dir.join("home/.local/share"))
        .stdin(Stdio::null())
        .output()
        .expect("run runbook");
    common::Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_quickstart_works_for_a_new_user_against_demo_stack() {
    if !common::require(
        "Docker and the test images",
        available(),
        "see ENVIRONMENT.md",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for sub in ["work", "home"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let objects = Objects::new();
    let stack = objects.name("demo");
    for container in ["db", "app"] {
        objects.track_container(&format!("{stack}-{container}"));
    }
    for volume in ["pgdata", "files"] {
        objects.track_volume(&format!("{stack}-{volume}"));
    }
    objects.track_network(&format!("{stack}-net"));
    let passphrase = dir.path().join("home/.backup-passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let passphrase = format!("passphrase_file={}", passphrase.display());
    let stack_param = format!("stack={stack}");
    let key = ["-p", stack_param.as_str(), "-p", passphrase.as_str()];

    let out = runbook(
        dir.path(),
        &[
            "run",
            "demo-stack",
            "-p",
            &stack_param,
            "-p",
            &format!("postgres_image={POSTGRES}"),
            "-p",
            &format!("app_image={BUSYBOX}"),
        ],
    );
    out.expect_code(0);
    let rows = common::docker::psql(
        &format!("{stack}-db"),
        "demo",
        "SELECT count(*) FROM orders;",
    );
    assert_eq!(rows.trim(), "5000", "the demo rows are there");

    let out = runbook(dir.path(), &[&["run", "backup"], &key[..]].concat());
    out.expect_code(0);
    let sets = dir.path().join(format!("work/backups/{stack}"));
    let whole: Vec<String> = std::fs::read_dir(&sets)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", sets.display(), out.stderr))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert_eq!(whole.len(), 1, "one whole set: {whole:?}");

    runbook(dir.path(), &[&["run", "verify-backup"], &key[..]].concat()).expect_code(0);

    let out = runbook(dir.path(), &[&["run", "dr"], &key[..], &["--yes"]].concat());
    out.expect_code(0);
    let rows = common::docker::psql(
        &format!("{stack}-db"),
        "demo",
        "SELECT count(*) FROM orders;",
    );
    assert_eq!(rows.trim(), "5000", "the drill brought the rows back");

    // A new user's journal went to the XDG state directory, not somewhere of runbook's own.
    let runs = dir.path().join("home/.local/state/runbook/runs");
    assert_eq!(
        std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0),
        4,
        "four runs journaled under {}",
        runs.display()
    );
}
