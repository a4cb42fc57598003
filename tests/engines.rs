//! Every database engine a stack runs, on the real Docker engine: MariaDB (and an image that
//! ships MySQL's client names), Redis, SQLite (online with sqlite3, stopped without it) and an
//! engine served by labels, next to Postgres. A drill on one stack of all of them brings every
//! count back and no password shows in `ps`, the output, the journal or the set; backup →
//! damage → restore brings the data back; a wrong count in a set is caught by deep
//! verification; a failing dump fails the backup and leaves no set that looks whole.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::docker::{
    docker, images_available, playbook_with, Objects, BUSYBOX, MARIADB, POSTGRES,
};
use common::{Outcome, Workspace};

const MYSQL: &str = "runbook-test/mysql:10.11";
const REDIS: &str = "runbook-test/redis:7";
const SQLITE: &str = "runbook-test/sqlite:3";
const PASSPHRASE: &str = "engines-test-passphrase";

/// The engine and every test image, or skip (in CI, fail).
fn ready() -> bool {
    images_available(&[BUSYBOX, POSTGRES, MARIADB, MYSQL, REDIS, SQLITE])
}

/// A stack of database containers on its own network, in a workspace.
struct Stack {
    ws: Workspace,
    objects: Objects,
    name: String,
    network: String,
}

impl Stack {
    fn new() -> Stack {
        let ws = Workspace::new();
        let objects = Objects::new();
        let name = objects.name("stack");
        let network = objects.network("net", &[&format!("runbook.stack={name}")]);
        Stack {
            ws,
            objects,
            name,
            network,
        }
    }

    /// Runs a container of the stack with a named volume at `mount`.
    fn container(
        &self,
        what: &str,
        mount: &str,
        args: &[&str],
        image: &str,
        command: &[&str],
    ) -> String {
        let volume = self.objects.volume(&format!("{what}-data"), &[]);
        let stack = format!("runbook.stack={}", self.name);
        let mount = format!("{volume}:{mount}");
        let base = ["--network", &self.network, "--label", &stack, "-v", &mount];
        self.objects
            .run(what, &[&base[..], args].concat(), image, command)
    }

    fn runbook(&self, args: &[&str]) -> Outcome {
        self.ws
            .run_env(args, &[("RUNBOOK_BACKUP_PASSPHRASE", PASSPHRASE)])
    }

    fn backup_dir(&self) -> String {
        self.ws.join("backups").display().to_string()
    }

    fn run(&self, playbook: &str, extra: &[&str]) -> Outcome {
        let stack = format!("stack={}", self.name);
        let dir = format!("backup_dir={}", self.backup_dir());
        let mut argv = vec!["run", playbook, "-p", &stack, "-p", &dir];
        argv.extend_from_slice(extra);
        self.runbook(&argv)
    }
}

/// Waits until a container's healthcheck passes.
fn healthy(name: &str) {
    for _ in 0..300 {
        if docker(&["inspect", "-f", "{{.State.Health.Status}}", name]) == "healthy" {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{name} never became healthy:\n{}", docker(&["logs", name]));
}

/// `docker exec` with stdin, its stdout; panics when it fails.
fn exec_in(container: &str, env: &[&str], argv: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut args = vec!["exec".to_string(), "-i".to_string()];
    for e in env {
        args.extend(["-e".to_string(), e.to_string()]);
    }
    args.push(container.to_string());
    args.extend(argv.iter().map(|a| a.to_string()));
    let mut child = std::process::Command::new("docker")
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker exec");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn maria_sql(container: &str, client: &str, password: &str, sql: &str) -> String {
    exec_in(
        container,
        &[&format!("MYSQL_PWD={password}")],
        &[client, "-uroot", "-N", "-B"],
        sql,
    )
}

fn redis_cli(container: &str, password: &str, input: &str) -> String {
    exec_in(
        container,
        &[&format!("REDISCLI_AUTH={password}")],
        &["redis-cli", "--no-auth-warning"],
        input,
    )
}

/// Every command line on the host, sampled every 20 ms while `body` runs.
fn sampling_ps<T>(body: impl FnOnce() -> T) -> (T, String) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(String::new()));
    let sampler = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(out) = std::process::Command::new("ps")
                    .args(["-eo", "args"])
                    .output()
                {
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&out.stdout));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let value = body();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    (value, seen)
}

/// Every byte of every file under `dir`, lossily as text.
fn all_bytes(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                text.push_str(&all_bytes(&path));
            } else if let Ok(bytes) = std::fs::read(&path) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

/// The label-defined engine of the tests: a key-value table in SQLite, dumped as SQL by its
/// labels' commands; its dump refuses to run without the password from the secrets facade.
fn label_engine_args(password_check: bool) -> Vec<String> {
    let check = if password_check {
        "test \"$RUNBOOK_PASSWORD\" = \"$(cat /data/expected-password)\" && "
    } else {
        ""
    };
    vec![
        "--label".into(),
        format!("runbook.backup.dump={check}sqlite3 /data/kv.db .dump"),
        "--label".into(),
        "runbook.backup.load=rm -f /data/kv.db && sqlite3 /data/kv.db".into(),
        "--label".into(),
        "runbook.backup.state=sqlite3 /data/kv.db 'SELECT count(*), sum(v) FROM kv'".into(),
        "--label".into(),
        "runbook.backup.data=/data".into(),
    ]
}

#[test]
fn a_drill_on_one_stack_of_every_engine_brings_every_count_back_and_no_password_shows() {
    if !ready() {
        return;
    }
    let stack = Stack::new();
    let pg_password = "pg-Secret-4471";
    let maria_password = "maria-Secret-5813";
    let redis_password = "redis-Secret-9021";
    let kv_password = "kv-Secret-3307";

    let pg_file = stack.ws.write("pg-password", pg_password);
    let pg_mount = format!("{}:/run/secrets/pg:ro", pg_file.display());
    let pg = stack.container(
        "pg",
        "/var/lib/postgresql/data",
        &[
            "-v",
            &pg_mount,
            "-e",
            "POSTGRES_PASSWORD_FILE=/run/secrets/pg",
        ],
        POSTGRES,
        &[],
    );
    let maria_env = format!("MARIADB_ROOT_PASSWORD={maria_password}");
    let maria = stack.container("maria", "/var/lib/mysql", &["-e", &maria_env], MARIADB, &[]);
    let redis_env = format!("REDIS_PASSWORD={redis_password}");
    let redis = stack.container("redis", "/data", &["-e", &redis_env], REDIS, &[]);
    let lite = stack.container(
        "lite",
        "/data",
        &["--label", "runbook.backup.sqlite=/data/app.db"],
        SQLITE,
        &[],
    );
    // The label engine's password lives in the local secret store only.
    let put = playbook_with(&stack.ws,
        &format!("secrets::put(secrets::open(#{{ backend: \"local\" }}), \"kv\", #{{ password: \"{kv_password}\" }});"),
        &[], &[]);
    put.expect_code(0);
    let mut kv_args = label_engine_args(true);
    kv_args.extend([
        "--label".into(),
        "runbook.backup.password=local:kv#password".into(),
    ]);
    let kv_args: Vec<&str> = kv_args.iter().map(String::as_str).collect();
    let kv = stack.container("kv", "/data", &kv_args, SQLITE, &[]);
    for c in [&pg, &maria, &redis] {
        healthy(c);
    }

    exec_in(
        &pg,
        &[&format!("PGPASSWORD={pg_password}")],
        &["psql", "-h", "127.0.0.1", "-U", "postgres", "-q"],
        "CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 250);",
    );
    maria_sql(&maria, "mariadb", maria_password,
        "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO shop.items VALUES (1, 'a'), (2, 'b'), (3, 'c'); \
         CREATE USER 'shopper'@'%' IDENTIFIED BY 'shopper-pw'; GRANT SELECT ON shop.* TO 'shopper'@'%';");
    // Written, not yet saved by Redis's own rules: only a snapshot taken now holds them.
    let sets: String = (0..500).map(|i| format!("SET key{i} value{i}\n")).collect();
    redis_cli(
        &redis,
        redis_password,
        &format!("{sets}SELECT 3\nSET other 1\n"),
    );
    exec_in(&lite, &[], &["sqlite3", "/data/app.db"],
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ann'), ('bob');");
    exec_in(
        &kv,
        &[],
        &["sh", "-c", "cat > /data/expected-password"],
        kv_password,
    );
    exec_in(
        &kv,
        &[],
        &["sqlite3", "/data/kv.db"],
        "CREATE TABLE kv (k TEXT, v INT); INSERT INTO kv VALUES ('a', 1), ('b', 2), ('c', 3);",
    );

    let (out, ps) = sampling_ps(|| stack.run("dr", &["--yes", "--json"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["outcome"], "success", "{}", out.all_output());

    // Checked independently of the drill's own comparison.
    assert_eq!(
        exec_in(
            &pg,
            &[&format!("PGPASSWORD={pg_password}")],
            &["psql", "-h", "127.0.0.1", "-U", "postgres", "-At"],
            "SELECT count(*) FROM orders;"
        ),
        "250"
    );
    assert_eq!(
        maria_sql(
            &maria,
            "mariadb",
            maria_password,
            "SELECT COUNT(*) FROM shop.items;"
        ),
        "3"
    );
    assert_eq!(
        exec_in(
            &maria,
            &["MYSQL_PWD=shopper-pw"],
            &["mariadb", "-ushopper", "-h127.0.0.1", "-N", "-B"],
            "SELECT name FROM shop.items WHERE id = 2;"
        ),
        "b",
        "users and grants came back"
    );
    assert_eq!(redis_cli(&redis, redis_password, "DBSIZE\n"), "500");
    assert_eq!(
        redis_cli(&redis, redis_password, "GET key499\n"),
        "value499"
    );
    assert_eq!(
        redis_cli(&redis, redis_password, "SELECT 3\nDBSIZE\n")
            .lines()
            .last(),
        Some("1")
    );
    assert_eq!(
        exec_in(
            &lite,
            &[],
            &["sqlite3", "/data/app.db"],
            "SELECT group_concat(name) FROM users;"
        ),
        "ann,bob"
    );
    assert_eq!(
        exec_in(
            &kv,
            &[],
            &["sqlite3", "/data/kv.db"],
            "SELECT count(*), sum(v) FROM kv;"
        ),
        "3|6"
    );

    let journal = stack.ws.journals();
    let set = all_bytes(&stack.ws.join("backups"));
    for password in [pg_password, maria_password, redis_password, kv_password] {
        assert!(!ps.contains(password), "{password} seen in ps");
        assert!(
            !out.all_output().contains(password),
            "{password} in the output"
        );
        assert!(!journal.contains(password), "{password} in the journal");
        assert!(!set.contains(password), "{password} in the set");
    }
    assert!(
        ps.contains("redis-cli")
            || ps.contains("mariadb")
            || ps.contains("pg_dump")
            || ps.contains("sqlite3"),
        "the sampler saw the dumps run"
    );
}

#[test]
fn backup_damage_restore_brings_every_engine_back() {
    if !ready() {
        return;
    }
    let stack = Stack::new();
    let mysql_password = "mysql-Secret-6620";
    let redis_password = "redis-Conf-Secret-1188";
    // MySQL's names: the image has mysql and mysqldump, no mariadb client.
    let mysql_env = format!("MYSQL_ROOT_PASSWORD={mysql_password}");
    let mysql = stack.container("mysql", "/var/lib/mysql", &["-e", &mysql_env], MYSQL, &[]);
    // Redis's password only in the config file it was started with.
    let conf = stack
        .ws
        .write("redis.conf", &format!("requirepass \"{redis_password}\"\n"));
    let conf_mount = format!("{}:/usr/local/etc/redis/redis.conf:ro", conf.display());
    let redis = stack.container(
        "redis",
        "/data",
        &["-v", &conf_mount, "--no-healthcheck"],
        REDIS,
        &[
            "redis-server",
            "/usr/local/etc/redis/redis.conf",
            "--dir",
            "/data",
        ],
    );
    // No sqlite3 in a busybox image: the container is stopped for the copy.
    let db = stack.ws.join("app.db");
    let sqlite = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);")
        .status();
    if !matches!(sqlite, Ok(s) if s.success()) {
        panic!("the host's sqlite3 is needed to make the test file (scripts/provision-docker installs it)");
    }
    let plain = stack.container(
        "plain",
        "/srv",
        &["--label", "runbook.backup.sqlite=/srv/app.db"],
        BUSYBOX,
        &["sleep", "100000"],
    );
    docker(&[
        "cp",
        &db.display().to_string(),
        &format!("{plain}:/srv/app.db"),
    ]);
    let original = std::fs::read(&db).unwrap();
    let kv_args = label_engine_args(false);
    let kv_args: Vec<&str> = kv_args.iter().map(String::as_str).collect();
    let kv = stack.container("kv", "/data", &kv_args, SQLITE, &[]);
    healthy(&mysql);
    for _ in 0..100 {
        if redis_cli(&redis, redis_password, "PING\n") == "PONG" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    maria_sql(&mysql, "mysql", mysql_password,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1), (2), (3), (4);");
    let sets: String = (0..200).map(|i| format!("SET k{i} v{i}\n")).collect();
    redis_cli(&redis, redis_password, &sets);
    exec_in(
        &kv,
        &[],
        &["sqlite3", "/data/kv.db"],
        "CREATE TABLE kv (k TEXT, v INT); INSERT INTO kv VALUES ('x', 10);",
    );

    let out = stack.run("backup", &[]);
    out.expect_code(0);
    assert!(
        out.all_output().contains("with mysqldump"),
        "{}",
        out.all_output()
    );
    assert!(
        out.all_output().contains("stopped for the copy"),
        "{}",
        out.all_output()
    );

    // Damage every engine.
    maria_sql(
        &mysql,
        "mysql",
        mysql_password,
        "DELETE FROM app.t; DROP TABLE app.t;",
    );
    redis_cli(&redis, redis_password, "FLUSHALL\n");
    exec_in(&plain, &[], &["sh", "-c", "echo garbage > /srv/app.db"], "");
    exec_in(&kv, &[], &["sqlite3", "/data/kv.db"], "DELETE FROM kv;");

    let out = stack.run("restore", &["--yes"]);
    out.expect_code(0);
    assert_eq!(
        maria_sql(
            &mysql,
            "mysql",
            mysql_password,
            "SELECT COUNT(*) FROM app.t;"
        ),
        "4"
    );
    assert_eq!(redis_cli(&redis, redis_password, "DBSIZE\n"), "200");
    assert_eq!(redis_cli(&redis, redis_password, "GET k7\n"), "v7");
    let back = stack.ws.join("back.db");
    docker(&[
        "cp",
        &format!("{plain}:/srv/app.db"),
        &back.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        original,
        "the SQLite file came back byte for byte"
    );
    assert_eq!(
        exec_in(
            &kv,
            &[],
            &["sqlite3", "/data/kv.db"],
            "SELECT k, v FROM kv;"
        ),
        "x|10"
    );
    for password in [mysql_password, redis_password] {
        assert!(!out.all_output().contains(password));
    }
}

/// Rewrites the manifest of the latest set with one count changed, authenticated under the
/// set's own key (as a set written by a bad backup would be).
fn plant_wrong_count(stack: &Stack, container: &str) {
    let body = format!(
        r#"
import "backup_set" as backup_set;
let dir = backup_set::resolve("{dir}", "{stack}", ());
let operator = #{{ passphrase: env::secret("RUNBOOK_BACKUP_PASSPHRASE") }};
let key = backup::open_set_key(dir, operator);
let set = backup::open_set(dir, operator);
let manifest = set.manifest;
let databases = [];
for record in manifest.metadata.databases {{
    if record.container == "{container}" {{
        let group = record.counts.keys()[0];
        let item = record.counts[group].keys()[0];
        let was = record.counts[group][item];
        record.counts[group][item] = if type_of(was) == "string" {{ was + "0" }} else {{ was + 1 }};
    }}
    databases.push(record);
}}
manifest.metadata.databases = databases;
manifest::write(fs::join(dir, "manifest.json"), #{{ artifacts: manifest.artifacts, metadata: manifest.metadata }}, key);
"#,
        dir = stack.backup_dir(),
        stack = stack.name
    );
    playbook_with(
        &stack.ws,
        &body,
        &[],
        &[("RUNBOOK_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .expect_code(0);
}

#[test]
fn deep_verification_catches_a_wrong_count_of_every_engine() {
    if !ready() {
        return;
    }
    let stack = Stack::new();
    let maria = stack.container(
        "maria",
        "/var/lib/mysql",
        &["-e", "MARIADB_ROOT_PASSWORD=verify-pw"],
        MARIADB,
        &[],
    );
    let redis = stack.container("redis", "/data", &[], REDIS, &[]);
    let lite = stack.container(
        "lite",
        "/data",
        &["--label", "runbook.backup.sqlite=/data/app.db"],
        SQLITE,
        &[],
    );
    let kv_args = label_engine_args(false);
    let kv_args: Vec<&str> = kv_args.iter().map(String::as_str).collect();
    let kv = stack.container("kv", "/data", &kv_args, SQLITE, &[]);
    healthy(&maria);
    healthy(&redis);
    maria_sql(
        &maria,
        "mariadb",
        "verify-pw",
        "CREATE DATABASE d; CREATE TABLE d.t (x INT); INSERT INTO d.t VALUES (1), (2);",
    );
    redis_cli(&redis, "", "SET a 1\nSET b 2\n");
    exec_in(
        &lite,
        &[],
        &["sqlite3", "/data/app.db"],
        "CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    );
    exec_in(
        &kv,
        &[],
        &["sqlite3", "/data/kv.db"],
        "CREATE TABLE kv (k TEXT, v INT); INSERT INTO kv VALUES ('a', 1);",
    );
    stack.run("backup", &[]).expect_code(0);
    stack
        .run("verify-backup", &["-p", "deep=true"])
        .expect_code(0);

    for container in [&maria, &redis, &lite, &kv] {
        plant_wrong_count(&stack, container);
        let out = stack.run("verify-backup", &["-p", "deep=true"]);
        assert_ne!(
            out.code,
            0,
            "a wrong count of {container} passed:\n{}",
            out.all_output()
        );
        assert!(
            out.all_output()
                .contains(&format!("the dump of {container}")),
            "{}",
            out.all_output()
        );
        // Back to the true counts for the next engine: a fresh set.
        stack.run("backup", &[]).expect_code(0);
    }
    assert_eq!(
        docker(&["ps", "-aq", "--filter", "label=runbook.verify"]),
        "",
        "no throwaway container is left"
    );
}

#[test]
fn a_failing_dump_fails_the_backup_and_leaves_no_set_that_looks_whole() {
    if !ready() {
        return;
    }
    let stack = Stack::new();
    stack.container(
        "broken",
        "/data",
        &[
            "--label",
            "runbook.backup.dump=echo 'half a dump'; exit 3",
            "--label",
            "runbook.backup.load=cat >/dev/null",
        ],
        BUSYBOX,
        &["sleep", "100000"],
    );
    let out = stack.run("backup", &[]);
    assert_ne!(out.code, 0);
    assert!(
        out.all_output().contains("exited with 3"),
        "{}",
        out.all_output()
    );
    let sets = stack.ws.join("backups").join(&stack.name);
    let whole: Vec<_> = std::fs::read_dir(&sets)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(whole.is_empty(), "a set that looks whole: {whole:?}");
    let verify = stack.run("verify-backup", &[]);
    assert_ne!(verify.code, 0);
    assert!(
        verify.all_output().contains("no complete backup set"),
        "{}",
        verify.all_output()
    );
}

#[test]
fn migrate_uses_the_mysql_client_of_a_mysql_image() {
    if !ready() {
        return;
    }
    let stack = Stack::new();
    let mysql = stack.container(
        "mysql",
        "/var/lib/mysql",
        &["-e", "MYSQL_ROOT_PASSWORD=migrate-pw"],
        MYSQL,
        &[],
    );
    healthy(&mysql);
    maria_sql(&mysql, "mysql", "migrate-pw", "CREATE DATABASE app;");
    stack.ws.write(
        "migrations/V1__items.sql",
        "CREATE TABLE items (id INT PRIMARY KEY);\nINSERT INTO items VALUES (1), (2);\n",
    );
    let container = format!("container={mysql}");
    let dir = format!("dir={}", stack.ws.join("migrations").display());
    let out = stack.ws.run_env(
        &[
            "run",
            "migrate",
            "-p",
            &container,
            "-p",
            "database=app",
            "-p",
            &dir,
            "-p",
            "password=env:MIGRATE_PW",
        ],
        &[("MIGRATE_PW", "migrate-pw")],
    );
    out.expect_code(0);
    assert_eq!(
        maria_sql(
            &mysql,
            "mysql",
            "migrate-pw",
            "SELECT COUNT(*) FROM app.items;"
        ),
        "2"
    );
    assert!(!out.all_output().contains("migrate-pw"));
}
