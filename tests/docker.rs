//! The docker primitives against the real engine: every primitive, container specs that
//! recreate an equal container, volume data that comes back byte for byte, exec into a real
//! Postgres, passwords that never show in `ps` or inspect, dry runs that change nothing, and
//! errors that name what is missing.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::docker::{
    docker, inspect, playbook, playbook_with, result, setup, Objects, BUSYBOX, POSTGRES,
};
use common::run_id;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A busybox command that runs until stopped and stops at once on SIGTERM.
const SLEEPER: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn the_engine_answers_and_an_unreachable_one_is_named() {
    let Some((ws, _objects)) = setup() else {
        return;
    };
    let out = playbook(
        &ws,
        "docker::ping();\nlet v = docker::version();\n#{ api: v.ApiVersion, os: v.Os }",
    );
    let r = result(&out);
    assert_eq!(r["os"], "linux");
    assert!(r["api"].as_str().unwrap().starts_with("1."), "{r}");

    let dead = format!("unix://{}", ws.join("dead.sock").display());
    for host in [dead.as_str(), "tcp://127.0.0.1:1"] {
        let out = playbook_with(&ws, "docker::ping();", &[], &[("DOCKER_HOST", host)]);
        out.expect_code(1);
        assert!(
            out.stderr
                .contains(&format!("Docker engine at {host} is not reachable: ")),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn a_missing_container_or_volume_is_named_and_nothing_is_written() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let missing = objects.name("missing");
    let out = playbook(&ws, &format!("docker::inspect(\"{missing}\");"));
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("container `{missing}`: not found")),
        "{}",
        out.stderr
    );
    let out = playbook(&ws, &format!("docker::start(\"{missing}\");"));
    assert!(
        out.stderr
            .contains(&format!("container `{missing}`: not found")),
        "{}",
        out.stderr
    );
    let out = playbook(
        &ws,
        &format!("docker::volume_export(\"{missing}\", \"out/v.tar\");"),
    );
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("volume `{missing}`: not found")),
        "{}",
        out.stderr
    );
    assert!(!ws.join("out/v.tar").exists());
    assert_eq!(
        std::fs::read_dir(ws.join("out")).map_or(0, |d| d.count()),
        0,
        "no partial file is left behind"
    );
}

#[test]
fn containers_are_listed_by_stack_status_and_label() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let stack = objects.name("shop");
    let compose = format!("com.docker.compose.project={stack}");
    let own = format!("runbook.stack={stack}");
    let tier = format!("tier={}", objects.name("db"));
    let db = objects.run(
        "db",
        &["--label", &compose, "--label", &tier],
        BUSYBOX,
        SLEEPER,
    );
    let job = objects.create("job", &["--label", &own], BUSYBOX, SLEEPER);
    let other = objects.run("other", &["--label", &tier], BUSYBOX, SLEEPER);

    let out = playbook(
        &ws,
        &format!(
            r#"
let names = |rows| rows.map(|r| r.name);
#{{
    stack: names.call(docker::containers(#{{ stack: "{stack}" }})),
    running: names.call(docker::containers(#{{ stack: "{stack}", status: "running" }})),
    labelled: names.call(docker::containers(#{{ label: ["{tier}", "{test}"] }})),
    all: names.call(docker::containers()).filter(|n| n.starts_with("{prefix}")),
    row: docker::containers(#{{ stack: "{stack}", status: "running" }})[0],
}}"#,
            test = Objects::label(),
            prefix = objects.name(""),
        ),
    );
    let r = result(&out);
    assert_eq!(r["stack"], json!([db, job]));
    assert_eq!(r["running"], json!([db]));
    assert_eq!(r["labelled"], json!([db, other]));
    assert_eq!(r["all"], json!([db, job, other]));
    let row = &r["row"];
    assert_eq!(row["stack"], json!(stack));
    assert_eq!(row["state"], "running");
    assert_eq!(row["image"], BUSYBOX);
    assert_eq!(row["id"], json!(docker(&["inspect", "-f", "{{.Id}}", &db])));
}

#[test]
fn lifecycle_start_stop_restart_kill_rename_logs_remove() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let logger = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; for i in 1 2 3 4 5; do echo line$i; done; sleep 0.3; echo oops >&2; sleep 300 & wait",
    ];
    let c = objects.create("life", &[], BUSYBOX, &logger);
    let state = |name: &str| inspect("container", name)["State"].clone();

    result(&playbook(
        &ws,
        &format!("docker::start(\"{c}\"); docker::wait(\"{c}\", \"running\", 10)"),
    ));
    let first = state(&c);
    assert_eq!(first["Running"], true);

    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = std::process::Command::new("docker")
            .args(["logs", &c])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("oops") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = playbook(&ws, &format!("docker::logs(\"{c}\", 2)"));
    assert_eq!(result(&out), "line5\noops\n");
    let out = playbook(&ws, &format!("docker::logs(\"{c}\")"));
    assert!(result(&out).as_str().unwrap().starts_with("line1\nline2\n"));

    result(&playbook(&ws, &format!("docker::restart(\"{c}\", 5);")));
    let restarted = state(&c);
    assert_eq!(restarted["Running"], true);
    assert_ne!(restarted["StartedAt"], first["StartedAt"]);

    result(&playbook(&ws, &format!("docker::stop(\"{c}\", 5);")));
    let stopped = state(&c);
    assert_eq!(stopped["Running"], false);
    assert_eq!(
        stopped["ExitCode"], 0,
        "stopped by its stop signal, not killed"
    );

    docker(&["start", &c]);
    result(&playbook(&ws, &format!("docker::kill(\"{c}\");")));
    let killed = state(&c);
    assert_eq!(killed["Running"], false);
    assert_eq!(killed["ExitCode"], 137);

    let renamed = objects.track_container(&objects.name("renamed"));
    let out = playbook(
        &ws,
        &format!(
            "docker::rename(\"{c}\", \"{renamed}\");\n[docker::exists(\"{c}\"), docker::exists(\"{renamed}\")]"
        ),
    );
    assert_eq!(result(&out), json!([false, true]));

    docker(&["start", &renamed]);
    let out = playbook(&ws, &format!("docker::remove(\"{renamed}\");"));
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!("container `{renamed}`: ")),
        "{}",
        out.stderr
    );
    let out = playbook(
        &ws,
        &format!(
            "docker::remove(\"{renamed}\", #{{ force: true }});\ndocker::exists(\"{renamed}\")"
        ),
    );
    assert_eq!(result(&out), false);
}

#[test]
fn wait_reports_health_with_the_container_and_its_last_check() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let healthy = objects.run(
        "ok",
        &["--health-cmd", "true", "--health-interval", "1s"],
        BUSYBOX,
        SLEEPER,
    );
    let sick = objects.run(
        "sick",
        &[
            "--health-cmd",
            "echo db is down; exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        BUSYBOX,
        SLEEPER,
    );
    let slow = objects.run(
        "slow",
        &["--health-cmd", "sleep 60", "--health-interval", "60s"],
        BUSYBOX,
        SLEEPER,
    );
    let plain = objects.run("plain", &[], BUSYBOX, SLEEPER);
    let done = objects.run("done", &[], BUSYBOX, &["sh", "-c", "exit 3"]);

    let started = Instant::now();
    let out = playbook(
        &ws,
        &format!(
            r#"
fn failure(name, condition, timeout) {{
    try {{ docker::wait(name, condition, timeout); }} catch (e) {{ return `${{e}}`; }}
    "no error"
}}
#{{
    healthy: docker::wait("{healthy}", "healthy", 30),
    done: docker::wait("{done}", "exited", 30),
    sick: failure("{sick}", "healthy", 30),
    slow: failure("{slow}", "healthy", 2),
    plain: failure("{plain}", "healthy", 30),
    never: failure("{done}", "running", 30),
}}"#
        ),
    );
    let r = result(&out);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "conditions that cannot be met fail at once"
    );
    assert_eq!(r["healthy"]["health"], "healthy");
    assert_eq!(r["healthy"]["status"], "running");
    assert_eq!(r["done"]["exit_code"], 3);
    let sick_err = r["sick"].as_str().unwrap();
    assert!(
        sick_err.contains(&format!("container `{sick}`: not healthy after "))
            && sick_err.contains("health unhealthy; last health check exited 1: db is down"),
        "{sick_err}"
    );
    let slow_err = r["slow"].as_str().unwrap();
    assert!(
        slow_err.contains(&format!(
            "container `{slow}`: not healthy after 2s: running, health starting"
        )),
        "{slow_err}"
    );
    assert!(
        r["plain"].as_str().unwrap().contains("no healthcheck"),
        "{}",
        r["plain"]
    );
    assert!(
        r["never"]
            .as_str()
            .unwrap()
            .contains(&format!("container `{done}`: not running after ")),
        "{}",
        r["never"]
    );
    assert!(r["never"].as_str().unwrap().contains("exited with code 3"));
}

/// The parts of an inspect a recreated container must reproduce.
fn recreatable(inspect: &Value) -> Value {
    let short_id = &inspect["Id"].as_str().unwrap()[..12];
    let mut mounts: Vec<Value> = inspect["Mounts"].as_array().cloned().unwrap_or_default();
    mounts.sort_by_key(|m| m["Destination"].as_str().unwrap_or_default().to_string());
    let networks: BTreeMap<String, Value> = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, endpoint)| {
            let mut aliases: Vec<String> = endpoint["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|a| *a != short_id)
                .map(String::from)
                .collect();
            aliases.sort();
            let fields = json!({"Aliases": aliases, "IPAMConfig": endpoint["IPAMConfig"], "Links": endpoint["Links"]});
            (name.clone(), fields)
        })
        .collect();
    json!({
        "Name": inspect["Name"],
        "Image": inspect["Image"],
        "Config": inspect["Config"],
        "HostConfig": inspect["HostConfig"],
        "Mounts": mounts,
        "Networks": networks,
    })
}

#[test]
fn a_captured_spec_recreates_an_equal_container() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let data = objects.volume("data", &[]);
    let front = objects.network("front", &[]);
    let back = objects.network("back", &[]);
    std::fs::create_dir_all(ws.join("config")).unwrap();
    let data_mount = format!("type=volume,src={data},dst=/data");
    let bind = format!("{}:/config:ro", ws.join("config").display());
    let c = objects.create(
        "app",
        &[
            "--env",
            "APP_MODE=production",
            "--label",
            "com.example.role=web",
            "--user",
            "1000:1000",
            "--workdir",
            "/tmp",
            "--entrypoint",
            "sh",
            "--mount",
            &data_mount,
            "-v",
            &bind,
            "--tmpfs",
            "/scratch:size=1m",
            "-p",
            "127.0.0.1::8080",
            "--expose",
            "9090",
            "--network",
            &front,
            "--network-alias",
            "web",
            "--network-alias",
            "frontend",
            "--health-cmd",
            "true",
            "--health-interval",
            "5s",
            "--health-retries",
            "2",
            "--restart",
            "on-failure:3",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "MKNOD",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "100",
            "--stop-signal",
            "SIGTERM",
            "--stop-timeout",
            "7",
            "--ulimit",
            "nofile=1024:2048",
            "--add-host",
            "db.internal:10.0.0.5",
            "--hostname",
            "app-host",
        ],
        BUSYBOX,
        &["-c", "trap 'exit 0' TERM; sleep 300 & wait"],
    );
    docker(&["network", "connect", "--alias", "api", &back, &c]);
    docker(&["start", &c]);
    let before = inspect("container", &c);

    let out = playbook(
        &ws,
        &format!(
            r#"
step("capture", || fs::write_json("spec.json", docker::spec("{c}")));
step("remove", || docker::remove("{c}", #{{ force: true }}));
step("recreate", || {{
    docker::create(fs::read_json("spec.json"));
    docker::start("{c}");
}});
"#
        ),
    );
    out.expect_code(0);
    let after = inspect("container", &c);
    assert_ne!(before["Id"], after["Id"], "it really was recreated");
    assert_eq!(recreatable(&after), recreatable(&before));

    let spec: Value = serde_json::from_str(&ws.read("spec.json")).unwrap();
    assert_eq!(spec["image"], BUSYBOX);
    assert_eq!(
        spec["config"]["Env"],
        json!(["APP_MODE=production"]),
        "the image's PATH and IMAGE_FLAVOUR are the image's, not the container's"
    );
    assert_eq!(
        spec["networks"][&front]["Aliases"],
        json!(["web", "frontend"])
    );

    // Rollback's move: the same container from another image takes that image's defaults.
    let other = objects.track_container(&objects.name("other"));
    let out = playbook(
        &ws,
        &format!(
            r#"docker::create(fs::read_json("spec.json"), #{{ name: "{other}", image: "{POSTGRES}" }})"#
        ),
    );
    assert_eq!(result(&out), json!(other));
    let config = &inspect("container", &other)["Config"];
    assert_eq!(config["Image"], POSTGRES);
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"APP_MODE=production"), "{env:?}");
    assert!(env.contains(&"PGDATA=/var/lib/postgresql/data"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("IMAGE_FLAVOUR=")),
        "{env:?}"
    );
    assert_eq!(config["Entrypoint"], json!(["sh"]));
}

/// Runs a shell script in a throwaway busybox container with the volume at `/v`.
fn in_volume(volume: &str, read_only: bool, script: &str) -> String {
    let mount = format!("{volume}:/v{}", if read_only { ":ro" } else { "" });
    let label = Objects::label();
    docker(&[
        "run", "--rm", "--label", &label, "-v", &mount, BUSYBOX, "sh", "-ec", script,
    ])
}

/// Every entry of a volume, as the container sees it: path, type, mode, owner, size, mtime,
/// link count, symlink target and content hash.
fn volume_listing(volume: &str) -> String {
    in_volume(
        volume,
        true,
        "cd /v && find . | sort | while read -r p; do \
           stat -c '%n %F %a %u %g %s %Y %h' \"$p\"; \
           if [ -L \"$p\" ]; then readlink \"$p\"; elif [ -f \"$p\" ]; then sha256sum < \"$p\"; fi; \
         done",
    )
}

/// Owners, modes (setuid too), symlinks (one dangling), a hard link, an old mtime, an empty
/// directory and a 64 MiB file of random bytes.
fn fill_volume(volume: &str) {
    in_volume(
        volume,
        false,
        "mkdir -p /v/etc /v/empty /v/deep/a/b/c
         echo config > /v/etc/app.conf; chown 1000:1000 /v/etc/app.conf; chmod 0640 /v/etc/app.conf
         echo key > /v/etc/key; chown 999:999 /v/etc/key; chmod 0600 /v/etc/key
         touch /v/setuid; chmod 4755 /v/setuid
         ln -s etc/app.conf /v/link; ln -s /nonexistent /v/dangling
         ln /v/etc/app.conf /v/hardlink
         dd if=/dev/urandom of=/v/large.bin bs=1M count=64 2>/dev/null
         touch -d '2020-01-02 03:04:05' /v/etc/app.conf /v/deep/a
         chown 1000:1000 /v/deep; chmod 0700 /v/empty; chmod 0750 /v; chown 999:999 /v",
    );
}

#[test]
fn a_volume_comes_back_byte_identical() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let original = objects.volume("original", &[]);
    let restored = objects.volume("restored", &[]);
    fill_volume(&original);

    let out = playbook(
        &ws,
        &format!(
            r#"
let written = docker::volume_export("{original}", "backup/original.tar");
let read = docker::volume_import("{restored}", "backup/original.tar");
docker::volume_export("{restored}", "backup/restored.tar");
#{{ written: written, read: read }}"#
        ),
    );
    let r = result(&out);
    let tar = std::fs::read(ws.join("backup/original.tar")).unwrap();
    assert_eq!(r["written"], json!(tar.len()));
    assert_eq!(r["read"], json!(tar.len()));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ws.join("backup/original.tar"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "volume data may hold secrets");

    let listing = volume_listing(&original);
    assert!(
        listing.contains("./setuid regular empty file 4755 0 0"),
        "{listing}"
    );
    assert!(listing.contains(". directory 750 999 999"), "{listing}");
    assert!(listing.contains("./link symbolic link"), "{listing}");
    assert!(
        listing.contains("./large.bin regular file 644 0 0 67108864"),
        "{listing}"
    );
    assert_eq!(volume_listing(&restored), listing);
    assert_eq!(
        tar_entries(&std::fs::read(ws.join("backup/restored.tar")).unwrap()),
        tar_entries(&tar)
    );
    let helpers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=runbook.volume={original}"),
    ]);
    assert!(
        helpers.is_empty(),
        "helper containers are removed: {helpers}"
    );
}

/// A tar's entries by path: type, mode, owner, mtime, link target, content hash.
fn tar_entries(tar: &[u8]) -> BTreeMap<String, String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let path = entry.path().unwrap().display().to_string();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let facts = format!(
                "{:?} {:o} {}:{} {} {link} {}",
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                sha256_hex(&data)
            );
            (path, facts)
        })
        .collect()
}

fn exec_request(argv: &[&str]) -> runbook::docker::ExecRequest {
    runbook::docker::ExecRequest {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// An input that yields some bytes, then fails (a truncated or tampered archive).
struct Corrupt(usize);

impl Read for Corrupt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("the archive is corrupt"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

/// An input that stalls for two seconds, then ends.
struct Stalled;

impl Read for Stalled {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_secs(2));
        Ok(0)
    }
}

#[test]
fn rust_pipelines_stream_volumes_and_exec_output_on_blocking_threads() {
    let Some((_ws, objects)) = setup() else {
        return;
    };
    let original = objects.volume("source", &[]);
    let copy = objects.volume("copy", &[]);
    fill_volume(&original);
    let c = objects.run("streamer", &[], BUSYBOX, SLEEPER);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tar_hash, dump) = runtime.block_on(async {
        let engine = runbook::docker::Docker::connect().await.unwrap();
        // A synchronous consumer (compress, encrypt) reads the volume on a blocking thread.
        let stream = engine.volume_export(&original, None).await.unwrap();
        let tar = tokio::task::spawn_blocking(move || {
            let mut stream = stream;
            let mut tar = Vec::new();
            stream.read_to_end(&mut tar).unwrap();
            tar
        })
        .await
        .unwrap();
        let imported = engine
            .volume_import(
                &copy,
                std::io::Cursor::new(tar.clone()),
                None,
                runbook::docker::VolumeLoad::new("export.tar"),
            )
            .await
            .unwrap();
        assert_eq!(imported, tar.len() as u64);

        let request = exec_request(&[
            "sh",
            "-c",
            "head -c 30000000 /dev/urandom | tee /tmp/dump; sha256sum < /tmp/dump >&2",
        ]);
        let stream = engine
            .exec_stream(&c, request, runbook::docker::ExecInput::None)
            .await
            .unwrap();
        let dump = tokio::task::spawn_blocking(move || {
            let mut stream = stream;
            let mut hasher = Sha256::new();
            let mut bytes = 0usize;
            let mut buf = vec![0; 1 << 16];
            loop {
                let n = stream.stdout.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                bytes += n;
                hasher.update(&buf[..n]);
            }
            let status = stream.wait().unwrap();
            (bytes, hex::encode(hasher.finalize()), status)
        })
        .await
        .unwrap();

        // A restore feeds a dump from a decrypting reader into psql's stdin the same way.
        let input: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sha256_hex(&input);
        let hashed = engine
            .exec(
                &c,
                exec_request(&["sha256sum"]),
                runbook::docker::ExecInput::Reader(Box::new(std::io::Cursor::new(input))),
            )
            .await
            .unwrap();
        assert_eq!(hashed.code, 0);
        assert_eq!(
            String::from_utf8_lossy(&hashed.stdout),
            format!("{expected}  -\n")
        );
        let failed = engine
            .exec(
                &c,
                exec_request(&["wc", "-c"]),
                runbook::docker::ExecInput::Reader(Box::new(Corrupt(100_000))),
            )
            .await
            .unwrap_err();
        assert_eq!(
            failed.to_string(),
            format!("container `{c}`: reading the exec's input failed: the archive is corrupt"),
            "a broken input fails the exec even though the process exited 0"
        );

        // Abandoned halfway (a consumer that gave up, Ctrl-C): no helper container stays.
        drop(engine.volume_export(&original, None).await.unwrap());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(500),
            engine.volume_import(
                &copy,
                Stalled,
                None,
                runbook::docker::VolumeLoad::new("stalled.tar"),
            ),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "the import was still waiting for its input"
        );
        for volume in [&original, &copy] {
            let helpers = runbook::docker::ContainerFilter {
                labels: vec![format!("runbook.volume={volume}")],
                ..Default::default()
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !engine.containers(&helpers).await.unwrap().is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "a helper of {volume} was left behind"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        (sha256_hex(&tar), dump)
    });
    assert!(!tar_hash.is_empty());
    assert_eq!(volume_listing(&copy), volume_listing(&original));
    let (bytes, hash, status) = dump;
    assert_eq!(status.code, 0);
    assert_eq!(bytes, 30_000_000);
    assert_eq!(
        String::from_utf8_lossy(&status.stderr)
            .split_whitespace()
            .next(),
        Some(hash.as_str()),
        "what arrived is what the process wrote"
    );
}

#[test]
fn exec_with_stdin_runs_sql_in_postgres() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let password = format!("pg-{}-secret", run_id());
    let pg = objects.postgres("pg", &ws, &password);
    let ip = inspect("container", &pg)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    ws.write("password", &password);
    ws.write("wrong", "not-the-password");

    let out = playbook(
        &ws,
        &format!(
            r#"
import "postgres" as pg;
let psql = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-f", "-"];
let sql = `CREATE TABLE fruit (id int, name text);
INSERT INTO fruit VALUES (1, 'apple'), (2, 'pear');
SELECT name FROM fruit ORDER BY id;`;
let ok = docker::exec("{pg}", psql, #{{ stdin: sql }});
let bad = docker::exec("{pg}", psql, #{{ stdin: "SELECT * FROM missing_table;" }});
// Over the container's own address the server asks for the password (scram-sha-256).
let over_tcp = |secret| docker::exec("{pg}",
    ["psql", "-X", "-At", "-h", "{ip}", "-U", "postgres", "-d", "postgres", "-c", "SELECT count(*) FROM fruit"],
    #{{ env: #{{ PGPASSWORD: secret }}, read_only: true }});
let db = pg::target("{pg}", "postgres", "postgres", fs::read_secret("password"));
#{{
    ok: ok, bad: bad,
    right: over_tcp.call(fs::read_secret("password")),
    wrong: over_tcp.call(fs::read_secret("wrong")),
    stdlib: pg::query(db, "SELECT string_agg(name, ',') FROM fruit"),
}}"#
        ),
    );
    let r = result(&out);
    assert_eq!(r["ok"]["code"], 0, "{}", r["ok"]["stderr"]);
    assert_eq!(r["ok"]["stdout"], "apple\npear\n");
    assert_eq!(r["bad"]["code"], 3, "psql with ON_ERROR_STOP exits 3");
    assert!(r["bad"]["stderr"]
        .as_str()
        .unwrap()
        .contains("missing_table"));
    assert_eq!(r["right"]["code"], 0, "{}", r["right"]["stderr"]);
    assert_eq!(r["right"]["stdout"], "2\n");
    assert_eq!(r["wrong"]["code"], 2);
    assert!(r["wrong"]["stderr"]
        .as_str()
        .unwrap()
        .contains("password authentication failed"));
    assert_eq!(r["stdlib"], "apple,pear\n");
    assert!(!out.all_output().contains(&password));
    assert!(!ws.journals().contains(&password));
}

#[test]
fn a_password_handed_to_exec_is_absent_from_ps_and_inspect() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let password = format!("canary-{}-{:08x}", run_id(), rand::random::<u32>());
    let pg = objects.postgres("pg", &ws, "server-password");
    ws.write("password", &password);
    ws.write("pgpass", &format!("*:*:*:postgres:{password}"));

    // While the exec runs, look where an attacker on the host would.
    let watcher = {
        let pg = pg.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let ps = std::process::Command::new("ps")
                    .args(["auxww"])
                    .output()
                    .unwrap();
                let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
                let container = docker(&["inspect", &pg]);
                let exec_ids: Vec<String> = serde_json::from_str::<Value>(&container).unwrap()[0]
                    ["ExecIDs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                let execs: Vec<String> = exec_ids
                    .iter()
                    .filter_map(|id| {
                        std::process::Command::new("curl")
                            .args(["-s", "--unix-socket", "/var/run/docker.sock"])
                            .arg(format!("http://localhost/exec/{id}/json"))
                            .output()
                            .ok()
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    })
                    .collect();
                let running = ps.contains("sleep 3");
                seen.push((running, ps, container, execs));
                if seen.iter().filter(|s| s.0).count() >= 5 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = playbook(
        &ws,
        &format!(
            r#"
let by_env = docker::exec("{pg}", ["sh", "-c", "sleep 3; printf %s \"$APP_PASSWORD\" | sha256sum"],
    #{{ env: #{{ APP_PASSWORD: fs::read_secret("password") }} }});
let by_stdin = docker::exec("{pg}", ["sha256sum"], #{{ stdin: fs::read_secret("password") }});
let by_file = docker::exec("{pg}",
    ["sh", "-c", "stat -c '%a %U' /run/runbook/pgpass; PGPASSFILE=/run/runbook/pgpass psql -X -At -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 42'"],
    #{{ files: #{{ "/run/runbook/pgpass": fs::read_secret("pgpass") }}, user: "postgres" }});
fn refused(pg) {{
    try {{ docker::exec(pg, ["echo", fs::read_secret("password")]); }} catch (e) {{ return `${{e}}`; }}
    "ran"
}}
#{{ by_env: by_env.stdout, by_stdin: by_stdin.stdout, by_file: by_file, refused: refused("{pg}") }}"#
        ),
    );
    let seen = watcher.join().unwrap();
    let r = result(&out);
    let expected = format!("{}  -\n", sha256_hex(password.as_bytes()));
    assert_eq!(r["by_env"], json!(expected), "the process got the password");
    assert_eq!(r["by_stdin"], json!(expected));
    assert_eq!(r["by_file"]["code"], 0, "{}", r["by_file"]["stderr"]);
    assert_eq!(r["by_file"]["stdout"], "600 postgres\n42\n");
    assert!(r["refused"]
        .as_str()
        .unwrap()
        .contains("secrets never go on a command line"));
    let gone = std::process::Command::new("docker")
        .args(["exec", &pg, "test", "-e", "/run/runbook/pgpass"])
        .status()
        .unwrap();
    assert!(
        !gone.success(),
        "the credentials file is removed after the exec"
    );

    assert!(
        seen.iter().filter(|s| s.0).count() >= 3,
        "the watcher saw the exec running"
    );
    assert!(
        seen.iter()
            .any(|s| !s.3.is_empty() && s.3.iter().any(|e| e.contains("sleep 3"))),
        "the watcher saw the exec's inspect"
    );
    for (_, ps, container, execs) in &seen {
        assert!(!ps.contains(&password), "password in ps:\n{ps}");
        assert!(
            !container.contains(&password),
            "password in container inspect"
        );
        for e in execs {
            assert!(!e.contains(&password), "password in exec inspect: {e}");
        }
    }
    assert!(!out.all_output().contains(&password));
    assert!(!ws.journals().contains(&password));
}

#[test]
fn exec_output_streams_to_a_file_that_appears_only_on_success() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let c = objects.run("dump", &[], BUSYBOX, SLEEPER);
    let out = playbook(
        &ws,
        &format!(
            r#"
let ok = docker::exec_to_file("{c}", ["sh", "-c", "head -c 50000000 /dev/urandom | tee /tmp/dump; sha256sum < /tmp/dump > /tmp/sum"], "out/dump.bin", #{{}});
let bad = docker::exec_to_file("{c}", ["sh", "-c", "echo partial; echo failed >&2; exit 4"], "out/bad.bin", #{{}});
#{{ ok: ok, bad: bad, sum: docker::exec("{c}", ["cat", "/tmp/sum"], #{{ read_only: true }}).stdout }}"#
        ),
    );
    let r = result(&out);
    assert_eq!(r["ok"]["code"], 0);
    assert_eq!(r["ok"]["bytes"], 50_000_000);
    let dump = std::fs::read(ws.join("out/dump.bin")).unwrap();
    assert_eq!(dump.len(), 50_000_000);
    assert_eq!(
        r["sum"].as_str().unwrap().split_whitespace().next(),
        Some(sha256_hex(&dump).as_str())
    );
    assert_eq!(r["bad"]["code"], 4);
    assert_eq!(r["bad"]["stderr"], "failed\n");
    assert!(
        !ws.join("out/bad.bin").exists(),
        "a failed dump leaves no file"
    );
    let names: Vec<String> = std::fs::read_dir(ws.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["dump.bin".to_string()],
        "no temporary file either"
    );
}

#[test]
fn a_dry_run_plans_every_change_and_makes_none() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let c = objects.run("dry", &[], BUSYBOX, SLEEPER);
    let data = objects.volume("data", &[]);
    let planned_volume = objects.track_volume(&objects.name("planned"));
    let out = playbook_with(
        &ws,
        &format!(
            r#"
docker::exec("{c}", ["touch", "/tmp/marker"]);
let read = docker::exec("{c}", ["cat", "/etc/passwd"], #{{ read_only: true }});
docker::stop("{c}", 1);
docker::remove("{c}", #{{ force: true }});
docker::volume_create("{planned_volume}");
docker::volume_export("{data}", "out/data.tar");
docker::wait("{c}", "healthy", 1);
#{{ read: read.stdout, running: docker::inspect("{c}").State.Running }}"#
        ),
        &["--dry-run"],
        &[],
    );
    let report = out.json();
    out.expect_code(0);
    let actions: Vec<&str> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "docker::exec",
            "docker::stop",
            "docker::remove",
            "docker::volume_create",
            "docker::volume_export"
        ]
    );
    assert!(report["result"]["read"]
        .as_str()
        .unwrap()
        .starts_with("root:x:0:0"));
    assert_eq!(report["result"]["running"], true);
    assert_eq!(inspect("container", &c)["State"]["Running"], true);
    let marker = std::process::Command::new("docker")
        .args(["exec", &c, "test", "-e", "/tmp/marker"])
        .status()
        .unwrap();
    assert!(!marker.success(), "the planned exec did not run");
    let volume = std::process::Command::new("docker")
        .args(["volume", "inspect", &planned_volume])
        .output()
        .unwrap();
    assert!(
        !volume.status.success(),
        "the planned volume was not created"
    );
    assert!(!ws.join("out").exists());
}

#[test]
fn images_are_tagged_inspected_listed_and_removed() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let tag = objects.track_image(&format!("runbook-test/busybox:{}", objects.name("tag")));
    let out = playbook(
        &ws,
        &format!(
            r#"
docker::image_tag("{BUSYBOX}", "{tag}");
let existed = docker::image_exists("{tag}");
let id = docker::image_inspect("{tag}").Id;
let listed = docker::images(#{{ labels: #{{ "org.opencontainers.image.title": "runbook test busybox" }} }})
    .filter(|i| i.tags.contains("{tag}")).len();
docker::image_remove("{tag}");
#{{ existed: existed, id: id, listed: listed, after: docker::image_exists("{tag}") }}"#
        ),
    );
    let r = result(&out);
    assert_eq!(r["existed"], true);
    assert_eq!(
        r["id"],
        json!(docker(&["image", "inspect", "-f", "{{.Id}}", BUSYBOX]))
    );
    assert_eq!(r["listed"], 1);
    assert_eq!(r["after"], false);
    docker(&["image", "inspect", BUSYBOX]);
}

#[test]
fn volumes_and_networks_are_created_listed_by_stack_and_removed() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let stack = objects.name("shop");
    let compose = format!("com.docker.compose.project={stack}");
    let labelled = objects.volume("labelled", &[&compose]);
    let external = objects.volume("external", &[]);
    let net = objects.network("net", &[&compose]);
    let mount = format!("{external}:/ext");
    let web = objects.create(
        "web",
        &["--label", &compose, "-v", &mount, "--network", &net],
        BUSYBOX,
        SLEEPER,
    );
    let made_volume = objects.track_volume(&objects.name("made-volume"));
    let made_network = objects.track_network(&objects.name("made-network"));
    let run = run_id();
    let prefix = objects.name("");
    let out = playbook(
        &ws,
        &format!(
            r#"
let labels = #{{ "runbook.stack": "{stack}", "runbook.test": "{run}" }};
docker::volume_create("{made_volume}", #{{ labels: labels }});
docker::network_create("{made_network}", #{{ labels: labels, internal: true }});
let view = docker::stack("{stack}");
let names = |rows| rows.map(|r| r.name);
let result = #{{
    containers: names.call(view.containers),
    volumes: names.call(view.volumes),
    networks: names.call(view.networks),
    every_volume: names.call(docker::volumes()).filter(|n| n.starts_with("{prefix}")),
    every_network: names.call(docker::networks()).filter(|n| n.starts_with("{prefix}")),
    listed_volumes: names.call(docker::volumes(#{{ stack: "{stack}" }})),
    listed_networks: names.call(docker::networks(#{{ stack: "{stack}" }})),
    by_label: names.call(docker::volumes(#{{ label: "runbook.stack={stack}" }})),
    volume_label: docker::volume_inspect("{made_volume}").Labels["runbook.stack"],
    internal: docker::network_inspect("{made_network}").Internal,
}};
docker::volume_remove("{made_volume}");
docker::network_remove("{made_network}");
result.gone = [docker::volume_exists("{made_volume}"), docker::network_exists("{made_network}")];
result"#
        ),
    );
    let r = result(&out);
    let mut volumes = vec![labelled.clone(), external.clone(), made_volume.clone()];
    volumes.sort();
    let mut networks = vec![net.clone(), made_network.clone()];
    networks.sort();
    assert_eq!(r["containers"], json!([web]));
    assert_eq!(r["volumes"], json!(volumes));
    assert_eq!(r["networks"], json!(networks));
    assert_eq!(r["every_volume"], json!(volumes));
    assert_eq!(r["every_network"], json!(networks));
    assert_eq!(r["listed_volumes"], json!(volumes));
    assert_eq!(r["listed_networks"], json!(networks));
    assert_eq!(r["by_label"], json!([made_volume]));
    assert_eq!(r["volume_label"], json!(stack));
    assert_eq!(r["internal"], true);
    assert_eq!(r["gone"], json!([false, false]));
}

#[test]
fn a_stack_starts_dependencies_first_and_stops_them_last() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let stack = objects.name("svc");
    let project = format!("com.docker.compose.project={stack}");
    let service = |name: &str, depends_on: &str, extra: &[&str]| {
        let svc = format!("com.docker.compose.service={name}");
        let deps = format!("com.docker.compose.depends_on={depends_on}");
        let args = [
            &["--label", &project, "--label", &svc, "--label", &deps][..],
            extra,
        ]
        .concat();
        objects.create(name, &args, BUSYBOX, SLEEPER)
    };
    // Ready (and healthy) two seconds after it starts: api must wait for that.
    let svc = "com.docker.compose.service=db".to_string();
    let db = objects.create(
        "db",
        &[
            "--label",
            &project,
            "--label",
            &svc,
            "--health-cmd",
            "test -e /tmp/ready",
            "--health-interval",
            "1s",
        ],
        BUSYBOX,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2; touch /tmp/ready; sleep 300 & wait",
        ],
    );
    let api = service("api", "db:service_healthy:false", &[]);
    let web = service("web", "api:service_started:false", &[]);
    let cache = service("cache", "", &[]);

    let out = playbook(
        &ws,
        &format!(
            r#"#{{
    started: docker::stack_start("{stack}", #{{ timeout: 30, concurrency: 2 }}),
    again: docker::stack_start("{stack}"),
    stopped: docker::stack_stop("{stack}", #{{ grace: 5 }}),
}}"#
        ),
    );
    let r = result(&out);
    let mut first_wave = [cache.clone(), db.clone()];
    first_wave.sort();
    assert_eq!(
        r["started"],
        json!([first_wave[0], first_wave[1], api, web])
    );
    assert_eq!(r["again"], json!([]), "running containers are left alone");
    assert_eq!(
        r["stopped"],
        json!([web, api, first_wave[0], first_wave[1]])
    );

    let state = |name: &str| inspect("container", name)["State"].clone();
    let (db_state, api_state, web_state) = (state(&db), state(&api), state(&web));
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        time(&api_state["StartedAt"]) - time(&db_state["StartedAt"])
            >= chrono::TimeDelta::seconds(2),
        "api started after db was healthy"
    );
    assert!(time(&web_state["StartedAt"]) >= time(&api_state["StartedAt"]));
    assert!(time(&web_state["FinishedAt"]) <= time(&api_state["FinishedAt"]));
    assert!(time(&api_state["FinishedAt"]) <= time(&db_state["FinishedAt"]));
}

/// A TCP endpoint in front of the engine's socket, as a remote engine is reached: plain, or
/// TLS requiring a client certificate from the CA in `certs`. Serves until the tests end.
fn engine_endpoint(certs: Option<&std::path::Path>) -> u16 {
    use std::sync::Arc;
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::*};
    let acceptor = certs.map(|dir| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(mut tls) = acceptor.accept(tcp).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                            }
                        }
                        None => {
                            let mut tcp = tcp;
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut engine).await;
                        }
                    }
                });
            }
        });
    });
    port
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate in `dir` (the layout
/// `DOCKER_CERT_PATH` expects: ca.pem, cert.pem, key.pem).
fn make_certs(dir: &std::path::Path, ca_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| common::tls::openssl(dir, args);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={ca_name}");
    let days = ["-days", "1"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &days,
            &["-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", &subject],
        ]
        .concat(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, cn) in [("server", "127.0.0.1"), ("client", "runbook")] {
        let (key, csr, cert, ext) = (
            format!("{who}-key.pem"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        let subject = format!("/CN={cn}");
        openssl(
            &[
                &["req"],
                &ec[..],
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        openssl(
            &[
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                ],
                &days[..],
                &["-CAcreateserial", "-out", &cert, "-extfile", &ext],
            ]
            .concat(),
        );
    }
    std::fs::copy(dir.join("client.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), dir.join("key.pem")).unwrap();
}

#[test]
fn the_engine_is_reached_over_tcp_and_over_tls_with_client_certificates() {
    let Some((ws, _objects)) = setup() else {
        return;
    };
    let certs = ws.join("certs");
    make_certs(&certs, "runbook-test-ca");
    make_certs(&ws.join("stranger"), "some-other-ca");
    let body = "docker::version().ApiVersion";

    let tcp = format!("tcp://127.0.0.1:{}", engine_endpoint(None));
    let out = playbook_with(&ws, body, &[], &[("DOCKER_HOST", &tcp)]);
    assert!(result(&out).as_str().unwrap().starts_with("1."));

    let tls = format!("tcp://127.0.0.1:{}", engine_endpoint(Some(&certs)));
    let with_certs = |dir: &str| {
        let env = [
            ("DOCKER_HOST", tls.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", dir),
        ];
        playbook_with(&ws, body, &[], &env)
    };
    let out = with_certs(&certs.display().to_string());
    assert!(result(&out).as_str().unwrap().starts_with("1."));

    // Certificates from another CA: the engine's certificate is not trusted.
    let out = with_certs(&ws.join("stranger").display().to_string());
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("Docker engine at {tls} is not reachable: "))
            && out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dry_run_fails_where_the_run_would_and_follows_its_own_plan() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let missing = objects.name("nope");
    let out = playbook_with(
        &ws,
        &format!("step(\"stop it\", || docker::stop(\"{missing}\"));"),
        &["--dry-run"],
        &[],
    );
    out.expect_code(1);
    let report = out.json();
    assert_eq!(
        report["error"],
        format!("error: step `stop it` failed: container `{missing}`: not found")
    );
    assert_eq!(
        report["actions"],
        json!([]),
        "nothing planned past the failure"
    );

    // A volume still mounted (by a stopped container too) cannot be removed; once the plan
    // removes its container, it can. A volume the plan creates can be loaded.
    let volume = objects.volume("used", &[]);
    let user = objects.create(
        "user",
        &["-v", &format!("{volume}:/data")],
        BUSYBOX,
        &["true"],
    );
    let out = playbook_with(
        &ws,
        &format!("docker::volume_remove(\"{volume}\");"),
        &["--dry-run"],
        &[],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "volume `{volume}`: in use by container {user} (remove it first)"
        )),
        "{}",
        out.stderr
    );
    let fresh = objects.track_volume(&objects.name("fresh"));
    ws.write("data.tar", "");
    let out = playbook_with(
        &ws,
        &format!(
            "docker::remove(\"{user}\");\ndocker::volume_remove(\"{volume}\");\n\
             docker::volume_create(\"{fresh}\");\ndocker::volume_import(\"{fresh}\", \"data.tar\");"
        ),
        &["--dry-run"],
        &[],
    );
    out.expect_code(0);
    let report = out.json();
    let planned: Vec<&str> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        [
            "docker::remove",
            "docker::volume_remove",
            "docker::volume_create",
            "docker::volume_import"
        ]
    );
    assert!(
        docker(&["volume", "ls", "-q"]).contains(&volume),
        "a dry run changed nothing"
    );
}

#[test]
fn inspect_masks_credential_values_and_hands_them_over_as_secrets() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let literal = format!("lit-{}-Passw0rd", run_id());
    let app = objects.run(
        "creds",
        &[
            "-e",
            &format!("POSTGRES_PASSWORD={literal}"),
            "-e",
            "API_TOKEN=tok-value-1234",
            "-e",
            "PLAIN_SETTING=visible",
        ],
        BUSYBOX,
        SLEEPER,
    );
    let out = playbook(
        &ws,
        &format!(
            r#"let c = docker::inspect("{app}");
print(c);
print(c.Config.Env);
log::info(`env: ${{c.Config.Env}}`);
let password = c.Config.EnvSecrets.POSTGRES_PASSWORD;
let check = docker::exec("{app}", ["sh", "-c", "printf %s \"$P\" | wc -c"], #{{ env: #{{ P: password }}, read_only: true }});
#{{ env: c.Config.Env, type: type_of(password), length: check.stdout.trimmed(), inspect: c }}"#
        ),
    );
    let r = result(&out);
    let env: Vec<&str> = r["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"POSTGRES_PASSWORD=***"), "{env:?}");
    assert!(env.contains(&"API_TOKEN=***"), "{env:?}");
    assert!(env.contains(&"PLAIN_SETTING=visible"), "{env:?}");
    assert_eq!(r["type"], "Secret");
    assert_eq!(
        r["length"],
        literal.len().to_string(),
        "the real value reaches an exec"
    );
    for leaked in [literal.as_str(), "tok-value-1234"] {
        assert!(!out.all_output().contains(leaked), "{leaked} printed");
        assert!(!ws.journals().contains(leaked), "{leaked} journaled");
    }
}

#[test]
fn digest_differences_name_the_entries_and_what_changed() {
    let Some((ws, objects)) = setup() else {
        return;
    };
    let volume = objects.volume("drill", &[]);
    let mount = format!("{volume}:/data");
    let box_run = |script: &str| {
        docker(&["run", "--rm", "-v", &mount, BUSYBOX, "sh", "-c", script]);
    };
    box_run("echo one > /data/a && echo two > /data/b && chmod 644 /data/a /data/b && touch -d '2026-01-01 00:00:00' /data/a /data/b /data");
    let before = playbook(&ws, &format!("docker::volume_digest(\"{volume}\")"));
    let before = result(&before);
    assert!(
        before["listing"]["./a"].is_string(),
        "a per-entry listing: {before}"
    );
    box_run("chmod 600 /data/a && touch -d '2026-01-01 00:00:00' /data/a && echo TWO > /data/b && touch -d '2026-01-01 00:00:00' /data/b && rm /data/b && echo new > /data/c && touch -d '2026-01-01 00:00:00' /data/c /data");
    ws.write("before.json", &before.to_string());
    let out = playbook(
        &ws,
        &format!(
            "let before = fs::read_json(\"before.json\");\n\
             let after = docker::volume_digest(\"{volume}\");\n\
             #{{ changes: docker::digest_differences(before, after), same: docker::digest_differences(after, after) }}"
        ),
    );
    let r = result(&out);
    assert_eq!(
        r["changes"],
        json!(["`./a`: mode 0644 → 0600", "`./b`: missing", "`./c`: new"]),
        "{r}"
    );
    assert_eq!(r["same"], json!([]));
}
