//! Backup sets you can bet the stack on, on a real stack against the real engine: an altered
//! manifest is refused before anything changes, restore replaces only what the set lists and
//! the stack holds, host paths come back, the safety copy restores, and a format v1 set still
//! restores.

mod common;

use std::path::{Path, PathBuf};

use common::docker::{available, docker, docker_ok};
use common::stack::{age_identity, Stack};
use common::{Outcome, Workspace};

const PASSPHRASE: &str = "set-format-v2 canary passphrase";

/// A change made to a manifest's JSON.
type ManifestEdit<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;

fn run(ws: &Workspace, playbook: &str, stack: &Stack, extra: &[&str]) -> Outcome {
    let stack_param = format!("stack={}", stack.name);
    let mut args = vec!["run", playbook, "-p", &stack_param];
    args.extend_from_slice(extra);
    ws.run_env(&args, &[("RUNBOOK_BACKUP_PASSPHRASE", PASSPHRASE)])
}

/// The complete sets of the stack under `backups/`, oldest first.
fn sets(ws: &Workspace, stack: &Stack) -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(ws.join(&format!("backups/{}", stack.name)))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    sets.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    sets.sort();
    sets
}

/// Container ids and volume names of the stack, to prove nothing changed.
fn fingerprint(stack: &Stack) -> String {
    let label = format!("label=runbook.stack={}", stack.name);
    format!(
        "{}\n{}",
        docker(&["ps", "-aq", "--no-trunc", "--filter", &label]),
        docker(&["volume", "ls", "-q", "--filter", &label])
    )
}

fn edit_manifest(set: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let path = set.join("manifest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&original).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    original
}

#[test]
fn a_manifest_changed_in_any_way_is_refused_before_anything_changes() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let (identity, recipients) = age_identity(&ws);
    let recipients = format!("recipients={recipients}");
    let identity = format!("identity={identity}");
    run(&ws, "backup", &stack, &["-p", &recipients]).expect_code(0);
    let set = sets(&ws, &stack)[0].clone();
    assert!(
        set.join("key.age").exists(),
        "the set holds its wrapped key"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "runbook-manifest/2");
    assert!(manifest["mac"].as_str().unwrap().len() == 64);
    run(&ws, "verify-backup", &stack, &["-p", &identity]).expect_code(0);

    // A volume that belongs to no stack, which an altered manifest would have restore delete.
    let bystander = stack.objects.volume("bystander", &[]);
    let before = fingerprint(&stack);
    let edits: [(&str, ManifestEdit); 3] = [
        (
            "a row count",
            Box::new(|m| {
                let tables = &mut m["metadata"]["databases"][0]["counts"]["shop"];
                let table = tables.as_object().unwrap().keys().next().unwrap().clone();
                tables[&table] = serde_json::json!(1);
            }),
        ),
        (
            "the covered volumes",
            Box::new(|m| {
                m["metadata"]["covered_volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!(bystander.clone()));
            }),
        ),
        (
            "an artifact's name",
            Box::new(|m| m["artifacts"][1]["name"] = serde_json::json!("renamed")),
        ),
    ];
    for (what, edit) in edits {
        let original = edit_manifest(&set, edit);
        for playbook in ["verify-backup", "restore"] {
            let out = run(&ws, playbook, &stack, &["-p", &identity, "--yes"]);
            assert_eq!(
                out.code, 1,
                "{playbook} with {what} changed:\n{}",
                out.stderr
            );
            assert!(
                out.stderr.contains("does not match its MAC"),
                "{playbook} names the altered manifest ({what}):\n{}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("safety copy"),
                "{playbook} stopped before any step ({what}):\n{}",
                out.stderr
            );
        }
        assert_eq!(
            fingerprint(&stack),
            before,
            "the stack is untouched ({what})"
        );
        assert!(docker_ok(&["volume", "inspect", &bystander]), "{what}");
        std::fs::write(set.join("manifest.json"), original).unwrap();
    }
    run(&ws, "verify-backup", &stack, &["-p", &identity]).expect_code(0);

    // A set renamed by hand is not taken for another.
    let renamed = set.with_file_name("20200101T000000Z");
    std::fs::rename(&set, &renamed).unwrap();
    let out = run(&ws, "verify-backup", &stack, &["-p", &identity]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("renamed or moved by hand"),
        "{}",
        out.stderr
    );
}

#[test]
fn restore_replaces_only_what_the_set_lists_and_the_stack_holds() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    run(&ws, "backup", &stack, &[]).expect_code(0);

    // A service added after the backup: of the stack, but not in the set. It stays.
    let member = format!("runbook.stack={}", stack.name);
    let extra_volume = stack.objects.volume("extra", &[&member]);
    let extra = stack.objects.run(
        "extra",
        &["--label", &member, "-v", &format!("{extra_volume}:/extra")],
        common::docker::BUSYBOX,
        &["sleep", "100000"],
    );
    let extra_id = docker(&["inspect", "-f", "{{.Id}}", &extra]);
    stack.sql("shop", "DELETE FROM orders WHERE id > 700");
    let out = run(&ws, "restore", &stack, &["--yes"]);
    out.expect_code(0);
    let question = out
        .stderr
        .lines()
        .find(|l| l.contains("Replace stack"))
        .unwrap_or_else(|| panic!("the confirmation is shown:\n{}", out.stderr));
    for name in [&stack.db, &stack.web, &stack.worker] {
        assert!(
            question.contains(name.as_str()),
            "{name} is named: {question}"
        );
    }
    assert!(
        question.contains(&format!(
            "Stays as it is (not in the set): container {extra}, volume {extra_volume}"
        )),
        "{question}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &extra]), extra_id);
    assert!(stack.counts().starts_with("750/"), "{}", stack.counts());

    // A name the set lists, now held by a volume of no stack: refused, nothing changes.
    docker(&["rm", "-f", &stack.worker]);
    let cache = stack.objects.name("cache");
    docker(&["volume", "rm", &cache]);
    docker(&[
        "volume",
        "create",
        "--label",
        &common::docker::Objects::label(),
        &cache,
    ]);
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{cache}:/v"),
        common::docker::BUSYBOX,
        "sh",
        "-c",
        "echo theirs > /v/own",
    ]);
    let before = fingerprint(&stack);
    let out = run(&ws, "restore", &stack, &["--yes"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "volume {cache}, which exist but are not part of stack"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(fingerprint(&stack), before);
    let kept = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{cache}:/v"),
        common::docker::BUSYBOX,
        "cat",
        "/v/own",
    ]);
    assert_eq!(kept, "theirs");
}

#[test]
fn host_paths_come_back_byte_identical_and_the_safety_copy_undoes_the_restore() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let config = ws.join("host/etc-app");
    common::archive::make_tree(&config);
    let env_file = ws.write("host/app.env", "APP_MODE=production\n");
    let expected_tree = common::archive::snapshot(&config);
    let host_paths = format!("host_paths={},{}", config.display(), env_file.display());
    run(&ws, "backup", &stack, &["-p", &host_paths]).expect_code(0);

    std::fs::write(&env_file, "APP_MODE=broken\n").unwrap();
    std::fs::remove_dir_all(config.join("data")).unwrap();
    std::fs::write(config.join("new-file"), "not in the backup").unwrap();
    let damaged_tree = common::archive::snapshot(&config);
    let out = run(&ws, "restore", &stack, &["--yes"]);
    out.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "APP_MODE=production\n"
    );
    assert_eq!(common::archive::snapshot(&config), expected_tree);
    assert!(!ws.join("host/app.env.runbook-incoming").exists());

    // The safety copy was read back with its key, and says how to restore it.
    assert!(
        out.stderr
            .contains("artifacts decrypt, decompress and match their checksums"),
        "{}",
        out.stderr
    );
    let undo = out
        .stderr
        .lines()
        .find_map(|l| l.split("undo this restore with ").nth(1))
        .unwrap_or_else(|| panic!("the undo command is printed:\n{}", out.stderr))
        .to_string();
    let argv: Vec<&str> = undo.split(' ').skip(1).collect();
    let mut argv = argv;
    argv.push("--yes");
    ws.run_env(&argv, &[("RUNBOOK_BACKUP_PASSPHRASE", PASSPHRASE)])
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "APP_MODE=broken\n"
    );
    assert_eq!(common::archive::snapshot(&config), damaged_tree);

    // host_paths_to puts them elsewhere and leaves the live ones alone.
    let elsewhere = ws.join("recovered");
    let to = format!("host_paths_to={}", elsewhere.display());
    let set = sets(&ws, &stack)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    run(
        &ws,
        "restore",
        &stack,
        &["-p", &to, "-p", &format!("set={set}"), "--yes"],
    )
    .expect_code(0);
    let relocated = elsewhere.join(config.strip_prefix("/").unwrap());
    assert_eq!(common::archive::snapshot(&relocated), expected_tree);
    assert_eq!(
        std::fs::read_to_string(elsewhere.join(env_file.strip_prefix("/").unwrap())).unwrap(),
        "APP_MODE=production\n"
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "APP_MODE=broken\n"
    );
}

#[test]
fn a_format_v1_set_still_verifies_and_restores_with_a_warning() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let files_before = stack.files();
    let counts_before = stack.counts();
    // The v1 backup playbook and stdlib, from ./playbooks and ./stdlib of the workspace.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1");
    for dir in ["playbooks", "stdlib"] {
        std::fs::create_dir_all(ws.join(dir)).unwrap();
        for entry in std::fs::read_dir(fixture.join(dir)).unwrap().flatten() {
            std::fs::copy(entry.path(), ws.join(dir).join(entry.file_name())).unwrap();
        }
    }
    run(&ws, "backup", &stack, &[]).expect_code(0);
    for dir in ["playbooks", "stdlib"] {
        std::fs::remove_dir_all(ws.join(dir)).unwrap();
    }
    let set = sets(&ws, &stack)[0].clone();
    assert!(!set.join("key.age").exists(), "a v1 set has no set key");
    let manifest = std::fs::read_to_string(set.join("manifest.json")).unwrap();
    assert!(manifest.contains("runbook-manifest/1"), "{manifest}");

    let verify = run(&ws, "verify-backup", &stack, &[]);
    verify.expect_code(0);
    assert!(
        verify.stderr.contains("is in format v1"),
        "{}",
        verify.stderr
    );

    docker(&["rm", "-f", &stack.db, &stack.web, &stack.worker]);
    for volume in ["files", "cache", "pgdata"] {
        docker(&["volume", "rm", &stack.objects.name(volume)]);
    }
    let out = run(&ws, "restore", &stack, &["--yes"]);
    out.expect_code(0);
    assert!(out.stderr.contains("is in format v1"), "{}", out.stderr);
    assert_eq!(stack.files(), files_before);
    assert_eq!(stack.counts(), counts_before);
    assert!(!ws.journals().contains(PASSPHRASE));
}
