//! The test harness: runs the built `runbook` binary in a temp dir with its own state and
//! config dirs, like an operator would.
#![allow(dead_code)]

pub mod archive;
pub mod docker;
pub mod openbao;
pub mod stack;
pub mod terminal;
pub mod tls;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A unique id for this test process, used in names and the `runbook.test` label of every
/// Docker object a test creates.
pub fn run_id() -> String {
    use std::sync::OnceLock;
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("rbt{}{:04x}", std::process::id(), rand_u16()))
        .clone()
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 8) as u16
}

/// True in CI, where a missing Docker engine or OpenBao fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Skips (returns false) or, in CI, fails when a required component is unavailable.
pub fn require(component: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{component} is required in CI but unavailable: {why}");
    }
    eprintln!("skipping: {component} unavailable ({why}); run scripts/test to provision it");
    false
}

/// A sandboxed working directory with its own state and config dirs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// The outcome of one `runbook` invocation.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(output: Output) -> Self {
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Both streams, for asserting that something appears nowhere.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `--json` report on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("runbook-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the workspace.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parents) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The command, run in the workspace with its state and config dirs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .current_dir(self.path())
            .env("RUNBOOK_STATE_DIR", self.join("state"))
            .env("RUNBOOK_CONFIG_DIR", self.join("config"))
            .env("RUNBOOK_DATA_DIR", self.join("data"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `runbook ARGS` with no stdin and waits.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_env(args, &[])
    }

    /// Runs `runbook ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Outcome::from(cmd.output().expect("run runbook"))
    }

    /// Runs `runbook ARGS` feeding `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Outcome {
        self.run_env_with_stdin(args, input, &[])
    }

    /// Runs `runbook ARGS` with extra environment variables, feeding `input` on stdin.
    pub fn run_env_with_stdin(&self, args: &[&str], input: &str, env: &[(&str, &str)]) -> Outcome {
        let mut command = self.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn runbook");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Outcome::from(child.wait_with_output().unwrap())
    }

    /// Every file under the state dir's runs, concatenated (to assert a secret is absent).
    pub fn journals(&self) -> String {
        let mut all = String::new();
        if let Ok(runs) = std::fs::read_dir(self.join("state/runs")) {
            for run in runs.flatten() {
                if let Ok(text) = std::fs::read_to_string(run.path().join("journal.jsonl")) {
                    all.push_str(&text);
                }
            }
        }
        all
    }
}

/// A playbook header for test playbooks.
pub fn header(name: &str, params: &[&str]) -> String {
    let mut text =
        format!("//! name: {name}\n//! version: 1.0.0\n//! description: test playbook {name}\n");
    for p in params {
        text.push_str(&format!("//! param {p}\n"));
    }
    text.push('\n');
    text
}
