//! A small real stack for the backup, restore and disaster-recovery tests: a Postgres with a
//! database and rows, two busybox services with volumes holding owners, modes, a symlink, an
//! empty directory and a few MB of random data, all on one network. Every object carries the
//! stack label `runbook.stack=<name>` and the test label, and goes away with the fixture.

use super::docker::{docker, Objects, BUSYBOX};
use super::Workspace;

pub struct Stack {
    pub objects: Objects,
    pub name: String,
    pub db: String,
    pub web: String,
    pub worker: String,
    pub password: String,
}

/// An age identity made with the standard `age-keygen`: (identity file, public key file).
pub fn age_identity(ws: &Workspace) -> (String, String) {
    let identity = ws.join("keys/backup.key");
    std::fs::create_dir_all(identity.parent().unwrap()).unwrap();
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen (the test command installs age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&identity).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    let recipients = ws.write("keys/recipients.txt", &format!("{public}\n"));
    (
        identity.display().to_string(),
        recipients.display().to_string(),
    )
}

impl Stack {
    /// Builds the stack and plants its data.
    pub fn new(ws: &Workspace) -> Stack {
        let objects = Objects::new();
        let name = objects.name("shop");
        let member = format!("runbook.stack={name}");
        let network = objects.network("net", &[&member]);
        let password = format!("pg-{}-Secr3t", super::run_id());
        let files = objects.volume("files", &[&member]);
        let cache = objects.volume("cache", &[&member]);
        let pgdata = objects.volume("pgdata", &[&member]);
        let secret = ws.write("db-password", &password);
        let db = objects.run(
            "db",
            &[
                "--label",
                &member,
                "--network",
                &network,
                "-v",
                &format!("{pgdata}:/var/lib/postgresql/data"),
                "-v",
                &format!("{}:/run/secrets/pg:ro", secret.display()),
                "-e",
                "POSTGRES_PASSWORD_FILE=/run/secrets/pg",
                "-e",
                "POSTGRES_DB=shop",
            ],
            super::docker::POSTGRES,
            &[],
        );
        let web = objects.run(
            "web",
            &[
                "--label",
                &member,
                "--label",
                "runbook.order=2",
                "--network",
                &network,
                "-v",
                &format!("{files}:/data"),
                "-p",
                "127.0.0.1::80",
            ],
            BUSYBOX,
            &["sleep", "100000"],
        );
        let worker = objects.run(
            "worker",
            &[
                "--label",
                &member,
                "--label",
                "runbook.backup.stop=true",
                "--stop-timeout",
                "1",
                "--network",
                &network,
                "-v",
                &format!("{cache}:/cache"),
                "-v",
                &format!("{files}:/shared"),
            ],
            BUSYBOX,
            &["sleep", "100000"],
        );
        let stack = Stack {
            objects,
            name,
            db,
            web,
            worker,
            password,
        };
        stack.wait_healthy();
        stack.plant();
        stack
    }

    fn wait_healthy(&self) {
        for _ in 0..300 {
            if docker(&["inspect", "-f", "{{.State.Health.Status}}", &self.db]) == "healthy" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "{} never became healthy:\n{}",
            self.db,
            docker(&["logs", &self.db])
        );
    }

    fn plant(&self) {
        docker(&[
            "exec",
            &self.web,
            "sh",
            "-c",
            "mkdir -p /data/site/empty /data/private && echo hello > /data/site/index.html \
             && ln -s index.html /data/site/home.html && chown -R 1000:1000 /data/site \
             && echo key > /data/private/key && chmod 0600 /data/private/key && chmod 0750 /data/private \
             && dd if=/dev/urandom of=/data/blob bs=1M count=3 2>/dev/null",
        ]);
        docker(&[
            "exec",
            &self.worker,
            "sh",
            "-c",
            "echo warm > /cache/state && chown 33:33 /cache/state",
        ]);
        self.sql(
            "shop",
            "CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL); \
             INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 750) g; \
             CREATE TABLE customers (id int, name text); \
             INSERT INTO customers VALUES (1, 'Zoë'), (2, 'Åsa'), (3, 'O''Brien');",
        );
    }

    /// Runs SQL in the stack's database through the docker CLI (an independent witness).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        super::docker::psql(&self.db, database, sql)
    }

    /// Every file of both services' volumes: path, mode, owner, size, mtime and checksum,
    /// read through the docker CLI inside the containers.
    pub fn files(&self) -> String {
        let listing = |container: &str, dir: &str| {
            docker(&[
                "exec",
                container,
                "sh",
                "-c",
                &format!(
                    "cd {dir} && find . | sort | while read f; do \
                     stat -c '%n %a %u:%g %s %Y %F' \"$f\"; \
                     [ -f \"$f\" ] && [ ! -L \"$f\" ] && sha256sum \"$f\"; \
                     [ -L \"$f\" ] && readlink \"$f\"; true; done"
                ),
            ])
        };
        format!(
            "{}\n--\n{}",
            listing(&self.web, "/data"),
            listing(&self.worker, "/cache")
        )
    }

    /// Row counts of the tables the fixture made.
    pub fn counts(&self) -> String {
        self.sql(
            "shop",
            "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM customers) \
             || '/' || (SELECT string_agg(name, ',' ORDER BY id) FROM customers);",
        )
    }
}
