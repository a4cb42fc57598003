//! The migrate playbook against a real Postgres and a real MariaDB container. One server per
//! engine is shared by the tests (each asks for the password over TCP, 127.0.0.1 included, so
//! the password is really used) and removed when the test process exits; each test migrates
//! its own database.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::docker::{self, Objects};
use common::{run_id, Outcome, Workspace};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PASSWORD_VAR: &str = "MIGRATE_TEST_PASSWORD";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Engine {
    Postgres,
    MariaDb,
}

impl Engine {
    /// The client runbook runs in the container.
    fn client(self) -> &'static str {
        match self {
            Engine::Postgres => "psql",
            Engine::MariaDb => "mariadb",
        }
    }

    /// Restricts information_schema to the current database's tables.
    fn here(self) -> &'static str {
        match self {
            Engine::Postgres => "table_schema = current_schema()",
            Engine::MariaDb => "table_schema = DATABASE()",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A database server the tests share; removed when the test process exits.
struct Server {
    container: String,
    password: String,
    _objects: Mutex<Objects>,
    _ws: Workspace,
}

/// The servers, one per engine, started by the first test that needs one.
static SERVERS: [Mutex<Option<Arc<Server>>>; 2] = [Mutex::new(None), Mutex::new(None)];

/// At exit (also after failed tests): the servers go, with their containers.
extern "C" fn remove_servers() {
    for slot in &SERVERS {
        drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

fn server(engine: Engine) -> Option<Arc<Server>> {
    let images: &[&str] = match engine {
        Engine::Postgres => &[docker::POSTGRES],
        Engine::MariaDb => &[docker::MARIADB],
    };
    if !docker::images_available(images) {
        return None;
    }
    let mut slot = SERVERS[engine.index()]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(server) = slot.as_ref() {
        return Some(server.clone());
    }
    static AT_EXIT: Once = Once::new();
    // SAFETY: registers a plain function with no arguments, once.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(remove_servers);
    });
    let ws = Workspace::new();
    let objects = Objects::new();
    // Non-ASCII, and no character a shell or an options file would read specially.
    let password = format!("pw-Ä-{}-{:08x}", run_id(), rand::random::<u32>());
    let container = match engine {
        // initdb trusts 127.0.0.1 by default: ask for the password there too.
        Engine::Postgres => objects.postgres_with(
            "migrate-pg",
            &ws,
            &password,
            &["-e", "POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256"],
        ),
        Engine::MariaDb => objects.mariadb("migrate-mariadb", &ws, &password),
    };
    let server = Arc::new(Server {
        container,
        password,
        _objects: Mutex::new(objects),
        _ws: ws,
    });
    *slot = Some(server.clone());
    Some(server)
}

/// One test's database on a shared server, and a workspace with its `migrations/` folder.
struct Db {
    server: Arc<Server>,
    engine: Engine,
    name: String,
    ws: Workspace,
}

impl Db {
    /// A fresh database named after the test.
    fn new(engine: Engine, name: &str) -> Option<Db> {
        let server = server(engine)?;
        let db = Db {
            server,
            engine,
            name: name.to_string(),
            ws: Workspace::new(),
        };
        db.client(None, &format!("DROP DATABASE IF EXISTS {name}"));
        db.client(None, &format!("CREATE DATABASE {name}"));
        Some(db)
    }

    /// Runs SQL in this database as the superuser through the docker CLI, a witness
    /// independent of runbook; returns the client's unaligned output, one row a line.
    fn sql(&self, sql: &str) -> String {
        self.client(Some(&self.name), sql)
    }

    fn client(&self, database: Option<&str>, sql: &str) -> String {
        match self.engine {
            Engine::Postgres => {
                docker::psql(&self.server.container, database.unwrap_or("postgres"), sql)
            }
            Engine::MariaDb => {
                // `-e MYSQL_PWD` without a value: the docker CLI passes on its own environment,
                // so the password stays off its command line too.
                let mut argv = vec![
                    "exec",
                    "-e",
                    "MYSQL_PWD",
                    &self.server.container,
                    "mariadb",
                    "-uroot",
                    "-N",
                    "-B",
                    "-r",
                    "--default-character-set=utf8mb4",
                ];
                if let Some(database) = database {
                    argv.extend(["-D", database]);
                }
                argv.extend(["-e", sql]);
                let out = Command::new("docker")
                    .args(&argv)
                    .env("MYSQL_PWD", &self.server.password)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "mariadb failed on {sql}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        }
    }

    fn file(&self, name: &str, sql: &str) {
        self.ws.write(&format!("migrations/{name}"), sql);
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.ws.join(&format!("migrations/{name}"))).unwrap();
    }

    /// `runbook run migrate` on this database with the password from the environment (the
    /// engine is left for the playbook to find out from the container).
    fn command(&self, extra: &[&str]) -> Command {
        let container = format!("container={}", self.server.container);
        let database = format!("database={}", self.name);
        let password = format!("password=env:{PASSWORD_VAR}");
        let mut args = vec!["run", "migrate", "-p", &container, "-p", &database];
        args.extend(["-p", "dir=migrations", "-p", &password]);
        args.extend_from_slice(extra);
        let mut cmd = self.ws.command(&args);
        cmd.env(PASSWORD_VAR, &self.server.password);
        cmd
    }

    fn migrate(&self, extra: &[&str]) -> Outcome {
        let out = self.command(extra).output().expect("run runbook");
        let out = Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !out.all_output().contains(&self.server.password),
            "the password leaked into the output:\n{}",
            out.all_output()
        );
        out
    }

    /// A `--json` run with `action=ACTION` that must succeed; its result.
    fn action(&self, action: &str, extra: &[&str]) -> Value {
        let action = format!("action={action}");
        let out = self.migrate(&[&["--json", "-p", &action], extra].concat());
        out.expect_code(0);
        out.json()["result"].clone()
    }

    /// A `--json` run with `action=ACTION` that must fail; its error message.
    fn failing(&self, action: &str, extra: &[&str]) -> String {
        let action = format!("action={action}");
        let out = self.migrate(&[&["--json", "-p", &action], extra].concat());
        out.expect_code(1);
        out.json()["error"].as_str().unwrap_or_default().to_string()
    }

    /// The scripts a successful `migrate` applied.
    fn applied(&self, extra: &[&str]) -> Vec<String> {
        strings(&self.action("migrate", extra)["applied"])
    }

    /// The history: `version type script success` (`t`/`f`), one line per row, in order.
    fn history(&self) -> Vec<String> {
        self.sql(
            "SELECT concat_ws(' ', coalesce(version, '-'), type, script, \
             CASE WHEN success THEN 't' ELSE 'f' END) FROM runbook_schema_history ORDER BY installed_rank",
        )
        .lines()
        .map(String::from)
        .collect()
    }

    /// True when a table or view of that name exists in this database.
    fn has_table(&self, table: &str) -> bool {
        self.sql(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE {} AND table_name = '{table}'",
            self.engine.here()
        )) == "1"
    }

    /// The columns of a table or view, in order.
    fn columns(&self, table: &str) -> Vec<String> {
        self.sql(&format!(
            "SELECT column_name FROM information_schema.columns WHERE {} AND table_name = '{table}' \
             ORDER BY ordinal_position",
            self.engine.here()
        ))
        .lines()
        .map(String::from)
        .collect()
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Migrations both databases read the same way.
const V1: &str = "CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL);\n";
const V1_9: &str = "CREATE TABLE orders (id int PRIMARY KEY, customer int,\n  FOREIGN KEY (customer) REFERENCES customers (id));\n";
const V1_10: &str = "ALTER TABLE orders ADD COLUMN total numeric(10, 2) NOT NULL DEFAULT 0;\n";
const V2: &str = "CREATE INDEX orders_total ON orders (total);\n";

/// Runs a scenario on both engines, each as its own test.
macro_rules! on_both_engines {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn postgres() {
                super::$scenario(super::Engine::Postgres);
            }

            #[test]
            fn mariadb() {
                super::$scenario(super::Engine::MariaDb);
            }
        }
    };
}

on_both_engines!(a_clean_apply_in_numeric_order_then_a_second_migrate_applies_nothing);
fn a_clean_apply_in_numeric_order_then_a_second_migrate_applies_nothing(engine: Engine) {
    let Some(db) = Db::new(engine, "clean_apply") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    db.file("V1.10__order_totals.sql", V1_10);
    db.file("V1.9__orders.sql", V1_9);
    db.file("V2__order_index.sql", V2);
    db.file(
        "R__customer_view.sql",
        "CREATE OR REPLACE VIEW customer_names AS SELECT name FROM customers;\n",
    );

    let first = db.action("migrate", &[]);
    assert_eq!(
        strings(&first["applied"]),
        [
            "V1__customers.sql",
            "V1.9__orders.sql",
            "V1.10__order_totals.sql",
            "V2__order_index.sql",
            "R__customer_view.sql"
        ],
        "1.10 comes after 1.9, repeatables after the versioned ones"
    );
    assert_eq!(first["latest"], "2");
    assert_eq!(db.columns("orders"), ["id", "customer", "total"]);
    assert!(db.has_table("customer_names"));
    let recorded = db.sql(
        "SELECT concat_ws(' ', version, description, type, checksum, \
         CASE WHEN installed_by <> '' AND execution_time >= 0 AND installed_on > now() - INTERVAL '5' MINUTE \
         AND success THEN 'recorded' END) FROM runbook_schema_history WHERE script = 'V1.9__orders.sql'",
    );
    assert_eq!(
        recorded,
        format!("1.9 orders versioned {} recorded", sha256_hex(V1_9)),
        "the history records version, description, type, checksum, who, how long, when, success"
    );

    let history = db.history();
    let second = db.action("migrate", &[]);
    assert_eq!(strings(&second["applied"]), Vec::<String>::new());
    assert_eq!(second["latest"], "2");
    assert_eq!(db.history(), history, "a second migrate records nothing");

    let status = db.action("status", &[]);
    assert_eq!(status["applied"], 4);
    assert_eq!(status["pending"], json!([]));
    assert_eq!(status["latest"], "2");
}

on_both_engines!(
    validate_and_migrate_refuse_an_edited_applied_file_a_missing_one_and_a_late_version
);
fn validate_and_migrate_refuse_an_edited_applied_file_a_missing_one_and_a_late_version(
    engine: Engine,
) {
    let Some(db) = Db::new(engine, "validate_refusals") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    db.file("V2__orders.sql", V1_9);
    db.action("migrate", &[]);
    assert_eq!(db.action("validate", &[])["pending"], 0);

    db.file(
        "V1__customers.sql",
        "CREATE TABLE customers (id int PRIMARY KEY, name varchar(200) NOT NULL);\n",
    );
    db.file("V3__order_totals.sql", V1_10);
    for action in ["validate", "migrate"] {
        let refused = db.failing(action, &[]);
        assert!(
            refused.contains("V1__customers.sql was changed after it was applied"),
            "{action}: {refused}"
        );
    }
    assert!(
        !db.columns("orders").contains(&"total".to_string()),
        "migrate applied nothing"
    );

    // An edit made on purpose: repair accepts the file's new checksum.
    db.action("repair", &[]);
    db.action("validate", &[]);

    db.remove("V2__orders.sql");
    let refused = db.failing("validate", &[]);
    assert!(
        refused.contains("version 2 (V2__orders.sql) was applied") && refused.contains("missing"),
        "{refused}"
    );
    db.file("V2__orders.sql", V1_9);

    db.action("migrate", &[]);
    db.file("V2.5__late.sql", "CREATE TABLE late (id int);\n");
    let refused = db.failing("validate", &[]);
    assert!(
        refused.contains("V2.5__late.sql is pending but version 3 is already applied"),
        "{refused}"
    );
    assert_eq!(db.applied(&["-p", "out_of_order=true"]), ["V2.5__late.sql"]);
    assert!(db.has_table("late"));
}

on_both_engines!(a_failing_migration_is_recorded_and_stops_the_run_at_its_file_and_line);
fn a_failing_migration_is_recorded_and_stops_the_run_at_its_file_and_line(engine: Engine) {
    let Some(db) = Db::new(engine, "failing_migration") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    let broken = "-- orders, and their lines\nCREATE TABLE orders (id int PRIMARY KEY);\n\n\
                  CREATE TABLE order_lines (\n  id int,\n\n  quantity nosuchtype\n);\n";
    db.file("V2__orders.sql", broken);
    db.file("V3__order_totals.sql", V1_10);

    let error = db.failing("migrate", &[]);
    let expected = match engine {
        // Postgres points at the type; MariaDB names the statement, which starts on line 4.
        Engine::Postgres => r#"V2__orders.sql:7: ERROR: type "nosuchtype" does not exist"#,
        Engine::MariaDb => "V2__orders.sql:4: ERROR 4161 (HY000): Unknown data type: 'nosuchtype'",
    };
    assert!(
        error.contains(expected),
        "the database's message at the file and line: {error}"
    );
    assert!(db.has_table("customers"), "V1 stays applied");
    assert_eq!(
        db.history(),
        [
            "1 versioned V1__customers.sql t",
            "2 versioned V2__orders.sql f"
        ],
        "the failure is recorded and V3 was never tried"
    );
    let fixed = broken.replace("nosuchtype", "int");
    match engine {
        Engine::Postgres => {
            assert!(
                !db.has_table("orders"),
                "V2's first statement was rolled back"
            );
            let status = db.action("status", &[]);
            assert_eq!(
                strings(&status["pending"]),
                ["V2__orders.sql", "V3__order_totals.sql"]
            );
            assert_eq!(strings(&status["failed"]), ["V2__orders.sql"]);
            // Rolled back means nothing to repair: the fixed file applies on the next run.
            db.file("V2__orders.sql", &fixed);
        }
        Engine::MariaDb => {
            assert!(
                db.has_table("orders"),
                "MariaDB committed V2's first statement by itself"
            );
            let refused = db.failing("migrate", &[]);
            assert!(
                refused.contains("V2__orders.sql failed on")
                    && refused.contains("may be half applied"),
                "{refused}"
            );
            // The operator looks, makes the file fit what is there, and repairs.
            db.file(
                "V2__orders.sql",
                &fixed.replace("CREATE TABLE orders", "CREATE TABLE IF NOT EXISTS orders"),
            );
            db.action("repair", &[]);
        }
    }
    assert_eq!(db.applied(&[]), ["V2__orders.sql", "V3__order_totals.sql"]);
    assert!(db.has_table("order_lines"));
}

on_both_engines!(undo_runs_the_latest_versions_u_file_after_confirmation);
fn undo_runs_the_latest_versions_u_file_after_confirmation(engine: Engine) {
    let Some(db) = Db::new(engine, "undo_latest") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    db.file("V2__orders.sql", V1_9);
    db.file("U2__orders.sql", "DROP TABLE orders;\n");
    db.action("migrate", &[]);

    let unconfirmed = db.migrate(&["-p", "action=undo"]);
    unconfirmed.expect_code(3);
    assert!(
        db.has_table("orders"),
        "nothing undone without confirmation"
    );

    let undone = db.action("undo", &["--yes"]);
    assert_eq!(undone["undone"], "2");
    assert_eq!(undone["script"], "U2__orders.sql");
    assert!(!db.has_table("orders") && db.has_table("customers"));
    assert_eq!(
        db.history()[2..],
        ["2 undo U2__orders.sql t"],
        "the undo is recorded"
    );
    let status = db.action("status", &[]);
    assert_eq!(status["latest"], "1");
    assert_eq!(strings(&status["pending"]), ["V2__orders.sql"]);

    // Version 1 has no U file: undo says so and changes nothing.
    let refused = db.failing("undo", &["--yes"]);
    assert!(
        refused.contains("version 1 has no undo file (U1__<description>.sql)"),
        "{refused}"
    );
    assert!(db.has_table("customers"));

    assert_eq!(db.applied(&[]), ["V2__orders.sql"]);
    assert!(db.has_table("orders"));
}

on_both_engines!(a_changed_repeatable_is_re_applied_after_the_versioned_ones);
fn a_changed_repeatable_is_re_applied_after_the_versioned_ones(engine: Engine) {
    let Some(db) = Db::new(engine, "repeatable") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    db.file(
        "R__customer_view.sql",
        "CREATE OR REPLACE VIEW customer_names AS SELECT name FROM customers;\n",
    );
    db.action("migrate", &[]);

    db.file(
        "V2__email.sql",
        "ALTER TABLE customers ADD COLUMN email varchar(200);\n",
    );
    db.file(
        "R__customer_view.sql",
        "CREATE OR REPLACE VIEW customer_names AS SELECT name, email FROM customers;\n",
    );
    assert_eq!(
        db.applied(&[]),
        ["V2__email.sql", "R__customer_view.sql"],
        "the view needs the column V2 adds: it runs after"
    );
    assert_eq!(db.columns("customer_names"), ["name", "email"]);
    assert_eq!(
        db.applied(&[]),
        Vec::<String>::new(),
        "an unchanged repeatable is not re-applied"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM runbook_schema_history WHERE type = 'repeatable'"),
        "2"
    );
}

/// Holds the migration lock of `db` from a session of its own, so runs queue behind it.
struct LockHolder {
    session: std::process::Child,
}

impl LockHolder {
    /// The same lock runbook derives from the history table's name.
    fn take(db: &Db) -> LockHolder {
        let (sql, mut argv): (String, Vec<&str>) = match db.engine {
            Engine::Postgres => (
                format!(
                    "SELECT pg_advisory_lock({}); SELECT pg_sleep(60);",
                    pg_lock_key()
                ),
                vec!["psql", "-X", "-U", "postgres", "-d", &db.name, "-c"],
            ),
            Engine::MariaDb => (
                format!(
                    "SELECT GET_LOCK({}, 60); SELECT SLEEP(60);",
                    MARIADB_LOCK_NAME
                ),
                vec!["mariadb", "-uroot", "-D", &db.name, "-e"],
            ),
        };
        argv.push(&sql);
        let session = Command::new("docker")
            .args(["exec", "-e", "MYSQL_PWD", &db.server.container])
            .args(&argv)
            .env("MYSQL_PWD", &db.server.password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let holder = LockHolder { session };
        wait_until("the test holds the lock", || holder.waiting(db).is_some());
        holder
    }

    /// How many sessions wait for the lock, once it is held.
    fn waiting(&self, db: &Db) -> Option<usize> {
        let (held, waiting) = match db.engine {
            Engine::Postgres => {
                let count = |granted: bool| {
                    db.sql(&format!(
                        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                         WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.granted = {granted}"
                    ))
                };
                (count(true) == "1", count(false))
            }
            Engine::MariaDb => (
                db.sql(&format!("SELECT IS_USED_LOCK({MARIADB_LOCK_NAME}) IS NOT NULL")) == "1",
                db.sql(&format!(
                    "SELECT count(*) FROM information_schema.processlist WHERE db = '{}' AND state = 'User lock'",
                    db.name
                )),
            ),
        };
        held.then(|| waiting.parse().unwrap())
    }

    /// Ends the holding session, which releases the lock.
    fn release(mut self, db: &Db) {
        match db.engine {
            Engine::Postgres => {
                db.sql(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                     WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.granted",
                );
            }
            Engine::MariaDb => {
                let id = db.sql(&format!("SELECT IS_USED_LOCK({MARIADB_LOCK_NAME})"));
                db.sql(&format!("KILL {id}"));
            }
        }
        let _ = self.session.wait();
    }
}

fn pg_lock_key() -> &'static str {
    "('x' || left(encode(sha256('runbook_schema_history'), 'hex'), 16))::bit(64)::bigint"
}

const MARIADB_LOCK_NAME: &str =
    "CONCAT('runbook-', LEFT(SHA2(CONCAT(DATABASE(), '.', 'runbook_schema_history'), 256), 40))";

on_both_engines!(two_concurrent_runs_produce_one_history);
fn two_concurrent_runs_produce_one_history(engine: Engine) {
    let Some(db) = Db::new(engine, "concurrent") else {
        return;
    };
    let scripts: Vec<String> = (1..=5)
        .map(|i| {
            let script = format!("V{i}__step_{i}.sql");
            db.file(&script, &format!("CREATE TABLE step_{i} (id int);\n"));
            script
        })
        .collect();

    // Both runs read the history and wait at the lock before either applies anything.
    let holder = LockHolder::take(&db);
    let runs: Vec<_> = (0..2)
        .map(|_| {
            db.command(&["--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until("both runs wait at the lock", || {
        holder.waiting(&db) == Some(2)
    });
    holder.release(&db);

    let mut applied = Vec::new();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result = serde_json::from_str::<Value>(&text).unwrap()["result"].clone();
        let mine = strings(&result["applied"]);
        let mut seen = [mine.clone(), strings(&result["skipped"])].concat();
        seen.sort();
        assert_eq!(seen, scripts, "each run applied or skipped every migration");
        applied.extend(mine);
    }
    applied.sort();
    assert_eq!(applied, scripts, "every migration applied exactly once");
    let versioned: Vec<String> = db
        .sql("SELECT version FROM runbook_schema_history WHERE type = 'versioned' ORDER BY installed_rank")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        versioned,
        ["1", "2", "3", "4", "5"],
        "one history, in order"
    );
}

on_both_engines!(baseline_on_a_database_that_already_has_its_tables);
fn baseline_on_a_database_that_already_has_its_tables(engine: Engine) {
    let Some(db) = Db::new(engine, "baseline") else {
        return;
    };
    // The schema of versions 1 and 2, created before runbook managed this database.
    db.sql(&format!(
        "{V1}{V1_9}INSERT INTO customers (id, name) VALUES (1, 'kept');"
    ));
    db.file("V1__customers.sql", V1);
    db.file("V2__orders.sql", V1_9);
    db.file("V3__order_totals.sql", V1_10);

    let refused = db.failing("migrate", &[]);
    assert!(
        refused.contains("V1__customers.sql:1: ") && refused.contains("already exists"),
        "without a baseline V1 runs again: {refused}"
    );
    assert_eq!(
        db.action("baseline", &["-p", "baseline_version=2"]),
        json!("baselined at 2")
    );
    let refused = db.failing("undo", &["--yes"]);
    assert!(refused.contains("version 2 is the baseline"), "{refused}");
    let applied = db.action("migrate", &[]);
    assert_eq!(strings(&applied["applied"]), ["V3__order_totals.sql"]);
    assert_eq!(applied["latest"], "3");
    assert_eq!(db.sql("SELECT name FROM customers"), "kept");
    let refused = db.failing("baseline", &["-p", "baseline_version=3"]);
    assert!(refused.contains("cannot baseline"), "{refused}");
}

on_both_engines!(a_dry_run_prints_the_sql_it_would_run_and_changes_nothing);
fn a_dry_run_prints_the_sql_it_would_run_and_changes_nothing(engine: Engine) {
    let Some(db) = Db::new(engine, "dry_run") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    let out = db.migrate(&["--dry-run"]);
    out.expect_code(0);
    let header = format!(
        "-- V1__customers.sql: the SQL this run would send to {}",
        engine.client()
    );
    assert!(
        out.stdout.contains(&header) && out.stdout.contains(V1.trim()),
        "{}",
        out.stdout
    );
    assert!(
        !db.has_table("runbook_schema_history") && !db.has_table("customers"),
        "a dry run on a new database creates nothing"
    );

    db.action("migrate", &[]);
    db.file("V2__orders.sql", V1_9);
    let history = db.history();
    let out = db.migrate(&["--dry-run", "--json"]);
    let report = out.json();
    out.expect_code(0);
    assert_eq!(report["result"]["would_apply"], json!(["V2__orders.sql"]));
    assert_eq!(report["result"]["applied"], json!([]));
    assert!(out.stderr.contains(V1_9.trim()), "{}", out.stderr);
    assert_eq!(db.history(), history);
    assert!(!db.has_table("orders"));
}

on_both_engines!(the_password_never_appears_in_output_journal_or_the_process_list);
fn the_password_never_appears_in_output_journal_or_the_process_list(engine: Engine) {
    let Some(db) = Db::new(engine, "password") else {
        return;
    };
    let password = db.server.password.clone();
    let sleep = match engine {
        Engine::Postgres => "SELECT pg_sleep(3);",
        Engine::MariaDb => "DO SLEEP(3);",
    };
    db.file(
        "V1__slow.sql",
        &format!("CREATE TABLE slow (id int);\n{sleep}\n"),
    );

    // While the migration runs, look where someone on the host would: ps, and the command
    // lines of the container's processes as the docker CLI shows them.
    let container = db.server.container.clone();
    let client = engine.client();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ps = Command::new("ps").args(["auxww"]).output().unwrap();
            let top = Command::new("docker")
                .args(["top", &container, "-eo", "pid,args"])
                .output()
                .unwrap();
            let top = String::from_utf8_lossy(&top.stdout).into_owned();
            let running = top.lines().any(|l| l.contains(&format!(" {client} ")));
            seen.push((String::from_utf8_lossy(&ps.stdout).into_owned(), top));
            if running && seen.len() > 10 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    });
    let out = db.migrate(&["--json"]);
    let seen = watcher.join().unwrap();
    out.expect_code(0);
    assert!(db.has_table("slow"));

    let command_line = match engine {
        Engine::Postgres => {
            "psql -X -q -At -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d password -f -"
        }
        Engine::MariaDb => "mariadb --defaults-extra-file=/tmp/runbook-client-",
    };
    assert!(
        seen.iter().any(|(_, top)| top.contains(command_line)),
        "the watcher saw the client's command line: {:?}",
        seen.last()
    );
    for (ps, top) in &seen {
        assert!(!ps.contains(&password), "password in ps:\n{ps}");
        assert!(!top.contains(&password), "password in docker top:\n{top}");
    }
    assert!(!out.all_output().contains(&password));
    let journals = db.ws.journals();
    assert!(!journals.is_empty() && !journals.contains(&password));
    if engine == Engine::MariaDb {
        let left = docker::docker(&["exec", &db.server.container, "ls", "/tmp"]);
        assert!(
            !left.contains("runbook-client-"),
            "the credentials files are removed after each exec: {left}"
        );
    }

    // The server really checks it: the wrong password is refused.
    let wrong = db
        .command(&["-p", "action=status"])
        .env(PASSWORD_VAR, "not-the-password")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let refusal = match engine {
        Engine::Postgres => "password authentication failed",
        Engine::MariaDb => "Access denied for user 'root'",
    };
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(refusal));
}

#[test]
fn postgres_real_world_sql_dollar_quotes_semicolons_non_ascii_and_create_index_concurrently() {
    let Some(db) = Db::new(Engine::Postgres, "real_world") else {
        return;
    };
    let v1 = r#"-- Customers; the first table (a semicolon in a comment).
/* A block comment; with a semicolon /* nested; too */ still a comment */
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO customers (name, note) VALUES
  ('Zoë Ørsted', 'semi; colon'),
  ('日本語のお客様', E'tab\there; and ''quotes'''),
  ('Ἀθηνᾶ ✓', $q$a $$ inside; a dollar quote$q$);

CREATE FUNCTION greeting(who text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  suffix text := '; welcome';
BEGIN
  RETURN 'Grüß dich, ' || who || suffix;
END;
$$;
"#;
    db.file("V1__customers.sql", v1);
    let concurrently = "CREATE INDEX CONCURRENTLY customers_name ON customers (name);\n";
    db.file("V2__name_index.sql", concurrently);

    let error = db.failing("migrate", &[]);
    assert!(
        error.contains("V2__name_index.sql:1: ERROR: CREATE INDEX CONCURRENTLY cannot run inside a transaction block")
            && error.contains("add the line `-- runbook:no-transaction`"),
        "{error}"
    );
    db.file(
        "V2__name_index.sql",
        &format!("-- runbook:no-transaction\n{concurrently}"),
    );
    assert_eq!(db.applied(&[]), ["V2__name_index.sql"]);

    assert_eq!(
        db.sql("SELECT string_agg(name || '|' || note, E'\\n' ORDER BY id) FROM customers"),
        "Zoë Ørsted|semi; colon\n日本語のお客様|tab\there; and 'quotes'\nἈθηνᾶ ✓|a $$ inside; a dollar quote",
        "the text arrived byte for byte"
    );
    assert_eq!(db.sql("SELECT greeting('Zoë')"), "Grüß dich, Zoë; welcome");
    assert_eq!(
        db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'customers_name'::regclass"),
        "t",
        "the concurrent index was built and is valid"
    );
    assert_eq!(
        db.history()[1..],
        [
            "2 versioned V2__name_index.sql f",
            "2 versioned V2__name_index.sql t"
        ]
    );
    assert_eq!(
        db.sql("SELECT in_transaction FROM runbook_schema_history WHERE success AND version = '2'"),
        "f"
    );

    // Outside a transaction a failure cannot be rolled back: the index stays, and nothing
    // goes on until the operator repairs the history.
    let half = "-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY customers_note ON customers (note);\n\
                SELECT nosuchcolumn FROM customers;\n";
    db.file("V3__note_index.sql", half);
    let error = db.failing("migrate", &[]);
    assert!(
        error.contains("V3__note_index.sql:3: ERROR: column \"nosuchcolumn\" does not exist"),
        "{error}"
    );
    assert!(
        db.has_table("customers")
            && db.sql("SELECT to_regclass('customers_note') IS NOT NULL") == "t"
    );
    for action in ["validate", "migrate"] {
        let refused = db.failing(action, &[]);
        assert!(
            refused.contains("V3__note_index.sql failed on")
                && refused.contains("may be half applied"),
            "{action}: {refused}"
        );
    }
    db.file(
        "V3__note_index.sql",
        "-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS customers_note ON customers (note);\n",
    );
    db.action("repair", &[]);
    assert_eq!(db.applied(&[]), ["V3__note_index.sql"]);
}

#[test]
fn mariadb_real_world_sql_delimiters_semicolons_and_non_ascii() {
    let Some(db) = Db::new(Engine::MariaDb, "real_world") else {
        return;
    };
    let v1 = r#"-- Customers; the first table (a semicolon in a comment).
/* A block comment; with a semicolon */
CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL, note text)
  DEFAULT CHARSET = utf8mb4;
INSERT INTO customers (name, note) VALUES
  ('Zoë Ørsted', 'semi; colon'),
  ('日本語のお客様', 'tab\there; and ''quotes'' and "double"'),
  ('Ἀθηνᾶ ✓', 'a -- not a comment; /* nor this */');

DELIMITER //
CREATE FUNCTION greeting(who varchar(100)) RETURNS varchar(200) DETERMINISTIC
BEGIN
  DECLARE suffix varchar(20) DEFAULT '; welcome';
  RETURN CONCAT('Grüß dich, ', who, suffix);
END //
DELIMITER ;
"#;
    db.file("V1__customers.sql", v1);
    db.file(
        "V2__name_index.sql",
        "-- runbook:no-transaction\nCREATE INDEX customers_name ON customers (name) ALGORITHM = INPLACE LOCK = NONE;\n",
    );
    assert_eq!(db.applied(&[]), ["V1__customers.sql", "V2__name_index.sql"]);
    assert_eq!(
        db.sql("SELECT CONCAT(name, '|', note) FROM customers ORDER BY id"),
        "Zoë Ørsted|semi; colon\n日本語のお客様|tab\there; and 'quotes' and \"double\"\nἈθηνᾶ ✓|a -- not a comment; /* nor this */",
        "the text arrived byte for byte"
    );
    assert_eq!(db.sql("SELECT greeting('Zoë')"), "Grüß dich, Zoë; welcome");
    assert_eq!(
        db.sql("SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name = 'customers_name'"),
        "1"
    );
}
