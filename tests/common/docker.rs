//! Docker fixtures for the tests: the test images, objects with unique names and the
//! `runbook.test=<run-id>` label, removed when the test ends (also when it fails), and the
//! `docker` CLI as an independent witness of what runbook did.

use std::cell::RefCell;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{header, run_id, Outcome, Workspace};

pub const BUSYBOX: &str = "runbook-test/busybox:latest";
pub const POSTGRES: &str = "runbook-test/postgres:15";
pub const MARIADB: &str = "runbook-test/mariadb:10.11-r2";

/// A workspace and the guard of a test's Docker objects, or `None` (skip the test; in CI, fail)
/// when there is no engine or the test images are not built.
pub fn setup() -> Option<(Workspace, Objects)> {
    available().then(|| (Workspace::new(), Objects::new()))
}

/// True when the engine answers and the test images are built; skips (or fails in CI) otherwise.
pub fn available() -> bool {
    images_available(&[BUSYBOX, POSTGRES])
}

/// True when the engine answers and these test images are built; skips (or fails in CI)
/// otherwise.
pub fn images_available(images: &[&str]) -> bool {
    let probe = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(images)
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run the docker CLI: {e}"),
    };
    super::require("Docker engine with the test images", false, &why)
}

/// Runs the docker CLI; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the docker CLI; true when it succeeds (`docker volume inspect NAME`: it exists).
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs SQL in a Postgres container as its superuser over the local socket (an independent
/// witness of what runbook did); returns psql's unaligned output.
pub fn psql(container: &str, database: &str, sql: &str) -> String {
    docker(&[
        "exec",
        container,
        "psql",
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "postgres",
        "-d",
        database,
        "-c",
        sql,
    ])
}

/// `docker inspect` of an object, as JSON.
pub fn inspect(kind: &str, name: &str) -> serde_json::Value {
    let text = docker(&[kind, "inspect", name]);
    let list: serde_json::Value = serde_json::from_str(&text).expect("inspect is JSON");
    list[0].clone()
}

/// Docker objects one test creates; all removed on drop, whatever happened.
pub struct Objects {
    prefix: String,
    containers: RefCell<Vec<String>>,
    volumes: RefCell<Vec<String>>,
    networks: RefCell<Vec<String>>,
    images: RefCell<Vec<String>>,
}

impl Objects {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Objects {
            prefix: format!("{}-{}", run_id(), NEXT.fetch_add(1, Ordering::SeqCst)),
            containers: RefCell::default(),
            volumes: RefCell::default(),
            networks: RefCell::default(),
            images: RefCell::default(),
        }
    }

    /// A name no other test or run uses.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// The label every test object carries.
    pub fn label() -> String {
        format!("runbook.test={}", run_id())
    }

    /// Registers a container runbook will create, so it is removed too.
    pub fn track_container(&self, name: &str) -> String {
        self.containers.borrow_mut().push(name.to_string());
        name.to_string()
    }

    pub fn track_volume(&self, name: &str) -> String {
        self.volumes.borrow_mut().push(name.to_string());
        name.to_string()
    }

    pub fn track_network(&self, name: &str) -> String {
        self.networks.borrow_mut().push(name.to_string());
        name.to_string()
    }

    pub fn track_image(&self, name: &str) -> String {
        self.images.borrow_mut().push(name.to_string());
        name.to_string()
    }

    /// `docker run -d` with a unique name and the test label; `args` go before the image.
    pub fn run(&self, what: &str, args: &[&str], image: &str, command: &[&str]) -> String {
        self.container("run", what, &[&["-d"], args].concat(), image, command)
    }

    /// `docker create` (never started) with a unique name and the test label.
    pub fn create(&self, what: &str, args: &[&str], image: &str, command: &[&str]) -> String {
        self.container("create", what, args, image, command)
    }

    fn container(
        &self,
        verb: &str,
        what: &str,
        args: &[&str],
        image: &str,
        command: &[&str],
    ) -> String {
        let name = self.track_container(&self.name(what));
        let label = Self::label();
        let mut argv = vec![verb, "--name", &name, "--label", &label];
        argv.extend_from_slice(args);
        argv.push(image);
        argv.extend_from_slice(command);
        docker(&argv);
        name
    }

    /// A volume with the test label and any extra `--label`s.
    pub fn volume(&self, what: &str, labels: &[&str]) -> String {
        let name = self.track_volume(&self.name(what));
        Self::labelled("volume", &name, labels)
    }

    /// A bridge network with the test label and any extra `--label`s.
    pub fn network(&self, what: &str, labels: &[&str]) -> String {
        let name = self.track_network(&self.name(what));
        Self::labelled("network", &name, labels)
    }

    fn labelled(kind: &str, name: &str, labels: &[&str]) -> String {
        let label = Self::label();
        let mut argv = vec![kind, "create", "--label", &label];
        for l in labels {
            argv.extend(["--label", l]);
        }
        argv.push(name);
        docker(&argv);
        name.to_string()
    }

    /// A Postgres container (password in a 0600 file, like a Docker secret) that is healthy.
    pub fn postgres(&self, what: &str, ws: &Workspace, password: &str) -> String {
        self.postgres_with(what, ws, password, &[])
    }

    /// [`Objects::postgres`] with extra `docker run` arguments.
    pub fn postgres_with(
        &self,
        what: &str,
        ws: &Workspace,
        password: &str,
        args: &[&str],
    ) -> String {
        let secret = ws.write(&format!("{what}-password"), password);
        let mount = format!("{}:/run/secrets/pg:ro", secret.display());
        let base = ["-v", &mount, "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pg"];
        let name = self.run(what, &[&base[..], args].concat(), POSTGRES, &[]);
        Self::wait_healthy(&name);
        name
    }

    /// A MariaDB container (root password in a file, like a Docker secret) that is healthy.
    pub fn mariadb(&self, what: &str, ws: &Workspace, password: &str) -> String {
        let secret = ws.write(&format!("{what}-password"), password);
        let mount = format!("{}:/run/secrets/db:ro", secret.display());
        let name = self.run(
            what,
            &[
                "-v",
                &mount,
                "-e",
                "MARIADB_ROOT_PASSWORD_FILE=/run/secrets/db",
            ],
            MARIADB,
            &[],
        );
        Self::wait_healthy(&name);
        name
    }

    fn wait_healthy(name: &str) {
        for _ in 0..150 {
            let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", name]);
            if health == "healthy" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "container {name} never became healthy:\n{}",
            docker(&["logs", name])
        );
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker").args(args).output();
        };
        for c in self.containers.borrow().iter() {
            quiet(&["rm", "-f", "-v", c]);
        }
        for v in self.volumes.borrow().iter() {
            quiet(&["volume", "rm", "-f", v]);
        }
        for n in self.networks.borrow().iter() {
            quiet(&["network", "rm", n]);
        }
        for i in self.images.borrow().iter() {
            quiet(&["rmi", i]);
        }
    }
}

/// Runs a playbook body (a header is added) with `--json`, in the workspace.
pub fn playbook(ws: &Workspace, body: &str) -> Outcome {
    playbook_with(ws, body, &[], &[])
}

/// Runs a playbook body with extra `runbook run` arguments and environment.
pub fn playbook_with(ws: &Workspace, body: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    ws.write("t.rhai", &(header("t", &[]) + body));
    let mut argv = vec!["run", "t.rhai", "--json"];
    argv.extend_from_slice(args);
    ws.run_env(&argv, env)
}

/// The playbook's final value from a successful `--json` run.
pub fn result(out: &Outcome) -> serde_json::Value {
    out.expect_code(0);
    out.json()["result"].clone()
}
