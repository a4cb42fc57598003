//! What an operator reads when something is wrong: a failed step as a sentence with the step
//! and how to resume, parameters refused before the first change, `check` catching a call to a
//! function that does not exist, an ad-hoc script without a header, and a full disk in words.

mod common;

use common::{header, Workspace};

const FAILING: &str =
    "step(\"first\", || 1);\nstep(\"second\", || {\n    throw \"disk is full\";\n});\n";

#[test]
fn a_failed_step_reads_as_a_sentence_with_the_step_and_how_to_resume() {
    let ws = Workspace::new();
    ws.write("fail.rhai", &(header("fail", &[]) + FAILING));
    let out = ws.run(&["run", "fail.rhai", "--json"]);
    out.expect_code(1);
    let report = out.json();
    let id = report["run_id"].as_str().unwrap();
    assert_eq!(report["error"], "error: step `second` failed: disk is full");
    assert_eq!(report["error_at"], "fail.rhai:7:5");
    assert_eq!(
        out.stderr.lines().rev().take(2).collect::<Vec<_>>(),
        vec![
            format!("run {id} failed; once the cause is fixed, finish it with: runbook run --resume {id}")
                .as_str(),
            "error: step `second` failed: disk is full",
        ]
    );
    assert!(
        !out.stderr.contains("fail.rhai") && !out.stderr.contains(" | "),
        "no source position without --verbose: {}",
        out.stderr
    );

    // --verbose shows where it was raised: file:line:col, the line and a caret.
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
    assert!(
        out.stderr.contains("runbook run --resume "),
        "{}",
        out.stderr
    );

    // A dry run changed nothing: there is nothing to resume.
    let out = ws.run(&["run", "fail.rhai", "--dry-run"]);
    out.expect_code(1);
    assert!(!out.stderr.contains("--resume"), "{}", out.stderr);
}

#[test]
fn a_mistake_in_the_script_still_shows_where_it_is() {
    let ws = Workspace::new();
    ws.write(
        "bug.rhai",
        &(header("bug", &[]) + "step(\"add\", || {\n    let m = #{};\n    m.total + 1\n});\n"),
    );
    let out = ws.run(&["run", "bug.rhai"]);
    out.expect_code(1);
    assert!(out.stderr.contains("bug.rhai:7:"), "{}", out.stderr);
    assert!(out.stderr.contains("7 |     m.total + 1"), "{}", out.stderr);
}

/// Every way the shipped backup playbook is called wrong: refused with exit 2 before any
/// step, nothing created (no set directory, no `.partial`, no journal).
#[test]
fn bad_parameters_are_usage_errors_before_the_first_change() {
    let ws = Workspace::new();
    let empty = ws.write("empty-passphrase", "\n");
    let empty = format!("passphrase_file={}", empty.display());
    let good = ws.write("passphrase", "correct horse battery staple\n");
    let good = format!("passphrase_file={}", good.display());
    for (args, expected) in [
        (
            vec!["-p", "stack=shop", "-p", &good, "-p", "compression=lz4"],
            "parameter `compression` must be one of zstd, gzip, none, got `lz4`",
        ),
        (
            vec!["-p", "stack=shop", "-p", &good, "-p", "level=40"],
            "parameter `level` must be between 1 and 19, got 40",
        ),
        (
            vec![
                "-p",
                "stack=shop",
                "-p",
                &good,
                "-p",
                "compression=gzip",
                "-p",
                "level=15",
            ],
            "parameter level must be between 1 and 9 with compression=gzip, got 15",
        ),
        (
            vec!["-p", "stack=shop", "-p", &good, "-p", "parallel=0"],
            "parameter `parallel` must be between 1 and 16, got 0",
        ),
        (
            vec!["-p", "stack=shop", "-p", &empty],
            "parameter `passphrase_file`: file ",
        ),
        (
            vec!["-p", "stack=A", "-p", "stack=B", "-p", &good],
            "parameter `stack` is given twice (-p stack=...); it takes one value",
        ),
    ] {
        let out = ws.run(&[&["run", "backup"], &args[..]].concat());
        out.expect_code(2);
        assert!(
            out.stderr.starts_with(&format!("error: {expected}")),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            !ws.join("backups").exists(),
            "{args:?} created the set directory"
        );
    }
    assert!(
        ws.join("empty-passphrase").exists() && ws.journals().is_empty(),
        "a refused run leaves no journal"
    );
    let out = ws.run(&["run", "backup", "-p", "stack=shop", "-p", &empty]);
    assert!(
        out.stderr.trim_end().ends_with("is empty"),
        "{}",
        out.stderr
    );

    // The constraints are part of the header, shown by `runbook show`.
    let out = ws.run(&["show", "backup"]);
    out.expect_code(0);
    assert!(out.stdout.contains("default 3 (1..19)"), "{}", out.stdout);
    assert!(out.stdout.contains("(zstd|gzip|none)"), "{}", out.stdout);
}

#[test]
fn header_constraints_check_values_and_defaults() {
    let ws = Workspace::new();
    ws.write(
        "c.rhai",
        &(header(
            "c",
            &[
                "mode: string = \"fast\" (fast|safe)",
                "only: list = [] (a|b)",
                "keep: int = 7 (0..)",
            ],
        ) + "#{ mode: params.mode, only: params.only, keep: params.keep }\n"),
    );
    let out = ws.run(&["run", "c.rhai", "-p", "only=a", "-p", "only=b", "--json"]);
    out.expect_code(0);
    assert_eq!(
        out.json()["result"],
        serde_json::json!({"mode": "fast", "only": ["a", "b"], "keep": 7})
    );
    for (arg, expected) in [
        (
            "mode=slow",
            "parameter `mode` must be one of fast, safe, got `slow`",
        ),
        ("only=a,c", "parameter `only` must be one of a, b, got `c`"),
        ("keep=-1", "parameter `keep` must be at least 0, got -1"),
    ] {
        let out = ws.run(&["run", "c.rhai", "-p", arg]);
        out.expect_code(2);
        assert_eq!(out.stderr.trim_end(), format!("error: {expected}"));
    }

    ws.write(
        "d.rhai",
        &(header("d", &["level: int = 30 (1..19)"]) + "1\n"),
    );
    let out = ws.run(&["check", "d.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("d.rhai:4:1: default of parameter `level` must be between 1 and 19, got 30"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_fails_on_a_call_to_a_function_that_does_not_exist() {
    let ws = Workspace::new();
    ws.write(
        "typo.rhai",
        &(header("typo", &[])
            + "import \"audit\" as audit;\n// docker::nope() in a comment is fine\n\
               let rows = docker::contaners(#{});\n"),
    );
    let out = ws.run(&["check", "typo.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr.starts_with(
            "error: typo.rhai:7:12: `docker::contaners` is not a function (did you mean docker::containers?)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("7 | let rows = docker::contaners(#{});"),
        "{}",
        out.stderr
    );

    ws.write(
        "stdlib-typo.rhai",
        &(header("stdlib-typo", &[]) + "import \"audit\" as audit;\naudit::portz(#{}, []);\n"),
    );
    let out = ws.run(&["check", "stdlib-typo.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "stdlib-typo.rhai:6:1: `audit::portz` is not a function of stdlib module `audit` (did you mean audit::ports?)"
        ),
        "{}",
        out.stderr
    );

    // Every shipped playbook and stdlib module calls only what exists.
    ws.run(&["check"]).expect_code(0);
}

#[test]
fn an_ad_hoc_script_without_a_header_runs() {
    let ws = Workspace::new();
    ws.write(
        "fix.rhai",
        "// put the marker back\nstep(\"write the marker\", || fs::write_text(\"marker\", \"ok\"));\n\"done\"\n",
    );
    let out = ws.run(&["run", "fix.rhai", "--json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["playbook"], "fix");
    assert_eq!(report["version"], "0.0.0");
    assert_eq!(report["result"], "done");
    assert_eq!(ws.read("marker"), "ok");
    assert!(report["run_id"].as_str().unwrap().contains("-fix-"));

    let out = ws.run(&["run", "fix.rhai", "-p", "stack=shop"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("unknown parameter `stack` for playbook `fix` (it takes: none)"),
        "{}",
        out.stderr
    );
    ws.run(&["check", "fix.rhai"]).expect_code(0);

    // A header that is there but incomplete is still an error.
    ws.write("half.rhai", "//! name: half\n\n1\n");
    let out = ws.run(&["run", "half.rhai"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("the header has no `version:` line"),
        "{}",
        out.stderr
    );
}

/// A small filesystem that fills up, when this test may mount one (root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: std::path::PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_names_the_file_and_says_nothing_was_left() {
    let ws = Workspace::new();
    let Some(small) = Tmpfs::mount(ws.join("small"), "256k") else {
        eprintln!("skipping: cannot mount a tmpfs (needs root)");
        return;
    };
    // 2 MiB that do not compress.
    let mut data = vec![0u8; 2 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut data)
        .unwrap();
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::write(ws.join("data/blob"), data).unwrap();
    ws.write(
        "pack.rhai",
        &(header("pack", &[])
            + "step(\"pack\", || archive::pack(\"data\", \"small/data.tar.zst\", #{ encrypt: false, name: \"volume `v1`\" }));\n"),
    );
    let out = ws.run(&["run", "pack.rhai"]);
    out.expect_code(1);
    let file = ws.join("small/data.tar.zst").display().to_string();
    let small_dir = ws.join("small").display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "volume `v1` ({file}): the disk is full (No space left on device"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "the incomplete file was removed, nothing half-written is left: free space on {small_dir} and run again"
        )),
        "{}",
        out.stderr
    );
    let left: Vec<_> = std::fs::read_dir(&small.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
