//! doctor, audit and clean against the real Docker engine: a stack with planted faults (each
//! must be found, with its severity), a clean stack (nothing may be flagged), the safe fixes,
//! and the two clean levels, checked through the docker CLI as an independent witness.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::docker::{available, docker, inspect, setup, Objects, BUSYBOX};
use common::openbao::free_port;
use common::stack::Stack;
use common::{Outcome, Workspace};

/// A literal credential planted in a container's environment: it must never be printed.
const LITERAL: &str = "literal-Hunter2-in-env";

/// One finding as `format=json` prints it.
#[derive(Debug)]
struct Finding {
    id: String,
    severity: String,
    object: String,
    message: String,
}

/// The findings printed on stdout by `format=json`.
fn findings(out: &Outcome) -> Vec<Finding> {
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the findings array ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| Finding {
            id: f["id"].as_str().unwrap().into(),
            severity: f["severity"].as_str().unwrap().into(),
            object: f["object"].as_str().unwrap().into(),
            message: f["message"].as_str().unwrap().into(),
        })
        .collect()
}

/// The severity of the one finding with this id about `object` (a substring of its object).
fn severity(found: &[Finding], id: &str, object: &str) -> String {
    let matching: Vec<&Finding> = found
        .iter()
        .filter(|f| f.id == id && f.object.contains(object))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one `{id}` finding about {object}, got: {found:#?}"
    );
    matching[0].severity.clone()
}

fn run(ws: &Workspace, playbook: &str, stack: &str, extra: &[&str]) -> Outcome {
    let stack = format!("stack={stack}");
    let mut args = vec!["run", playbook, "-p", &stack];
    args.extend_from_slice(extra);
    ws.run(&args)
}

/// Polls `docker inspect -f FORMAT` until it prints `want`.
fn wait_for(container: &str, format: &str, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = docker(&["inspect", "-f", format, container]);
        if want(&seen) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{container}: {format} is still {seen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A file written with `mode` (the umask would narrow a plain write).
fn file_with_mode(ws: &Workspace, rel: &str, text: &str, mode: u32) -> String {
    let path = ws.write(rel, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

/// A stack with one of each fault doctor and audit look for.
struct Faulty {
    objects: Objects,
    name: String,
    app: String,
    privileged: String,
    clash: String,
    sick: String,
    looping: String,
    lost: String,
    orphan: String,
    dangling: String,
    gone_network: String,
    port: u16,
    secret_dir: String,
    leaky_secret: String,
    shared_secret: String,
}

impl Faulty {
    fn new(ws: &Workspace) -> Faulty {
        let objects = Objects::new();
        let name = objects.name("faulty");
        let member = format!("runbook.stack={name}");
        let stack = ["--label", member.as_str()];
        let network = objects.network("net", &[&member]);
        let port = free_port();
        // The secret file was never written: Docker makes a directory in its place.
        let secret_dir = ws.join("secrets/db_password").display().to_string();
        let leaky_secret = file_with_mode(ws, "secrets/api_token", "tok-123", 0o644);
        let app = objects.run(
            "app",
            &[
                &stack[..],
                &[
                    "--network",
                    &network,
                    "--cap-add",
                    "SYS_ADMIN",
                    "-p",
                    &format!("0.0.0.0:{port}:80"),
                    "-e",
                    &format!("DB_PASSWORD={LITERAL}"),
                    "-e",
                    "DB_PASSWORD_FILE=/run/secrets/db_password",
                    "-e",
                    "API_TOKEN_FILE=/run/secrets/api_token",
                    "-v",
                    &format!("{secret_dir}:/run/secrets/db_password"),
                    "-v",
                    &format!("{leaky_secret}:/run/secrets/api_token:ro"),
                ],
            ]
            .concat(),
            BUSYBOX,
            &["sleep", "100000"],
        );
        // This engine runs inside a container that cannot grant every capability, so a
        // privileged container cannot start here: audit reads its configuration (all=true).
        let privileged = objects.create(
            "privileged",
            &[&stack[..], &["--privileged"]].concat(),
            BUSYBOX,
            &["sleep", "100000"],
        );
        // The same host port on loopback: it cannot start while `app` holds the port.
        let clash = objects.create(
            "clash",
            &[&stack[..], &["-p", &format!("127.0.0.1:{port}:80")]].concat(),
            BUSYBOX,
            &["sleep", "100000"],
        );
        let refused = std::process::Command::new("docker")
            .args(["start", &clash])
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{clash} started on a taken port");
        // Readable by others, but read by uid 1000: narrowing it to root's 0600 would lock
        // the service out, so it is not a safe fix.
        let shared_secret = file_with_mode(ws, "secrets/report_key", "rk-456", 0o644);
        let sick = objects.run(
            "sick",
            &[
                &stack[..],
                &[
                    "--user",
                    "1000",
                    "-v",
                    &format!("{shared_secret}:/run/secrets/report_key:ro"),
                    "--health-cmd",
                    "echo db unreachable; exit 1",
                    "--health-interval",
                    "1s",
                    "--health-retries",
                    "1",
                ],
            ]
            .concat(),
            BUSYBOX,
            &["sleep", "100000"],
        );
        let looping = objects.run(
            "looping",
            &[&stack[..], &["--restart", "always"]].concat(),
            BUSYBOX,
            &["sh", "-c", "exit 3"],
        );
        // Attached to a network that is removed while it is stopped.
        let gone_network = objects.network("gone", &[&member]);
        let lost = objects.create(
            "lost",
            &[
                &stack[..],
                &["--network", &gone_network, "--network-alias", "cache"],
            ]
            .concat(),
            BUSYBOX,
            &["sleep", "100000"],
        );
        docker(&["network", "rm", &gone_network]);
        let orphan = objects.create("orphan", &stack, BUSYBOX, &["true"]);
        let dangling = objects.volume("dangling", &[&member]);
        wait_for(&sick, "{{.State.Health.Status}}", |s| s == "unhealthy");
        wait_for(&looping, "{{.RestartCount}}", |n| {
            n.parse::<u32>().unwrap_or(0) >= 5
        });
        Faulty {
            objects,
            name,
            app,
            privileged,
            clash,
            sick,
            looping,
            lost,
            orphan,
            dangling,
            gone_network,
            port,
            secret_dir,
            leaky_secret,
            shared_secret,
        }
    }

    /// The services the stack should have: everything but the orphan.
    fn services(&self) -> String {
        let names = [
            &self.app,
            &self.privileged,
            &self.clash,
            &self.sick,
            &self.looping,
            &self.lost,
        ];
        format!("services={}", names.map(|n| n.as_str()).join(","))
    }
}

#[test]
fn every_planted_fault_is_found_with_its_severity_and_fix_repairs_only_the_safe_ones() {
    let Some((ws, _guard)) = setup() else { return };
    let f = Faulty::new(&ws);
    let services = f.services();

    let out = run(
        &ws,
        "doctor",
        &f.name,
        &["-p", &services, "-p", "format=json"],
    );
    out.expect_code(2); // the report, then the exit status of the worst finding: critical
    let found = findings(&out);
    let port = format!("host port {}/tcp", f.port);
    for (id, object, want) in [
        ("orphan", f.orphan.as_str(), "warn"),
        ("dangling-volume", f.dangling.as_str(), "warn"),
        ("port-conflict", port.as_str(), "critical"),
        ("secret-is-directory", f.secret_dir.as_str(), "critical"),
        ("secret-mode", f.leaky_secret.as_str(), "warn"),
        ("secret-mode", f.shared_secret.as_str(), "warn"),
        ("password-and-file", f.app.as_str(), "critical"),
        ("missing-network", f.gone_network.as_str(), "critical"),
        ("unhealthy", f.sick.as_str(), "critical"),
        ("restart-loop", f.looping.as_str(), "critical"),
    ] {
        assert_eq!(severity(&found, id, object), want, "{id} {object}");
    }
    let conflict = found.iter().find(|f| f.id == "port-conflict").unwrap();
    assert!(
        conflict.message.contains(&f.app) && conflict.message.contains(&f.clash),
        "{conflict:?}"
    );
    let unhealthy = found.iter().find(|f| f.id == "unhealthy").unwrap();
    assert!(
        unhealthy.message.contains("db unreachable"),
        "{unhealthy:?}"
    );
    assert_eq!(
        found.iter().filter(|f| f.severity != "ok").count(),
        10,
        "nothing but the planted faults: {found:#?}"
    );
    let shared = found.iter().find(|x| x.object == f.shared_secret).unwrap();
    assert!(shared.message.contains("mode 0644"), "{shared:?}");

    let out = run(
        &ws,
        "audit",
        &f.name,
        &["-p", "all=true", "-p", "format=json"],
    );
    out.expect_code(2);
    let found = findings(&out);
    assert_eq!(severity(&found, "privileged", &f.privileged), "critical");
    assert_eq!(severity(&found, "cap-add", &f.app), "critical");
    assert_eq!(severity(&found, "env-credential", &f.app), "critical");
    assert_eq!(severity(&found, "port-all-interfaces", &f.app), "warn");
    let flagged: Vec<&Finding> = found.iter().filter(|f| f.severity != "ok").collect();
    assert_eq!(
        flagged.len(),
        4,
        "nothing but the planted faults: {flagged:#?}"
    );
    let credential = found
        .iter()
        .find(|x| x.id == "env-credential" && x.severity == "critical")
        .unwrap();
    assert!(
        credential.message.contains("DB_PASSWORD "),
        "{credential:?}"
    );
    assert!(
        !out.all_output().contains(LITERAL),
        "the credential itself was printed"
    );

    // The Nagios plugin contract: status line first, exit code of the worst finding.
    let out = run(
        &ws,
        "audit",
        &f.name,
        &["-p", "all=true", "-p", "format=nagios"],
    );
    out.expect_code(2);
    assert!(
        out.stdout.starts_with("AUDIT CRITICAL - "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("| ok=") && out.stdout.contains(" warning=1 critical=3"),
        "{}",
        out.stdout
    );
    let allowed = format!("allow_caps={}:SYS_ADMIN", f.app);
    let privileged = format!("allow_privileged={}", f.privileged);
    let out = run(
        &ws,
        "audit",
        &f.name,
        &[
            "-p",
            "all=true",
            "-p",
            &allowed,
            "-p",
            &privileged,
            "-p",
            "format=nagios",
        ],
    );
    out.expect_code(2); // the credential is still there
    assert!(
        !out.stdout.contains("SYS_ADMIN, which is not"),
        "{}",
        out.stdout
    );
    // The report and its summary line end the run, never a script error with its source.
    let out = run(&ws, "audit", &f.name, &["-p", "format=table"]);
    out.expect_code(2);
    assert!(out.stdout.contains("CRITICAL  cap-add"), "{}", out.stdout);
    let last = out.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" warning, 2 critical"),
        "the summary line ends the output: {}",
        out.stdout
    );
    assert!(
        !out.stderr.contains("error") && !out.stderr.contains("audit.rhai"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains(&f.privileged),
        "a stopped container is audited only with all=true"
    );

    // A dry run of the fixes plans them and changes nothing.
    let out = run(
        &ws,
        "doctor",
        &f.name,
        &["-p", &services, "-p", "fix=true", "--dry-run", "--json"],
    );
    out.expect_code(2);
    let planned: Vec<String> = out.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}: {}",
                a["action"].as_str().unwrap(),
                a["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(planned.len(), 4, "{planned:#?}");
    assert!(
        planned[0].starts_with("fs::chmod: set mode 0600"),
        "{planned:#?}"
    );
    assert!(
        planned[1].starts_with("docker::network_create"),
        "{planned:#?}"
    );
    assert!(
        planned[3].contains("as cache"),
        "the alias comes back: {planned:#?}"
    );
    assert_eq!(
        std::fs::metadata(&f.leaky_secret)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert!(!common::docker::docker_ok(&[
        "network",
        "inspect",
        &f.gone_network
    ]));

    // fix=true repairs the safe ones, says so, and leaves the rest to the operator.
    f.objects.track_network(&f.gone_network);
    let out = run(
        &ws,
        "doctor",
        &f.name,
        &["-p", &services, "-p", "fix=true", "-p", "format=json"],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("fixed: set mode 0600"),
        "{}",
        out.stderr
    );
    let found = findings(&out);
    assert_eq!(severity(&found, "secret-mode", &f.leaky_secret), "ok");
    assert_eq!(severity(&found, "missing-network", &f.gone_network), "ok");
    assert_eq!(
        severity(&found, "secret-is-directory", &f.secret_dir),
        "critical"
    );
    assert_eq!(severity(&found, "port-conflict", &port), "critical");
    assert_eq!(
        std::fs::metadata(&f.leaky_secret)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::path::Path::new(&f.secret_dir).is_dir(),
        "an unsafe fix was applied"
    );
    let network = inspect("network", &f.gone_network);
    assert_eq!(network["Labels"]["runbook.stack"], f.name.as_str());
    docker(&["start", &f.lost]);
    let aliases = inspect("container", &f.lost)["NetworkSettings"]["Networks"][&f.gone_network]
        ["Aliases"]
        .clone();
    assert!(
        aliases.as_array().unwrap().iter().any(|a| a == "cache"),
        "{aliases}"
    );

    let out = run(
        &ws,
        "doctor",
        &f.name,
        &["-p", &services, "-p", "format=json"],
    );
    let found = findings(&out);
    assert_eq!(severity(&found, "secret-file", &f.leaky_secret), "ok");
    assert_eq!(severity(&found, "missing-network", &f.name), "ok");
}

#[test]
fn nothing_is_flagged_on_a_clean_stack() {
    if !available() {
        return;
    }
    let ws = Workspace::new();
    // The backup tests' stack: Postgres with data, two services with volumes, one network;
    // its password file private to the postgres user (uid 999 in the test image), as an
    // operator keeps it.
    let tidy = Stack::new(&ws);
    let secret = ws.join("db-password");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&secret, Some(999), Some(999)).unwrap();
    let stack = tidy.name.as_str();

    let out = run(&ws, "doctor", stack, &["-p", "format=json"]);
    out.expect_code(0);
    let found = findings(&out);
    let flagged: Vec<&Finding> = found.iter().filter(|f| f.severity != "ok").collect();
    assert!(flagged.is_empty(), "{flagged:#?}");
    // Every check said something, and the secret file was looked at.
    for id in [
        "orphan",
        "dangling-volume",
        "port-conflict",
        "secret-file",
        "password-and-file",
        "missing-network",
        "container-health",
    ] {
        assert!(
            found.iter().any(|f| f.id == id),
            "no `{id}` finding: {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|f| f.id == "secret-file" && f.message.contains("mode 0600")),
        "{found:#?}"
    );

    let out = run(&ws, "doctor", stack, &["-p", "format=nagios"]);
    out.expect_code(0);
    assert!(out.stdout.starts_with("DOCTOR OK - "), "{}", out.stdout);

    let out = run(&ws, "audit", stack, &["-p", "format=json"]);
    out.expect_code(0);
    let found = findings(&out);
    assert!(found.iter().all(|f| f.severity == "ok"), "{found:#?}");
    assert_eq!(
        found.len(),
        9,
        "three checks for each of three containers: {found:#?}"
    );
    let out = run(&ws, "audit", stack, &["-p", "format=nagios"]);
    out.expect_code(0);
    assert!(
        out.stdout
            .starts_with("AUDIT OK - 9 checks passed | ok=9 warning=0 critical=0"),
        "{}",
        out.stdout
    );

    // A stack that is not there is UNKNOWN to monitoring, not OK.
    let out = run(&ws, "audit", "no-such-stack-here", &["-p", "format=nagios"]);
    out.expect_code(3);
    assert!(out.stdout.starts_with("AUDIT UNKNOWN - "), "{}", out.stdout);
    let out = run(
        &ws,
        "doctor",
        "no-such-stack-here",
        &["-p", "format=nagios"],
    );
    out.expect_code(3);
}

#[test]
fn clean_keeps_volumes_at_safe_level_and_a_deep_clean_needs_the_stack_name() {
    let Some((ws, objects)) = setup() else { return };
    let name = objects.name("litter");
    let member = format!("runbook.stack={name}");
    let data = objects.volume("data", &[&member]);
    let scratch = objects.volume("scratch", &[&member]);
    let spare = objects.volume("spare", &[&member]);
    let keep = objects.run(
        "keep",
        &["--label", &member, "-v", &format!("{data}:/data")],
        BUSYBOX,
        &["sleep", "100000"],
    );
    let done = objects.run(
        "done",
        &["--label", &member, "-v", &format!("{scratch}:/scratch")],
        BUSYBOX,
        &["true"],
    );
    let never = objects.create("never", &["--label", &member], BUSYBOX, &["true"]);
    wait_for(&done, "{{.State.Status}}", |s| s == "exited");
    let exists = |kind: &str, name: &str| common::docker::docker_ok(&[kind, "inspect", name]);
    let everything_there = || {
        for c in [&keep, &done, &never] {
            assert!(exists("container", c), "{c} was removed");
        }
        for v in [&data, &scratch, &spare] {
            assert!(exists("volume", v), "{v} was removed");
        }
    };

    // A dry run lists what would go and removes nothing.
    let out = run(
        &ws,
        "clean",
        &name,
        &["-p", "level=deep", "--dry-run", "--json"],
    );
    out.expect_code(0);
    let report = out.json();
    let details: Vec<&str> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 4, "{details:#?}");
    for gone in [&done, &never, &scratch, &spare] {
        assert!(
            details.iter().any(|d| d.contains(gone.as_str())),
            "{gone} not planned: {details:#?}"
        );
    }
    assert!(
        !details
            .iter()
            .any(|d| d.contains(&keep) || d.contains(&data)),
        "{details:#?}"
    );
    everything_there();

    // A deep clean without the typed name removes nothing: --yes does not answer it, and a
    // wrong name is refused.
    let out = run(&ws, "clean", &name, &["-p", "level=deep", "--yes"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains(&format!("Type `{name}`")),
        "{}",
        out.stderr
    );
    let out = run(
        &ws,
        "clean",
        &name,
        &["-p", "level=deep", "-p", "confirm=shop"],
    );
    out.expect_code(3);
    everything_there();

    // Safe: the stopped containers go, the running one and every volume stay.
    let out = run(&ws, "clean", &name, &["--yes"]);
    out.expect_code(0);
    assert!(!exists("container", &done) && !exists("container", &never));
    assert!(exists("container", &keep));
    for v in [&data, &scratch, &spare] {
        assert!(exists("volume", v), "{v} was removed by a safe clean");
    }

    // Deep, with the name typed back: the volumes no remaining container mounts go.
    let confirm = format!("confirm={name}");
    let out = run(&ws, "clean", &name, &["-p", "level=deep", "-p", &confirm]);
    out.expect_code(0);
    assert!(!exists("volume", &scratch) && !exists("volume", &spare));
    assert!(
        exists("volume", &data),
        "a volume the running container mounts was removed"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &keep]),
        "running"
    );
}
