//! The stack lock: one locking run per stack at a time, waiting with --wait-lock, taking over
//! a lock a killed run left; and `--resume` keeping the flags the run started with.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::docker::available;
use common::stack::{age_identity, Stack};
use common::{header, Outcome, Workspace};

/// A playbook that locks its stack and holds it for `seconds`, logging when it starts and ends.
const HOLD: &str = "//! name: hold\n//! version: 1.0.0\n//! description: holds the stack lock\n\
//! locks: stack\n//! param stack: string required\n//! param seconds: int = 0\n\n\
step(\"hold\", || {\n\
    fs::append_text(\"order.log\", \"start \" + run.id + \"\\n\");\n\
    time::sleep(params.seconds);\n\
    fs::append_text(\"order.log\", \"end \" + run.id + \"\\n\");\n\
});\n";

fn hold_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("hold.rhai", HOLD);
    ws
}

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    ws.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runbook")
}

fn finish(child: Child) -> Outcome {
    let output = child.wait_with_output().unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The lock file's content once a run has taken it (it names the holder).
fn wait_for_holder(ws: &Workspace, stack: &str) -> String {
    let path = ws.join(&format!("state/locks/{stack}.lock"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("pid: ") {
            return text;
        }
        assert!(Instant::now() < deadline, "no run took the lock of {stack}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until run `run_id` has started its step (its journal exists, so it can be resumed).
fn wait_for_step(ws: &Workspace, run_id: &str) {
    let journal = ws.join(&format!("state/runs/{run_id}/journal.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("\"step_start\"")) {
        assert!(
            Instant::now() < deadline,
            "run {run_id} never started its step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn a_second_run_on_a_locked_stack_refuses_naming_the_holder_or_waits_for_it() {
    let ws = hold_workspace();
    let first = spawn(
        &ws,
        &[
            "run",
            "hold.rhai",
            "-p",
            "stack=shop",
            "-p",
            "seconds=4",
            "--json",
        ],
    );
    let pid = first.id();
    let holder = wait_for_holder(&ws, "shop");
    let holder_run = field(&holder, "run_id").to_string();
    assert_eq!(field(&holder, "pid"), pid.to_string());

    let refused = ws.run(&["run", "hold.rhai", "-p", "stack=shop"]);
    refused.expect_code(3);
    let sentence = refused.stderr.trim();
    assert!(
        sentence.contains(&format!("run {holder_run} (pid {pid}, playbook hold")),
        "the refusal names the holder's run id, pid and playbook: {sentence}"
    );
    assert_eq!(sentence.lines().count(), 1, "one sentence: {sentence}");

    let impatient = ws.run(&["run", "hold.rhai", "-p", "stack=shop", "--wait-lock", "1s"]);
    impatient.expect_code(3);
    assert!(
        impatient.stderr.contains("still locked by") && impatient.stderr.contains(&holder_run),
        "{}",
        impatient.stderr
    );

    let waiting = ws.run(&[
        "run",
        "hold.rhai",
        "-p",
        "stack=shop",
        "--wait-lock",
        "30s",
        "--json",
    ]);
    waiting.expect_code(0);
    assert!(
        waiting.stderr.contains("waiting up to 30s"),
        "{}",
        waiting.stderr
    );
    let first = finish(first);
    first.expect_code(0);
    let second_run = waiting.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(first.json()["run_id"], holder_run.as_str());
    assert_eq!(
        ws.read("order.log"),
        format!("start {holder_run}\nend {holder_run}\nstart {second_run}\nend {second_run}\n"),
        "the waiting run started only after the first one ended; the refused ones did nothing"
    );
    assert_eq!(
        ws.read("state/locks/shop.lock"),
        "",
        "released when the run ended"
    );
    let runs = std::fs::read_dir(ws.join("state/runs")).unwrap().count();
    assert_eq!(runs, 2, "a refused run leaves no journal to resume");
}

#[test]
fn a_lock_left_by_a_killed_run_is_taken_over_with_a_warning() {
    let ws = hold_workspace();
    let mut killed = spawn(
        &ws,
        &["run", "hold.rhai", "-p", "stack=shop", "-p", "seconds=120"],
    );
    let holder = wait_for_holder(&ws, "shop");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(killed.id() as i32, libc::SIGKILL) };
    killed.wait().unwrap();
    assert_eq!(
        ws.read("state/locks/shop.lock"),
        holder,
        "a killed run cannot empty the file"
    );

    let next = ws.run(&["run", "hold.rhai", "-p", "stack=shop"]);
    next.expect_code(0);
    assert!(
        next.stderr
            .contains("warning: taking over the lock of stack `shop`")
            && next.stderr.contains(field(&holder, "run_id"))
            && next
                .stderr
                .contains(&format!("pid {}", field(&holder, "pid"))),
        "{}",
        next.stderr
    );
    assert_eq!(ws.read("state/locks/shop.lock"), "");

    // The resume of a killed run takes its own lock back, and holds it while it runs.
    let mut killed = spawn(
        &ws,
        &["run", "hold.rhai", "-p", "stack=shop", "-p", "seconds=120"],
    );
    let holder = wait_for_holder(&ws, "shop");
    let run_id = field(&holder, "run_id");
    wait_for_step(&ws, run_id);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(killed.id() as i32, libc::SIGKILL) };
    killed.wait().unwrap();
    let resumed = ws.run(&["run", "--resume", run_id, "-p", "seconds=0"]);
    resumed.expect_code(0);
    assert!(
        resumed
            .stderr
            .contains("left by an earlier attempt of this run"),
        "{}",
        resumed.stderr
    );
    assert_eq!(ws.read("state/locks/shop.lock"), "");
}

#[test]
fn other_stacks_other_playbooks_and_dry_runs_are_not_blocked() {
    let ws = hold_workspace();
    ws.write(
        "look.rhai",
        &(header("look", &["stack: string required"])
            + "step(\"look\", || fs::append_text(\"order.log\", \"looked\\n\"));\n"),
    );
    let mut first = spawn(
        &ws,
        &["run", "hold.rhai", "-p", "stack=shop", "-p", "seconds=20"],
    );
    wait_for_holder(&ws, "shop");
    let started = Instant::now();

    ws.run(&["run", "hold.rhai", "-p", "stack=blog"])
        .expect_code(0);
    ws.run(&["run", "look.rhai", "-p", "stack=shop"])
        .expect_code(0);
    let dry = ws.run(&[
        "run",
        "hold.rhai",
        "-p",
        "stack=shop",
        "--dry-run",
        "--json",
    ]);
    dry.expect_code(0);
    assert_eq!(dry.json()["dry_run"], true);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "none of them waited for the lock"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run still held shop throughout"
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert_eq!(first.wait().unwrap().code(), Some(130));
    assert_eq!(
        ws.read("state/locks/shop.lock"),
        "",
        "an interrupted run releases its lock"
    );
}

#[test]
fn resume_keeps_the_flags_the_run_started_with_unless_given_again() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    let b = outside.path().join("b.txt");
    std::fs::write(&b, "b").unwrap();
    ws.write("a.txt", "a");
    let body = format!(
        "step(\"remove a\", || {{ confirm(\"Remove a.txt?\"); fs::remove(\"a.txt\"); }});\n\
         step(\"wait\", || time::sleep(params.seconds));\n\
         step(\"remove b\", || {{ confirm(\"Remove b.txt?\"); fs::remove({:?}); }});\n",
        b.display().to_string()
    );
    ws.write("r.rhai", &(header("r", &["seconds: int = 3"]) + &body));
    let outside_dir = outside.path().display().to_string();

    let first = ws.run(&[
        "run",
        "r.rhai",
        "--yes",
        "--allow-path",
        &outside_dir,
        "--timeout",
        "1s",
        "--json",
    ]);
    first.expect_code(1);
    let run_id = first.json()["run_id"].as_str().unwrap().to_string();
    assert!(!ws.join("a.txt").exists());
    assert!(b.exists());

    let again = ws.run(&["run", "--resume", &run_id]);
    again.expect_code(1);
    assert!(
        again.stderr.contains("--timeout"),
        "the recorded --timeout 1s still applies: {}",
        again.stderr
    );

    let resumed = ws.run(&["run", "--resume", &run_id, "--timeout", "30s", "--json"]);
    resumed.expect_code(0);
    assert!(
        !b.exists(),
        "--yes and --allow-path of the first attempt answered and allowed the last step"
    );
    let report = resumed.json();
    assert_eq!(report["steps"][0]["outcome"], "resumed");
    assert_eq!(report["steps"][2]["outcome"], "ok");

    let journal = ws.read(&format!("state/runs/{run_id}/journal.jsonl"));
    let starts: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "run_start")
        .collect();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[2]["flags"]["yes"], true);
    assert_eq!(starts[2]["flags"]["allow_paths"][0], outside_dir.as_str());
    assert_eq!(starts[1]["flags"]["timeout"], "1s");
    assert_eq!(
        starts[2]["flags"]["timeout"], "30s",
        "the flag given again replaced it"
    );
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The complete sets of a stack and the half-written ones (`.<time>.partial`).
fn sets(ws: &Workspace, stack: &Stack) -> (Vec<String>, Vec<String>) {
    let dir = ws.join(&format!("backups/{}", stack.name));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let (partial, whole): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with('.'));
    (whole, partial)
}

#[test]
fn two_concurrent_backups_of_one_stack_one_refuses_one_waits_and_only_whole_sets_remain() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let (identity, recipients) = age_identity(&ws);
    let stack_param = format!("stack={}", stack.name);
    let identity = format!("identity={identity}");
    let recipients = format!("recipients={recipients}");
    let backup = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["run", "backup", "-p", &stack_param, "-p", &recipients];
        args.push("--json");
        args.extend(extra);
        args.into_iter().map(str::to_string).collect()
    };
    let first = spawn(&ws, &refs(&backup(&[])));
    let pid = first.id();
    wait_for_holder(&ws, &stack.name);
    let waiting = spawn(&ws, &refs(&backup(&["--wait-lock", "5m"])));
    let refused = ws.run(&refs(&backup(&[])));

    let first = finish(first);
    let waiting = finish(waiting);
    first.expect_code(0);
    waiting.expect_code(0);
    refused.expect_code(3);
    let first_run = first.json()["run_id"].as_str().unwrap().to_string();
    assert!(
        refused
            .stderr
            .contains(&format!("run {first_run} (pid {pid}, playbook backup")),
        "{}",
        refused.stderr
    );
    assert!(
        waiting.stderr.contains("waiting up to 5m"),
        "{}",
        waiting.stderr
    );

    let (whole, partial) = sets(&ws, &stack);
    assert!(
        partial.is_empty(),
        "no half-written set remains: {partial:?}"
    );
    assert_eq!(whole.len(), 2, "one set per backup that ran: {whole:?}");
    for set in &whole {
        let dir = ws.join(&format!("backups/{}/{set}", stack.name));
        assert!(dir.join("manifest.json").is_file(), "{set} is whole");
    }
    let verify = ws.run(&[
        "run",
        "verify-backup",
        "-p",
        &stack_param,
        "-p",
        &recipients,
        "-p",
        &identity,
    ]);
    verify.expect_code(0);
}
