//! backup, verify-backup and restore on a real stack: a Postgres with rows and two services
//! with volumes, against the real Docker engine.

mod common;

use std::path::PathBuf;

use common::docker::{available, docker};
use common::stack::{age_identity, Stack};
use common::{Outcome, Workspace};

/// Runs a playbook on the stack with the age keys of the workspace.
fn run(ws: &Workspace, playbook: &str, stack: &Stack, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", playbook, "-p"];
    let stack_param = format!("stack={}", stack.name);
    args.push(&stack_param);
    args.extend_from_slice(extra);
    ws.run(&args)
}

fn keys(ws: &Workspace) -> (String, String) {
    let (identity, recipients) = age_identity(ws);
    (
        format!("identity={identity}"),
        format!("recipients={recipients}"),
    )
}

/// The complete sets of the stack, by directory.
fn sets(ws: &Workspace, stack: &Stack) -> Vec<PathBuf> {
    let dir = ws.join(&format!("backups/{}", stack.name));
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    sets.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    sets.sort();
    sets
}

fn artifacts(set: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(set)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap() != "manifest.json")
        .collect();
    files.sort();
    files
}

#[test]
fn backup_then_wipe_then_restore_gives_identical_volumes_and_equal_row_counts() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let (identity, recipients) = keys(&ws);
    let files_before = stack.files();
    let counts_before = stack.counts();
    assert_eq!(counts_before, "750/3/Zoë,Åsa,O'Brien");

    let backup = run(&ws, "backup", &stack, &["-p", &recipients, "--json"]);
    backup.expect_code(0);
    let set = &sets(&ws, &stack)[0];
    let names: Vec<String> = artifacts(set)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "specs.json.zst.age"), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("-shop.sql.zst.age")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("files") && n.ends_with(".tar.zst.age")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("pgdata")),
        "a running database's data volume is covered by its dump, not copied: {names:?}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["metadata"]["databases"][0]["counts"]["shop"]["public.orders"],
        750
    );
    assert_eq!(manifest["metadata"]["playbook"], "backup");
    // The worker is labelled runbook.backup.stop=true: stopped for the copy, running again.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &stack.worker]),
        "true"
    );

    // Wipe: rows deleted, files changed and removed, a file added.
    stack.sql(
        "shop",
        "DELETE FROM orders WHERE id > 10; UPDATE customers SET name = 'x';",
    );
    docker(&[
        "exec",
        &stack.web,
        "sh",
        "-c",
        "rm -r /data/site /data/blob; echo new > /data/stray",
    ]);
    docker(&[
        "exec",
        &stack.worker,
        "sh",
        "-c",
        "echo cold > /cache/state",
    ]);
    assert_ne!(stack.files(), files_before);

    let restore = run(
        &ws,
        "restore",
        &stack,
        &["-p", &recipients, "-p", &identity, "--yes", "--json"],
    );
    restore.expect_code(0);
    assert_eq!(stack.counts(), counts_before, "every row came back");
    assert_eq!(
        stack.files(),
        files_before,
        "volumes came back byte for byte, with owners, modes and mtimes"
    );
    for container in [&stack.db, &stack.web, &stack.worker] {
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", container]),
            "true"
        );
    }
    assert!(
        ws.join(&format!("backups/.safety/{}", stack.name)).is_dir(),
        "a safety copy of what was replaced is kept"
    );

    let everything = format!(
        "{}{}{}",
        backup.all_output(),
        restore.all_output(),
        ws.journals()
    );
    assert!(
        !everything.contains(&stack.password),
        "the database password never appears in output or journal"
    );
}

#[test]
fn verify_catches_a_flipped_byte_in_any_artifact_and_a_truncated_set() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let (identity, recipients) = keys(&ws);
    run(&ws, "backup", &stack, &["-p", &recipients]).expect_code(0);
    let set = sets(&ws, &stack)[0].clone();

    let deep = run(
        &ws,
        "verify-backup",
        &stack,
        &[
            "-p",
            &recipients,
            "-p",
            &identity,
            "-p",
            "deep=true",
            "--json",
        ],
    );
    deep.expect_code(0);
    assert_eq!(
        deep.json()["result"]["databases_restored"][0],
        stack.db.as_str()
    );
    let run_id = deep.json()["run_id"].as_str().unwrap().to_string();
    let leftovers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=runbook.verify={run_id}"),
    ]);
    assert!(
        leftovers.is_empty(),
        "the throwaway database is removed: {leftovers}"
    );

    for artifact in artifacts(&set) {
        let original = std::fs::read(&artifact).unwrap();
        let mut flipped = original.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        std::fs::write(&artifact, &flipped).unwrap();
        let out = run(
            &ws,
            "verify-backup",
            &stack,
            &["-p", &recipients, "-p", &identity],
        );
        assert_eq!(
            out.code,
            1,
            "a flipped byte in {} must fail verify:\n{}",
            artifact.display(),
            out.stderr
        );
        let file = artifact.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            out.stderr.contains(&file),
            "the error names {file}:\n{}",
            out.stderr
        );
        std::fs::write(&artifact, &original).unwrap();
    }

    let victim = artifacts(&set).pop().unwrap();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 3]).unwrap();
    let out = run(
        &ws,
        "verify-backup",
        &stack,
        &["-p", &recipients, "-p", &identity],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&*victim.file_name().unwrap().to_string_lossy()),
        "{}",
        out.stderr
    );
}

#[test]
fn restore_with_a_wrong_key_changes_nothing_and_a_dry_run_writes_nothing() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let passphrase = [("RUNBOOK_BACKUP_PASSPHRASE", "correct horse battery staple")];

    let dry = ws.run_env(
        &[
            "run",
            "backup",
            "-p",
            &format!("stack={}", stack.name),
            "--dry-run",
        ],
        &passphrase,
    );
    dry.expect_code(0);
    assert!(
        dry.stdout.contains("docker::volume_backup"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("docker::exec_backup"), "{}", dry.stdout);
    assert!(!ws.join("backups").exists(), "a dry run writes nothing");

    ws.run_env(
        &["run", "backup", "-p", &format!("stack={}", stack.name)],
        &passphrase,
    )
    .expect_code(0);
    stack.sql("shop", "DELETE FROM orders WHERE id > 5;");
    let ids_before = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=runbook.stack={}", stack.name),
    ]);
    let files_before = stack.files();

    let wrong = ws.run_env(
        &[
            "run",
            "restore",
            "-p",
            &format!("stack={}", stack.name),
            "--yes",
        ],
        &[("RUNBOOK_BACKUP_PASSPHRASE", "not-the-one-we-used")],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.to_lowercase().contains("passphrase"),
        "one sentence says the key is wrong:\n{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("panicked"), "{}", wrong.stderr);
    assert_eq!(
        stack.counts().split('/').next().unwrap(),
        "5",
        "the database was not touched"
    );
    assert_eq!(stack.files(), files_before, "the volumes were not touched");
    let ids_after = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=runbook.stack={}", stack.name),
    ]);
    assert_eq!(ids_after, ids_before, "the containers were not touched");
}

#[test]
fn a_backup_killed_midway_leaves_no_set_that_looks_complete() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let (identity, recipients) = keys(&ws);
    let mut child = ws
        .command(&[
            "run",
            "backup",
            "-p",
            &format!("stack={}", stack.name),
            "-p",
            &recipients,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stack_dir = ws.join(&format!("backups/{}", stack.name));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Kill it once its first artifact is written, with the rest still to come.
    loop {
        let partial = std::fs::read_dir(&stack_dir)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.join("specs.json.zst.age").exists());
        if partial.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never wrote its first artifact"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(
        sets(&ws, &stack).is_empty(),
        "no set without the .partial prefix"
    );
    let out = run(
        &ws,
        "verify-backup",
        &stack,
        &["-p", &recipients, "-p", &identity],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no complete backup set"),
        "{}",
        out.stderr
    );
    // The worker stopped for the copy may have been left stopped by the kill; later runs
    // start it again.
    docker(&["start", &stack.worker]);
}
