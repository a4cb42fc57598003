//! The runtime, driven through the built binary: parameters, errors with positions, steps,
//! resume, dry run, secrets, the sandbox, limits and signals.

mod common;

use common::{header, Workspace};
use std::time::{Duration, Instant};

fn journal_has(ws: &Workspace, needle: &str) -> bool {
    ws.journals().contains(needle)
}

#[test]
fn parameters_are_validated_before_any_step_runs() {
    let ws = Workspace::new();
    let body = "step(\"touch\", || fs::write_text(\"touched\", \"x\"));\n";
    ws.write(
        "p.rhai",
        &(header(
            "p",
            &[
                "stack: string required",
                "keep: int = 7",
                "deep: bool = false",
            ],
        ) + body),
    );

    let out = ws.run(&["run", "p.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("missing required parameter `stack`"),
        "{}",
        out.stderr
    );

    let out = ws.run(&["run", "p.rhai", "-p", "stack=shop", "-p", "kep=3"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("unknown parameter `kep`") && out.stderr.contains("keep"),
        "{}",
        out.stderr
    );

    let out = ws.run(&["run", "p.rhai", "-p", "stack=shop", "-p", "keep=seven"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("`keep` must be an integer, got `seven`"),
        "{}",
        out.stderr
    );

    assert!(
        !ws.join("touched").exists(),
        "no step may run when parameters are invalid"
    );
    assert!(
        ws.journals().is_empty(),
        "a run that never started leaves no journal"
    );

    ws.run(&["run", "p.rhai", "-p", "stack=shop"])
        .expect_code(0);
    assert!(ws.join("touched").exists());
}

#[test]
fn syntax_error_names_file_line_and_column_and_shows_the_line() {
    let ws = Workspace::new();
    ws.write(
        "bad.rhai",
        &(header("bad", &[]) + "let a = 1;\nlet b = (a + ;\n"),
    );
    let out = ws.run(&["run", "bad.rhai"]);
    out.expect_code(2);
    assert!(out.stderr.contains("bad.rhai:6:"), "{}", out.stderr);
    assert!(out.stderr.contains("6 | let b = (a + ;"), "{}", out.stderr);
    assert!(out.stderr.contains('^'), "{}", out.stderr);

    let out = ws.run(&["check", "bad.rhai"]);
    out.expect_code(2);
    assert!(out.stderr.contains("bad.rhai:6:"), "{}", out.stderr);
}

#[test]
fn runtime_error_points_into_the_step_that_failed() {
    let ws = Workspace::new();
    ws.write(
        "fail.rhai",
        &(header("fail", &[])
            + "step(\"first\", || 1);\nstep(\"second\", || {\n    throw \"disk is full\";\n});\n"),
    );
    let out = ws.run(&["run", "fail.rhai", "--verbose"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("fail.rhai:7:5: step `second` failed: disk is full"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("7 |     throw \"disk is full\";"),
        "{}",
        out.stderr
    );
}

#[test]
fn header_errors_name_the_line() {
    let ws = Workspace::new();
    ws.write(
        "h.rhai",
        "//! name: h\n//! version: 1.0.0\n//! description: d\n//! param n: strin\n\n1;\n",
    );
    let out = ws.run(&["check", "h.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("h.rhai:4:1: parameter `n`: unknown type `strin`"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_refuses_params_the_header_does_not_declare() {
    let ws = Workspace::new();
    ws.write(
        "u.rhai",
        &(header("u", &["stack: string required"]) + "log::info(params.stak);\n"),
    );
    let out = ws.run(&["check", "u.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("`params.stak` is not declared"),
        "{}",
        out.stderr
    );
}

const RESUMABLE: &str = r#"
let first = step("count", || {
    fs::append_text("count.log", "ran\n");
    #{ answer: 42 }
});
step("flaky", || {
    if fs::exists("fail.flag") { throw "flag is set"; }
    fs::write_text("result.txt", `${first.answer}`);
});
"#;

#[test]
fn failed_run_resumes_skipping_completed_steps_and_reusing_their_results() {
    let ws = Workspace::new();
    ws.write("r.rhai", &(header("r", &[]) + RESUMABLE));
    ws.write("fail.flag", "");
    let out = ws.run(&["run", "r.rhai", "--json"]);
    out.expect_code(1);
    let report = out.json();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(report["steps"][0]["outcome"], "ok");
    assert_eq!(report["steps"][1]["outcome"], "failed");

    std::fs::remove_file(ws.join("fail.flag")).unwrap();
    let out = ws.run(&["run", "--resume", &run_id, "--json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["steps"][0]["outcome"], "resumed");
    assert_eq!(report["steps"][1]["outcome"], "ok");
    assert_eq!(
        ws.read("count.log"),
        "ran\n",
        "the completed step must not run again"
    );
    assert_eq!(
        ws.read("result.txt"),
        "42",
        "the resumed step hands back its recorded result"
    );

    let out = ws.run(&["run", "--resume", &run_id]);
    out.expect_code(2);
    assert!(out.stderr.contains("already succeeded"), "{}", out.stderr);
}

#[test]
fn resume_refuses_a_changed_playbook() {
    let ws = Workspace::new();
    ws.write("r.rhai", &(header("r", &[]) + RESUMABLE));
    ws.write("fail.flag", "");
    let out = ws.run(&["run", "r.rhai", "--json"]);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    ws.write("r.rhai", &(header("r", &[]) + RESUMABLE + "\n// edited\n"));
    let out = ws.run(&["run", "--resume", &run_id]);
    out.expect_code(3);
    assert!(out.stderr.contains("changed since run"), "{}", out.stderr);
    assert_eq!(ws.read("count.log"), "ran\n");
}

#[test]
fn dry_run_plans_every_change_and_leaves_the_disk_untouched() {
    let ws = Workspace::new();
    let body = r#"
step("prepare", || {
    fs::mkdir("out/sub");
    fs::write_text("out/a.txt", "hello");
    fs::write_json("out/b.json", #{ n: 1 });
});
step("tidy", || {
    fs::copy("keep.txt", "out/keep-copy.txt");
    fs::chmod("keep.txt", 0o600);
    fs::remove("old.txt");
});
"#;
    ws.write("d.rhai", &(header("d", &[]) + body));
    ws.write("keep.txt", "keep");
    ws.write("old.txt", "old");
    let before = snapshot(ws.path());

    let out = ws.run(&["run", "d.rhai", "--dry-run", "--json"]);
    out.expect_code(0);
    assert_eq!(
        snapshot(ws.path()),
        before,
        "a dry run must change nothing outside the journal"
    );
    let plan: Vec<String> = out.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        plan,
        [
            "fs::mkdir",
            "fs::write_text",
            "fs::write_json",
            "fs::copy",
            "fs::chmod",
            "fs::remove"
        ]
    );

    // The real run on the same state performs the same actions in the same order.
    let out = ws.run(&["run", "d.rhai", "--json"]);
    out.expect_code(0);
    let done: Vec<String> = out.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done, plan);
    assert_eq!(ws.read("out/a.txt"), "hello");
    assert!(!ws.join("old.txt").exists());
}

/// Every file under `dir` except the state dir, with content and mode.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if rel.starts_with("state") {
                continue;
            }
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.push((rel, Vec::new(), meta.permissions().mode()));
            } else {
                out.push((
                    rel,
                    std::fs::read(&path).unwrap(),
                    meta.permissions().mode(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_secret_never_appears_in_stdout_stderr_json_or_the_journal() {
    let ws = Workspace::new();
    let canary = "canary-7f3a9c1e-secret";
    let body = r#"
let key = step("read", || {
    log::info(`the key is ${params.key}`);
    print(params.key);
    debug(params.key);
    #{ key: params.key, text: "prefix " + params.key.to_string() }
});
step("deliver", || {
    fs::write_secret("out/key", params.key);
    log::info(fs::read_text("out/key"));
    let leaked = fs::read_text("out/key");
    throw "failed while holding " + leaked;
});
"#;
    ws.write("s.rhai", &(header("s", &["key: secret required"]) + body));
    let out = ws.run_env(
        &["run", "s.rhai", "-p", "key=env:TEST_KEY", "--json"],
        &[("TEST_KEY", canary)],
    );
    out.expect_code(1);
    assert_eq!(
        ws.read("out/key"),
        canary,
        "the secret is delivered where it is meant to go"
    );
    assert!(
        !out.all_output().contains(canary),
        "secret leaked:\n{}",
        out.all_output()
    );
    assert!(
        !ws.journals().contains(canary),
        "secret leaked into the journal"
    );
    assert!(out.stderr.contains("***"));
    assert!(
        ws.journals().contains("env:TEST_KEY"),
        "the journal records the reference"
    );

    let out = ws.run(&["run", "s.rhai", "-p", &format!("key={canary}")]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("never the value itself"),
        "{}",
        out.stderr
    );
    assert!(!out.all_output().contains(canary));
}

#[test]
fn paths_outside_the_allowed_roots_are_refused() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("target.txt"), "original").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.join("escape")).unwrap();
    let attempts = [
        format!("{}/target.txt", outside.path().display()),
        "../../../../../../etc/passwd".to_string(),
        "escape/target.txt".to_string(),
        "missing/../../outside.txt".to_string(),
    ];
    for path in &attempts {
        ws.write(
            "w.rhai",
            &(header("w", &[]) + &format!("fs::write_text({path:?}, \"pwned\");\n")),
        );
        let out = ws.run(&["run", "w.rhai"]);
        out.expect_code(1);
        assert!(
            out.stderr.contains("outside the allowed roots")
                || out.stderr.contains("does not exist"),
            "{path}: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("target.txt")).unwrap(),
        "original"
    );

    // An operator can allow a directory explicitly.
    let target = format!("{}/target.txt", outside.path().display());
    ws.write(
        "w.rhai",
        &(header("w", &[]) + &format!("fs::write_text({target:?}, \"allowed\");\n")),
    );
    ws.run(&[
        "run",
        "w.rhai",
        "--allow-path",
        &outside.path().display().to_string(),
    ])
    .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("target.txt")).unwrap(),
        "allowed"
    );
}

#[test]
fn path_parameters_are_allowed_roots() {
    let ws = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    ws.write(
        "p.rhai",
        &(header("p", &["dir: path required"])
            + "fs::write_text(fs::join(params.dir, \"x\"), \"ok\");\n"),
    );
    ws.run(&[
        "run",
        "p.rhai",
        "-p",
        &format!("dir={}", elsewhere.path().display()),
    ])
    .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(elsewhere.path().join("x")).unwrap(),
        "ok"
    );
}

#[test]
fn an_endless_loop_is_stopped_by_the_timeout() {
    let ws = Workspace::new();
    ws.write(
        "l.rhai",
        &(header("l", &[]) + "step(\"spin\", || { let i = 0; loop { i += 1; } });\n"),
    );
    let started = Instant::now();
    let out = ws.run(&["run", "l.rhai", "--timeout", "1s"]);
    out.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);

    ws.write("s.rhai", &(header("s", &[]) + "time::sleep(600);\n"));
    let started = Instant::now();
    ws.run(&["run", "s.rhai", "--timeout", "1s"]).expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a sleeping primitive is interrupted too"
    );
}

#[test]
fn sigint_leaves_a_resumable_journal() {
    let ws = Workspace::new();
    let body = r#"
step("before", || { fs::append_text("before.log", "ran\n"); 1 });
step("long", || { if fs::exists("slow.flag") { time::sleep(120); } "done" });
step("after", || fs::write_text("after.txt", "finished"));
"#;
    ws.write("i.rhai", &(header("i", &[]) + body));
    ws.write("slow.flag", "");
    let child = ws
        .command(&["run", "i.rhai", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !journal_has(&ws, "\"key\":\"long\"") {
        assert!(
            Instant::now() < deadline,
            "the run never reached the long step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "Ctrl-C must interrupt the sleep promptly"
    );
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "interrupted");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("--resume {run_id}")));

    std::fs::remove_file(ws.join("slow.flag")).unwrap();
    ws.run(&["run", "--resume", &run_id]).expect_code(0);
    assert_eq!(ws.read("before.log"), "ran\n");
    assert_eq!(ws.read("after.txt"), "finished");
}

#[test]
fn destructive_confirmation_is_refused_without_a_terminal_and_answered_by_yes() {
    let ws = Workspace::new();
    ws.write("old.txt", "precious");
    ws.write(
        "c.rhai",
        &(header("c", &[]) + "step(\"destroy\", || { confirm(\"Remove old.txt?\"); fs::remove(\"old.txt\"); });\n"),
    );
    let out = ws.run(&["run", "c.rhai"]);
    out.expect_code(3);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert_eq!(ws.read("old.txt"), "precious");

    ws.run(&["run", "c.rhai", "--yes"]).expect_code(0);
    assert!(!ws.join("old.txt").exists());
}

#[test]
fn host_commands_need_allow_exec_and_never_take_secrets_as_arguments() {
    let ws = Workspace::new();
    ws.write(
        "h.rhai",
        &(header("h", &["key: secret required"])
            + "let r = host::run([\"sh\", \"-c\", \"cat; printf %s \\\"$K\\\" | wc -c\"], #{ stdin: \"in:\", env: #{ K: params.key } });\nr.stdout\n"),
    );
    let env = [("K_SRC", "canary-host-0042")];
    let out = ws.run_env(&["run", "h.rhai", "-p", "key=env:K_SRC"], &env);
    out.expect_code(3);
    assert!(out.stderr.contains("--allow-exec"), "{}", out.stderr);

    let out = ws.run_env(
        &[
            "run",
            "h.rhai",
            "-p",
            "key=env:K_SRC",
            "--allow-exec",
            "--json",
        ],
        &env,
    );
    out.expect_code(0);
    assert_eq!(out.json()["result"].as_str().unwrap().trim(), "in:16");

    ws.write(
        "a.rhai",
        &(header("a", &["key: secret required"]) + "host::run([\"echo\", params.key]);\n"),
    );
    let out = ws.run_env(
        &["run", "a.rhai", "-p", "key=env:K_SRC", "--allow-exec"],
        &env,
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("never go on a command line"),
        "{}",
        out.stderr
    );
}

#[test]
fn list_show_eject_and_lookup_order() {
    let ws = Workspace::new();
    ws.write(
        "playbooks/local-one.rhai",
        &(header("local-one", &["stack: string required -- the stack"]) + "1;\n"),
    );
    ws.write(
        "config/playbooks/user-one.rhai",
        &(header("user-one", &[]) + "1;\n"),
    );

    let out = ws.run(&["list", "--json"]);
    out.expect_code(0);
    let list = out.json();
    let origin_of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["origin"].clone())
    };
    assert_eq!(origin_of("local-one").unwrap()["kind"], "file");
    assert!(origin_of("user-one").unwrap()["path"]
        .as_str()
        .unwrap()
        .contains("config/playbooks"));

    let out = ws.run(&["show", "local-one"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("-p stack")
            && out.stdout.contains("required")
            && out.stdout.contains("the stack")
    );

    ws.run(&["run", "local-one", "-p", "stack=x"])
        .expect_code(0);
    let out = ws.run(&["run", "no-such-playbook"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no playbook named `no-such-playbook`"));
}

#[test]
fn every_shipped_playbook_checks_and_can_be_ejected() {
    let ws = Workspace::new();
    let out = ws.run(&["check"]);
    out.expect_code(0);
    let out = ws.run(&["list", "--json"]);
    for playbook in out.json().as_array().unwrap() {
        let name = playbook["name"].as_str().unwrap();
        assert_eq!(playbook["origin"]["kind"], "built-in");
        ws.run(&["eject", name]).expect_code(0);
        assert!(ws.join(&format!("playbooks/{name}.rhai")).is_file());
        ws.run(&["check", name]).expect_code(0);
        let again = ws.run(&["eject", name]);
        again.expect_code(3);
    }
}

#[test]
fn the_generated_reference_in_docs_is_current() {
    let ws = Workspace::new();
    let out = ws.run(&["doc"]);
    out.expect_code(0);
    assert!(out.stdout.contains("`fs::write_text("), "{}", out.stdout);
    assert!(out.stdout.contains("`step("));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md"))
            .unwrap_or_default();
    assert!(
        committed == out.stdout,
        "docs/reference.md is out of date: regenerate it with `cargo run -q -- doc > docs/reference.md`"
    );
}

#[test]
fn runs_and_log_read_the_journal_back() {
    let ws = Workspace::new();
    ws.write("ok.rhai", &(header("ok", &[]) + "step(\"one\", || 1);\n"));
    let out = ws.run(&["run", "ok.rhai", "--json"]);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    let out = ws.run(&["runs"]);
    out.expect_code(0);
    assert!(out.stdout.contains(&run_id) && out.stdout.contains("success"));
    let out = ws.run(&["log", &run_id]);
    out.expect_code(0);
    assert!(out.stdout.contains("step  one ok"), "{}", out.stdout);
    ws.run(&["log", "nope"]).expect_code(2);
}
