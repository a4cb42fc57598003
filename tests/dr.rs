//! dr, tag and rollback on real stacks against the real Docker engine: a drill ends with
//! identical data, a recovery rebuilds a stack of which nothing is left, a recovery killed
//! with SIGKILL finishes with --resume, a rollback returns every container to its old image
//! with its volumes, and a rollback to an image that fails its healthcheck is undone.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{available, docker, inspect, playbook, Objects, BUSYBOX};
use common::stack::{age_identity, Stack};
use common::{header, Outcome, Workspace};

/// The fixture stack in a workspace with age keys, and what its data looked like at the start.
struct Drill {
    ws: Workspace,
    stack: Stack,
    keys: Vec<String>,
    files: String,
    counts: String,
}

impl Drill {
    /// None (skip; in CI, fail) without the engine and the test images.
    fn new() -> Option<Drill> {
        if !available() {
            return None;
        }
        let ws = Workspace::new();
        let stack = Stack::new(&ws);
        let (identity, recipients) = age_identity(&ws);
        let keys = vec![
            format!("stack={}", stack.name),
            format!("identity={identity}"),
            format!("recipients={recipients}"),
        ];
        let (files, counts) = (stack.files(), stack.counts());
        Some(Drill {
            ws,
            stack,
            keys,
            files,
            counts,
        })
    }

    /// `run PLAYBOOK -p stack=.. -p identity=.. -p recipients=.. EXTRA...` (backup writes to
    /// the recipients and needs no identity).
    fn argv<'a>(&'a self, playbook: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec!["run", playbook];
        for k in &self.keys {
            if playbook != "backup" || !k.starts_with("identity=") {
                argv.extend(["-p", k.as_str()]);
            }
        }
        argv.extend_from_slice(extra);
        argv
    }

    fn run(&self, playbook: &str, extra: &[&str]) -> Outcome {
        self.ws.run(&self.argv(playbook, extra))
    }

    /// Every row and every volume file is as it was at the start.
    fn assert_data_came_back(&self) {
        assert_eq!(self.stack.counts(), self.counts, "every row came back");
        assert_eq!(
            self.stack.files(),
            self.files,
            "volumes came back with the same content, owners, modes and mtimes"
        );
    }
}

/// The ids of a stack's containers, sorted by name.
fn container_ids(stack: &str) -> String {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=runbook.stack={stack}"),
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ])
    .lines()
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect::<Vec<_>>()
    .join("\n")
}

/// Removes every container, volume and network of the fixture stack, as a disaster would.
fn wipe(stack: &Stack) {
    for c in [&stack.db, &stack.web, &stack.worker] {
        docker(&["rm", "-f", c]);
    }
    for kind in ["volume", "network"] {
        let names = docker(&[
            kind,
            "ls",
            "-q",
            "--filter",
            &format!("label=runbook.stack={}", stack.name),
        ]);
        for name in names.lines() {
            docker(&[kind, "rm", name]);
        }
    }
    assert!(container_ids(&stack.name).is_empty());
}

/// The journal of the only run in the workspace.
fn only_run(ws: &Workspace) -> (String, PathBuf) {
    let runs: Vec<_> = std::fs::read_dir(ws.join("state/runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let id = runs[0].file_name().unwrap().to_string_lossy().into_owned();
    (id, runs[0].join("journal.jsonl"))
}

fn step_outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_drill_destroys_the_stack_and_brings_back_identical_data_with_its_timings() {
    let Some(drill) = Drill::new() else { return };
    let (ws, stack) = (&drill.ws, &drill.stack);
    let ids_before = container_ids(&stack.name);

    let dry = drill.run("dr", &["--dry-run", "--json"]);
    dry.expect_code(0);
    let planned: Vec<String> = dry.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    for action in [
        "docker::volume_backup",
        "docker::remove",
        "docker::volume_remove",
    ] {
        assert!(planned.iter().any(|a| a == action), "{planned:?}");
    }
    assert_eq!(
        container_ids(&stack.name),
        ids_before,
        "a dry run destroys nothing"
    );
    assert!(!ws.join("backups").exists(), "a dry run writes no set");

    let out = drill.run(
        "dr",
        &["-p", "metrics_file=metrics/dr.prom", "--yes", "--json"],
    );
    out.expect_code(0);
    let report = out.json();
    let result = &report["result"];

    let ids_after = container_ids(&stack.name);
    assert_ne!(
        ids_after, ids_before,
        "the containers were really destroyed"
    );
    assert_eq!(ids_after.lines().count(), 3, "{ids_after}");
    assert!(
        ids_after.lines().all(|l| l.ends_with("running")),
        "{ids_after}"
    );
    drill.assert_data_came_back();

    // Every step is reported with its phase and time; the RTO adds up the recovery's.
    let steps = result["steps"].as_array().unwrap();
    let phases: Vec<&str> = steps.iter().map(|s| s["phase"].as_str().unwrap()).collect();
    for phase in ["prepare", "backup", "destroy", "recovery", "check"] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    let recovery: f64 = steps
        .iter()
        .filter(|s| s["phase"] == "recovery")
        .map(|s| s["seconds"].as_f64().unwrap())
        .sum();
    let rto = result["rto_seconds"].as_f64().unwrap();
    assert!(
        rto > 0.5 && (rto - recovery).abs() < 0.01,
        "{rto} vs {recovery}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["phase"] == "recovery" && s["step"] == "load databases"),
        "{steps:?}"
    );
    assert!(out.stderr.contains("recovery time (RTO)"), "{}", out.stderr);

    let metrics = ws.read("metrics/dr.prom");
    let labels = format!("mode=\"drill\",stack=\"{}\"", stack.name);
    assert!(
        metrics.contains(&format!("runbook_dr_rto_seconds{{{labels}}} ")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "runbook_dr_step_seconds{{mode=\"drill\",phase=\"recovery\",stack=\"{}\",step=\"load volumes\"}} ",
            stack.name
        )),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE runbook_dr_last_success_timestamp_seconds gauge"));
    let stamp: f64 = metrics
        .lines()
        .find(|l| l.starts_with("runbook_dr_last_success_timestamp_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("a last-success sample");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - stamp).abs() < 120.0, "{stamp} vs {now}");
    let leftovers: Vec<_> = std::fs::read_dir(ws.join("metrics"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the metrics file: {leftovers:?}");

    let everything = format!("{}{}{metrics}", out.all_output(), ws.journals());
    assert!(
        !everything.contains(&stack.password),
        "the database password appears nowhere"
    );
}

#[test]
fn recover_rebuilds_a_stack_of_which_nothing_is_left_and_refuses_a_live_one() {
    let Some(drill) = Drill::new() else { return };
    let stack = &drill.stack;
    drill.run("backup", &[]).expect_code(0);

    let live = drill.run("dr", &["-p", "mode=recover"]);
    assert_eq!(live.code, 1, "{}", live.stderr);
    assert!(
        live.stderr.contains("still exists") && live.stderr.contains("restore"),
        "{}",
        live.stderr
    );
    assert_eq!(
        stack.counts(),
        drill.counts,
        "a refused recovery touches nothing"
    );

    wipe(stack);
    let out = drill.run("dr", &["-p", "mode=recover", "--json"]);
    out.expect_code(0);
    let result = &out.json()["result"];
    assert_eq!(result["mode"], "recover");
    assert!(result["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["phase"] == "prepare" || s["phase"] == "recovery"),
        "{result}"
    );
    drill.assert_data_came_back();
    let network = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=runbook.stack={}", stack.name),
    ]);
    assert_eq!(network.lines().count(), 1, "the network is back");
}

#[test]
fn a_drill_killed_during_recovery_finishes_with_resume() {
    let Some(drill) = Drill::new() else { return };
    let (ws, stack) = (&drill.ws, &drill.stack);
    let mut child = drill
        .ws
        .command(&drill.argv("dr", &["--yes"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // SIGKILL while the volumes are being loaded back: the stack destroyed, its volumes
    // half-filled, a helper container reaching one of them.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let journal = std::fs::read_dir(ws.join("state/runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("journal.jsonl")).ok())
            .unwrap_or_default();
        let started = journal.lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|e| e["event"] == "step_start" && e["key"] == "load volumes")
        });
        if started {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the drill ended ({status}) before recovery started:\n{journal}");
        }
        assert!(Instant::now() < deadline, "recovery never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    let (run_id, journal) = only_run(ws);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(!text.contains("run_end"), "the run was killed, not ended");
    assert!(
        !text.contains(r#""step":"load databases""#),
        "killed before the databases were loaded"
    );

    let out = ws.run(&["run", "--resume", &run_id, "--json"]);
    out.expect_code(0);
    let report = out.json();
    let outcomes = step_outcomes(&report);
    for done in [
        "record the state",
        "copy volumes",
        "destroy the stack",
        "recreate volumes",
    ] {
        assert!(
            outcomes.contains(&(done.to_string(), "resumed".to_string())),
            "{done} was done by the first attempt: {outcomes:?}"
        );
    }
    for redone in ["start the stack", "load databases"] {
        assert!(
            outcomes.contains(&(redone.to_string(), "ok".to_string())),
            "{outcomes:?}"
        );
    }
    assert!(outcomes.contains(&("compare with the recorded state".into(), "ok".into())));
    // The resumed steps keep the time they took: the backup phase is not zero.
    let backup: f64 = report["result"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "backup")
        .map(|s| s["seconds"].as_f64().unwrap())
        .sum();
    assert!(backup > 0.0, "{}", report["result"]);

    drill.assert_data_came_back();
    // The kill usually leaves the helper container of the volume being loaded; the resumed
    // load removes it.
    let helpers = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=runbook.helper",
        "--format",
        "{{.Names}} {{.Label \"runbook.volume\"}}",
    ]);
    let prefix = stack.objects.name("");
    assert!(
        !helpers.lines().any(|l| l.contains(&prefix)),
        "no helper container of the stack's volumes is left: {helpers}"
    );
}

/// Builds a one-layer image on top of `base` with the test label, removed with `objects`.
fn build_image(objects: &Objects, tag: &str, base: &str, extra: &str) -> String {
    let dockerfile = format!(
        "FROM {base}\nLABEL {} runbook.test.image={tag}\n{extra}\n",
        Objects::label()
    );
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    objects.track_image(tag);
    docker(&["image", "inspect", "-f", "{{.Id}}", tag])
}

/// Recreates containers from their specs on another image, as a release would.
fn release(ws: &Workspace, images: &[(&str, &str)]) {
    let list = images
        .iter()
        .map(|(c, i)| format!("[\"{c}\", \"{i}\"]"))
        .collect::<Vec<_>>()
        .join(", ");
    let out = playbook(
        ws,
        &format!(
            "for pair in [{list}] {{
                let spec = docker::spec(pair[0]);
                docker::remove(pair[0], #{{ force: true }});
                docker::create(spec, #{{ image: pair[1] }});
                docker::start(pair[0]);
            }}"
        ),
    );
    out.expect_code(0);
}

/// What a rollback must keep or change about a container, read with the docker CLI.
#[derive(Debug, PartialEq)]
struct Container {
    image: String,
    id: String,
    running: bool,
    volumes: Vec<String>,
    networks: Vec<String>,
}

fn container(name: &str) -> Container {
    let c = inspect("container", name);
    let mut volumes: Vec<String> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect();
    volumes.sort();
    Container {
        image: c["Image"].as_str().unwrap().to_string(),
        id: c["Id"].as_str().unwrap().to_string(),
        running: c["State"]["Running"].as_bool().unwrap(),
        volumes,
        networks: c["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect(),
    }
}

fn tag_point(ws: &Workspace, objects: &Objects, stack: &str) -> serde_json::Value {
    let out = ws.run(&["run", "tag", "-p", &format!("stack={stack}"), "--json"]);
    out.expect_code(0);
    let path = out.json()["result"]["manifest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in manifest["containers"].as_array().unwrap() {
        objects.track_image(c["tag"].as_str().unwrap());
        let name = c["name"].as_str().unwrap();
        objects.track_container(&format!("{name}-rollback"));
        objects.track_container(&format!("{name}-before-rollback"));
    }
    manifest
}

#[test]
fn rollback_returns_every_container_to_its_tagged_image_with_its_volumes() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let stack = Stack::new(&ws);
    let names = [&stack.db, &stack.web, &stack.worker];
    let before: Vec<_> = names.iter().map(|n| container(n)).collect();

    let manifest = tag_point(&ws, &stack.objects, &stack.name);
    assert_eq!(manifest["containers"].as_array().unwrap().len(), 3);
    for c in manifest["containers"].as_array().unwrap() {
        let tag = c["tag"].as_str().unwrap();
        assert!(tag.contains(":rollback-"), "{tag}");
        assert_eq!(
            docker(&["image", "inspect", "-f", "{{.Id}}", tag]),
            c["image_id"].as_str().unwrap()
        );
    }

    // A release: every container on a new image, then new data written.
    let v2_busybox = stack.objects.name("busybox-v2").to_lowercase() + ":2";
    let v2_postgres = stack.objects.name("postgres-v2").to_lowercase() + ":2";
    build_image(&stack.objects, &v2_busybox, BUSYBOX, "");
    build_image(&stack.objects, &v2_postgres, common::docker::POSTGRES, "");
    release(
        &ws,
        &[
            (&stack.db, &v2_postgres),
            (&stack.web, &v2_busybox),
            (&stack.worker, &v2_busybox),
        ],
    );
    let mut healthy = false;
    for _ in 0..300 {
        if docker(&["inspect", "-f", "{{.State.Health.Status}}", &stack.db]) == "healthy" {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(healthy, "the released database became healthy");
    stack.sql("shop", "INSERT INTO customers VALUES (4, 'after release');");
    docker(&["exec", &stack.web, "sh", "-c", "echo v2 > /data/release"]);
    for (name, old) in names.iter().zip(&before) {
        assert_ne!(container(name).image, old.image, "{name} was released");
    }
    let files = stack.files();
    let counts = stack.counts();

    let stack_param = format!("stack={}", stack.name);
    let dry = ws.run(&["run", "rollback", "-p", &stack_param, "--dry-run", "--json"]);
    dry.expect_code(0);
    for (name, old) in names.iter().zip(&before) {
        assert_ne!(
            container(name).image,
            old.image,
            "a dry run changes nothing"
        );
    }
    let out = ws.run(&["run", "rollback", "-p", &stack_param, "--yes", "--json"]);
    out.expect_code(0);
    let plan = |report: serde_json::Value| -> Vec<(String, String)> {
        report["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["action"].to_string(), a["detail"].to_string()))
            .collect()
    };
    assert_eq!(
        plan(dry.json()),
        plan(out.json()),
        "the dry run plans exactly what the rollback does"
    );
    assert_eq!(
        out.json()["result"]["rolled_back"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for (name, old) in names.iter().zip(&before) {
        let now = container(name);
        assert_eq!(now.image, old.image, "{name} runs its old image again");
        assert_ne!(now.id, old.id, "{name} was recreated");
        assert!(now.running, "{name} runs");
        assert_eq!(now.volumes, old.volumes, "{name} keeps its volumes");
        assert_eq!(now.networks, old.networks, "{name} keeps its networks");
    }
    assert_eq!(stack.files(), files, "the volumes are intact");
    assert_eq!(stack.counts(), counts, "the database is intact");
    assert_eq!(
        container_ids(&stack.name).lines().count(),
        3,
        "the replaced containers are gone"
    );
}

#[test]
fn a_rollback_to_an_image_failing_its_healthcheck_leaves_the_stack_as_it_was() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    let objects = Objects::new();
    let stack = objects.name("rel");
    let member = format!("runbook.stack={stack}");
    let broken_tag = format!("{}:1", objects.name("broken").to_lowercase());
    let broken = build_image(
        &objects,
        &broken_tag,
        BUSYBOX,
        "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false",
    );
    let good = format!("{}:2", objects.name("good").to_lowercase());
    build_image(&objects, &good, BUSYBOX, "");
    let side_v1 = format!("{}:1", objects.name("side").to_lowercase());
    let side_v2 = format!("{}:2", objects.name("side").to_lowercase());
    build_image(&objects, &side_v1, BUSYBOX, "");
    build_image(&objects, &side_v2, BUSYBOX, "ENV RELEASE=2");
    let data = objects.volume("data", &[&member]);
    let sleeper = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];
    let app = objects.run(
        "app",
        &["--label", &member, "-v", &format!("{data}:/data")],
        &broken_tag,
        &sleeper,
    );
    let side = objects.run("side", &["--label", &member], &side_v1, &sleeper);
    docker(&["exec", &app, "sh", "-c", "echo precious > /data/file"]);
    tag_point(&ws, &objects, &stack);
    release(&ws, &[(&app, &good), (&side, &side_v2)]);
    let before = [container(&app), container(&side)];
    assert_ne!(before[0].image, broken);

    let out = ws.run(&["run", "rollback", "-p", &format!("stack={stack}"), "--yes"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&app) && out.stderr.contains("undone"),
        "the error names the container and says the rollback was undone:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let after = [container(&app), container(&side)];
    assert_eq!(
        after, before,
        "the same containers, on the same images, running, with the same volumes"
    );
    assert_eq!(docker(&["exec", &app, "cat", "/data/file"]), "precious");
    let names = container_ids(&stack);
    assert_eq!(names.lines().count(), 2, "nothing left over:\n{names}");
}

#[test]
fn step_times_keep_the_time_a_step_took_in_an_earlier_attempt() {
    let ws = Workspace::new();
    let body = r#"
step("slow", || { time::sleep(0.3); 1 });
step("flaky", || { if fs::exists("fail.flag") { throw "flaky"; } 2 });
step_times()
"#;
    ws.write("t.rhai", &(header("t", &[]) + body));
    ws.write("fail.flag", "");
    let out = ws.run(&["run", "t.rhai", "--json"]);
    out.expect_code(1);
    let id = out.json()["run_id"].as_str().unwrap().to_string();
    std::fs::remove_file(ws.join("fail.flag")).unwrap();
    let out = ws.run(&["run", "--resume", &id, "--json"]);
    out.expect_code(0);
    let report = out.json();
    let times = report["result"].as_array().unwrap();
    assert_eq!(times[0]["step"], "slow");
    assert_eq!(times[0]["outcome"], "resumed");
    assert!(times[0]["ms"].as_i64().unwrap() >= 300, "{times:?}");
    assert_eq!(report["steps"][0]["duration_ms"], 0);
    assert!(report["steps"][0]["earlier_ms"].as_u64().unwrap() >= 300);
    assert_eq!(times[1]["outcome"], "ok");
}
