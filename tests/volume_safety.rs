//! What goes into a volume and what is left behind: a hostile volume tar in a real set is
//! refused by verify-backup and restore naming the entry, with the stack untouched; device
//! nodes and FIFOs come back only when the set records them and the operator allows them;
//! no helper container outlives its run (killed, or the engine gone mid-copy), and doctor
//! reports one that did.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::docker::{available, docker, docker_ok, Objects, BUSYBOX};
use common::stack::age_identity;
use common::{Outcome, Workspace};

/// A stack of one busybox service with one volume: quick to back up and restore.
struct Small {
    objects: Objects,
    name: String,
    app: String,
    data: String,
    identity: String,
    recipients: String,
}

impl Small {
    fn new(ws: &Workspace) -> Small {
        let objects = Objects::new();
        let name = objects.name("vs");
        let member = format!("runbook.stack={name}");
        let data = objects.volume("data", &[&member]);
        let app = objects.run(
            "app",
            &["--label", &member, "-v", &format!("{data}:/data")],
            BUSYBOX,
            &["sleep", "100000"],
        );
        docker(&[
            "exec",
            &app,
            "sh",
            "-c",
            "echo hello > /data/a && mkdir -p /data/d && echo two > /data/d/b",
        ]);
        let (identity, recipients) = age_identity(ws);
        Small {
            objects,
            name,
            app,
            data,
            identity: format!("identity={identity}"),
            recipients: format!("recipients={recipients}"),
        }
    }

    fn run(&self, ws: &Workspace, playbook: &str, extra: &[&str]) -> Outcome {
        self.run_env(ws, playbook, extra, &[])
    }

    fn run_env(
        &self,
        ws: &Workspace,
        playbook: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Outcome {
        let stack = format!("stack={}", self.name);
        let mut args = vec!["run", playbook, "-p", &stack, "-p", &self.recipients];
        // A backup only writes: it takes the public keys alone.
        if playbook != "backup" {
            args.extend(["-p", &self.identity]);
        }
        args.extend_from_slice(extra);
        ws.run_env(&args, env)
    }

    /// What an operator would compare: the container ids and the volume's files.
    fn state(&self) -> String {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=runbook.stack={}", self.name),
        ]);
        let files = docker(&[
            "exec",
            &self.app,
            "sh",
            "-c",
            "cd /data && find . | sort | while read f; do stat -c '%n %a %s %F' \"$f\"; done",
        ]);
        format!("{ids}\n{files}")
    }

    /// The complete set the latest backup wrote.
    fn latest_set(&self, ws: &Workspace) -> PathBuf {
        let dir = ws.join(&format!("backups/{}", self.name));
        let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        sets.sort();
        sets.pop().expect("a complete set")
    }
}

/// The volume artifact of a set: its file name and its manifest entry.
fn volume_artifact(set: &Path) -> (String, serde_json::Value) {
    let manifest = read_manifest(set);
    let artifact = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["metadata"]["kind"] == "volume")
        .expect("a volume artifact")
        .clone();
    (artifact["file"].as_str().unwrap().to_string(), artifact)
}

fn read_manifest(set: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap()
}

/// Puts `tar` in the place of the set's artifact `file`, sealed as the set's own are (zstd,
/// to the set's data key), and records it in the manifest, authenticated again under the
/// set's key: what someone holding the operator's key could do. The rules must stop it.
fn substitute(ws: &Workspace, set: &Path, file: &str, tar: &[u8], identity: &str) {
    let plain = ws.join("hostile.tar");
    std::fs::write(&plain, tar).unwrap();
    let set_dir = set.display().to_string();
    let body = format!(
        r#"
let key = backup::open_set_key({set_dir:?}, #{{ identity: {identity:?} }});
let sealed = archive::seal({plain:?}, fs::join({set_dir:?}, {file:?}), key.write);
let path = fs::join({set_dir:?}, "manifest.json");
let manifest = manifest::read(path);
let artifacts = [];
for a in manifest.artifacts {{
    if a.file == {file:?} {{
        a.sha256 = sealed.sha256;
        a.size = sealed.size;
    }}
    artifacts.push(a);
}}
manifest::write(path, #{{ artifacts: artifacts, metadata: manifest.metadata }}, key);
"#,
        identity = identity.trim_start_matches("identity="),
        plain = plain.display().to_string(),
    );
    common::docker::result(&common::docker::playbook(ws, &body));
}

/// One raw tar entry, written header by header (the tar crate's builder refuses these).
#[derive(Clone, Copy)]
struct Raw<'a> {
    path: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn entry<'a>(path: &'a str, kind: tar::EntryType) -> Raw<'a> {
    Raw {
        path,
        kind,
        link: "",
        data: b"",
    }
}

/// A volume tar: the root, a plain file, then `hostile`.
fn volume_tar(hostile: &[Raw]) -> Vec<u8> {
    let mut entries = vec![
        entry("./", tar::EntryType::Directory),
        Raw {
            data: b"fine\n",
            ..entry("./a", tar::EntryType::Regular)
        },
    ];
    entries.extend_from_slice(hostile);
    let mut out = Vec::new();
    for e in &entries {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        header.set_entry_type(e.kind);
        header.set_mode(if e.kind.is_dir() { 0o755 } else { 0o644 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(e.data.len() as u64);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn a_hostile_volume_tar_fails_verify_and_restore_naming_the_entry_and_the_stack_stays() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    stack.run(&ws, "backup", &[]).expect_code(0);
    let set = stack.latest_set(&ws);
    let (file, _) = volume_artifact(&set);
    let before = stack.state();
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<Raw>, &str)> = vec![
        (
            "device node",
            vec![entry("./null", T::Char)],
            "archive entry `./null` is a device node",
        ),
        (
            "absolute path",
            vec![Raw {
                data: b"x",
                ..entry("/etc/runbook-evil", T::Regular)
            }],
            "archive entry `/etc/runbook-evil` has an absolute path",
        ),
        (
            "dot-dot",
            vec![entry("./x/../../etc", T::Directory)],
            "archive entry `./x/../../etc` contains `..`",
        ),
        (
            "symlink write",
            vec![
                Raw {
                    link: "/etc",
                    ..entry("./lnk", T::Symlink)
                },
                Raw {
                    data: b"x",
                    ..entry("./lnk/runbook-evil", T::Regular)
                },
            ],
            "archive entry `./lnk/runbook-evil` would be written through the symlink `lnk`",
        ),
        (
            "hard-link escape",
            vec![Raw {
                link: "../../etc/shadow",
                ..entry("./h", T::Link)
            }],
            "archive entry `./h` is a hard link whose target `../../etc/shadow` contains `..`",
        ),
    ];
    for (what, hostile, expected) in cases {
        substitute(&ws, &set, &file, &volume_tar(&hostile), &stack.identity);
        let verify = stack.run(&ws, "verify-backup", &[]);
        assert_eq!(
            verify.code, 1,
            "{what}: verify-backup must fail:\n{}",
            verify.stderr
        );
        assert!(
            verify.stderr.contains(expected),
            "{what}: verify-backup names the entry ({expected}):\n{}",
            verify.stderr
        );
        let restore = stack.run(&ws, "restore", &["--yes"]);
        assert_eq!(
            restore.code, 1,
            "{what}: restore must fail:\n{}",
            restore.stderr
        );
        assert!(
            restore.stderr.contains(expected),
            "{what}: restore names the entry:\n{}",
            restore.stderr
        );
        assert_eq!(stack.state(), before, "{what}: the stack is untouched");
    }
}

#[test]
fn a_load_refused_part_way_leaves_the_volume_empty() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let objects = Objects::new();
    let volume = objects.volume("target", &[]);
    // A plain file goes through first, then the escape.
    let tar = volume_tar(&[
        Raw {
            data: &[7u8; 300_000],
            ..entry("./big", tar::EntryType::Regular)
        },
        entry("./x/../../etc", tar::EntryType::Directory),
    ]);
    std::fs::write(ws.join("hostile.tar"), &tar).unwrap();
    let out = common::docker::playbook(
        &ws,
        &format!("docker::volume_import({volume:?}, \"hostile.tar\", #{{ image: {BUSYBOX:?} }})"),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("volume `{volume}`"))
            && out
                .stderr
                .contains("archive entry `./x/../../etc` contains `..`")
            && out.stderr.contains("the volume is empty again"),
        "one sentence names the volume, the entry and what became of the volume:\n{}",
        out.stderr
    );
    let listing = docker(&[
        "run",
        "--rm",
        "--label",
        &Objects::label(),
        "-v",
        &format!("{volume}:/v"),
        BUSYBOX,
        "ls",
        "-A",
        "/v",
    ]);
    assert_eq!(
        listing, "",
        "nothing of the refused archive is in the volume"
    );
    assert!(
        helpers_of_volume(&volume).is_empty(),
        "the helper container is gone"
    );
}

#[test]
fn a_fifo_the_set_records_is_refused_by_default_and_restored_when_allowed() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    docker(&["exec", &stack.app, "mkfifo", "-m", "0640", "/data/pipe"]);
    stack.run(&ws, "backup", &[]).expect_code(0);
    let set = stack.latest_set(&ws);
    let (_, artifact) = volume_artifact(&set);
    assert_eq!(
        artifact["metadata"]["special_files"], 1,
        "the set records the FIFO: {artifact}"
    );
    stack.run(&ws, "verify-backup", &[]).expect_code(0);
    docker(&["exec", &stack.app, "rm", "/data/a"]);
    let before = stack.state();

    let refused = stack.run(&ws, "restore", &["--yes"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("allow_special_files=true")
            && refused.stderr.contains(&format!("volume {}", stack.data)),
        "one sentence names the volume and the parameter:\n{}",
        refused.stderr
    );
    assert_eq!(stack.state(), before, "nothing was removed");

    stack
        .run(&ws, "restore", &["--yes", "-p", "allow_special_files=true"])
        .expect_code(0);
    let kinds = docker(&[
        "exec",
        &stack.app,
        "stat",
        "-c",
        "%n %F %a",
        "/data/pipe",
        "/data/a",
    ]);
    assert!(kinds.contains("/data/pipe fifo 640"), "{kinds}");
    assert!(kinds.contains("/data/a regular file"), "{kinds}");
}

/// Helper containers on a volume, by name.
fn helpers_of_volume(volume: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        "label=runbook.helper",
        "--filter",
        &format!("label=runbook.volume={volume}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn helpers_labelled(label: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        "label=runbook.helper",
        "--filter",
        &format!("label={label}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Fills the stack's volume with enough incompressible data that copying it through a slowed
/// engine takes seconds.
fn fill(stack: &Small) {
    docker(&[
        "exec",
        &stack.app,
        "sh",
        "-c",
        "dd if=/dev/urandom of=/data/blob bs=1M count=24 2>/dev/null",
    ]);
}

/// A stand-in for the engine's socket that forwards to the real one, slowly, and can drop
/// every connection and stop answering (the engine gone) and answer again (it came back).
struct EngineProxy {
    path: PathBuf,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<UnixStream>>>,
}

impl EngineProxy {
    fn start(ws: &Workspace) -> EngineProxy {
        let proxy = EngineProxy {
            path: ws.join("engine.sock"),
            up: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
        };
        proxy.come_back();
        proxy
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn come_back(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, connections) = (self.up.clone(), self.connections.clone());
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    continue;
                };
                {
                    let mut all = connections.lock().unwrap();
                    all.push(client.try_clone().unwrap());
                    all.push(engine.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    engine.try_clone().unwrap(),
                    false,
                );
                pipe(engine, client, true);
            }
        });
    }

    /// Every connection dropped and nothing listening: the engine went away.
    fn go_away(&self) {
        self.up.store(false, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies one direction of a connection; answers from the engine are slowed down.
fn pipe(mut from: UnixStream, mut to: UnixStream, slow: bool) {
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if slow {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Either side gone closes the connection both ways, as a dead process's socket does:
        // the engine stops what it was sending.
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

fn outcome(output: std::process::Output) -> Outcome {
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < until,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_helper_outlives_a_killed_backup_and_restore_goes_right_after() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    stack.run(&ws, "backup", &[]).expect_code(0);
    fill(&stack);
    let proxy = EngineProxy::start(&ws);
    let mut child = ws
        .command(&[
            "run",
            "backup",
            "-p",
            &format!("stack={}", stack.name),
            "-p",
            &stack.recipients,
        ])
        .env("DOCKER_HOST", proxy.host())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = format!("runbook.pid={}", child.id());
    wait_for("a helper of the backup", Duration::from_secs(60), || {
        !helpers_labelled(&pid).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let left = helpers_labelled(&pid);
    assert_eq!(left.len(), 1, "the kill leaves its helper: {left:?}");

    let doctor = ws.run(&[
        "run",
        "doctor",
        "-p",
        &format!("stack={}", stack.name),
        "--json",
    ]);
    assert!(
        doctor.stdout.contains(&left[0]) && doctor.stdout.contains("leftover-helper"),
        "doctor reports the leftover helper:\n{}{}",
        doctor.stdout,
        doctor.stderr
    );

    docker(&["exec", &stack.app, "rm", "/data/a"]);
    stack.run(&ws, "restore", &["--yes"]).expect_code(0);
    assert!(
        helpers_labelled(&pid).is_empty(),
        "the next run that touched the volume removed the dead run's helper"
    );
    assert_eq!(docker(&["exec", &stack.app, "cat", "/data/a"]), "hello");
}

/// A second backup of `stack` (after a first one and more data) reaching the engine through
/// a proxy the test controls, caught once its helper exists: (proxy, child, `runbook.pid=..`).
fn backup_through_proxy(
    ws: &Workspace,
    stack: &Small,
) -> (EngineProxy, std::process::Child, String) {
    stack.run(ws, "backup", &[]).expect_code(0);
    fill(stack);
    let proxy = EngineProxy::start(ws);
    let child = ws
        .command(&[
            "run",
            "backup",
            "-p",
            &format!("stack={}", stack.name),
            "-p",
            &stack.recipients,
            "--json",
        ])
        .env("DOCKER_HOST", proxy.host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = format!("runbook.pid={}", child.id());
    wait_for("a helper of the backup", Duration::from_secs(60), || {
        !helpers_labelled(&pid).is_empty()
    });
    (proxy, child, pid)
}

#[test]
fn no_helper_outlives_a_run_whose_engine_went_away_mid_copy() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    let (proxy, child, pid) = backup_through_proxy(&ws, &stack);
    proxy.go_away();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !helpers_labelled(&pid).is_empty(),
        "with the engine away, the helper could not be removed yet"
    );
    proxy.come_back();
    let out = outcome(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "the backup fails:\n{}", out.stderr);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    assert!(
        helpers_labelled(&format!("runbook.run={run_id}")).is_empty(),
        "the run removed its helper once the engine was back, before it ended:\n{}",
        out.stderr
    );
    docker(&["exec", &stack.app, "rm", "/data/a"]);
    stack.run(&ws, "restore", &["--yes"]).expect_code(0);
    assert_eq!(docker(&["exec", &stack.app, "cat", "/data/a"]), "hello");
}

/// The labels of a helper owned by `pid` started at `started` on this host.
fn owner_labels(pid: u32, started: &str) -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    vec![
        "runbook.helper=volume-data".into(),
        format!("runbook.pid={pid}"),
        format!("runbook.pid-started={started}"),
        format!("runbook.host={}", host.trim()),
        "runbook.run=planted".into(),
    ]
}

fn plant_helper(objects: &Objects, volume: &str, labels: &[String]) -> String {
    let mut args = vec![
        "--label".to_string(),
        format!("runbook.volume={volume}"),
        "-v".to_string(),
        format!("{volume}:/runbook-volume"),
    ];
    for l in labels {
        args.extend(["--label".to_string(), l.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    objects.create("helper", &args, BUSYBOX, &["true"])
}

#[test]
fn restore_refuses_while_a_live_run_holds_a_volume_and_doctor_clears_a_dead_ones() {
    let _engine = engine_lock(false);
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    stack.run(&ws, "backup", &[]).expect_code(0);
    let before = stack.state();

    // This test process stands in for a live run.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let started = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let live = plant_helper(
        &stack.objects,
        &stack.data,
        &owner_labels(std::process::id(), &started),
    );
    let refused = stack.run(&ws, "restore", &["--yes"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("in use by helper container {live}"))
            && refused.stderr.contains("nothing was removed"),
        "{}",
        refused.stderr
    );
    assert_eq!(stack.state(), before, "the stack is untouched");
    assert!(
        docker_ok(&["inspect", &live]),
        "a live run's helper is left alone"
    );
    docker(&["rm", "-f", &live]);

    // A helper whose process is gone (a pid start time that never was).
    let dead = plant_helper(
        &stack.objects,
        &stack.data,
        &owner_labels(std::process::id(), "1"),
    );
    let stack_param = format!("stack={}", stack.name);
    let report = ws.run(&["run", "doctor", "-p", &stack_param, "--json"]);
    assert!(
        report.stdout.contains(&format!("helper container {dead}"))
            && report.stdout.contains("docker rm -f"),
        "doctor names the leftover and the fix:\n{}{}",
        report.stdout,
        report.stderr
    );
    ws.run(&["run", "doctor", "-p", &stack_param, "-p", "fix=true"]);
    assert!(!docker_ok(&["inspect", &dead]), "fix=true removed it");
}

/// Serialises the tests that restart the engine itself (every test of every process on the
/// machine sees it go).
/// The engine restart test takes this exclusively and every other test of this file shared,
/// so the restart never hits another test's run (cargo runs test files one after another).
fn engine_lock(exclusive: bool) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/runbook-test-dockerd-restart.lock")
        .unwrap();
    let mode = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), mode) }, 0);
    file
}

/// Kills the engine (dockerd, started without systemd here) and starts it again, waiting until
/// its socket answers.
fn restart_dockerd() {
    let pid = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd writes its pid file")
        .trim()
        .to_string();
    docker_ok(&["version"]);
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("dockerd to stop", Duration::from_secs(30), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    std::process::Command::new("sh")
        .args(["-c", "nohup dockerd >/var/log/dockerd.log 2>&1 &"])
        .status()
        .unwrap();
    wait_for("dockerd to answer again", Duration::from_secs(60), || {
        docker_ok(&["version"])
    });
}

/// The real engine restarted mid-backup. It stops every container on the machine, and here a
/// killed dockerd does not always get its containerd back within a minute (which would fail
/// every later test), so it runs only when asked: RUNBOOK_TEST_RESTART_DOCKERD=1. The other
/// tests of this file wait for it (shared engine lock); CI covers the client side through the
/// proxy test above.
#[test]
fn no_helper_outlives_a_run_whose_engine_restarted_mid_backup() {
    if !available() || std::env::var("RUNBOOK_TEST_RESTART_DOCKERD").as_deref() != Ok("1") {
        return;
    }
    let _engine = engine_lock(true);
    let ws = Workspace::new();
    let stack = Small::new(&ws);
    let (_proxy, child, _) = backup_through_proxy(&ws, &stack);
    restart_dockerd();
    let out = outcome(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "the backup fails:\n{}", out.stderr);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    assert!(
        helpers_labelled(&format!("runbook.run={run_id}")).is_empty(),
        "the run removed its helper once the engine was back:\n{}",
        out.stderr
    );
    docker(&["start", &stack.app]);
    docker(&["exec", &stack.app, "rm", "/data/a"]);
    stack.run(&ws, "restore", &["--yes"]).expect_code(0);
    assert_eq!(docker(&["exec", &stack.app, "cat", "/data/a"]), "hello");
}
