//! The migrate playbook against a real Postgres container. One server is shared by the tests
//! (it requires a password even over 127.0.0.1, so the password is really used); each test
//! migrates its own database.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::docker::{self, Objects};
use common::{run_id, Outcome, Workspace};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PASSWORD_VAR: &str = "MIGRATE_TEST_PASSWORD";

/// The shared Postgres server; removed when the last test using it ends.
struct Server {
    container: String,
    password: String,
    _objects: Mutex<Objects>,
    _ws: Workspace,
}

fn server() -> Option<Arc<Server>> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    if !docker::available() {
        return None;
    }
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let ws = Workspace::new();
    let objects = Objects::new();
    let password = format!("pw-{}-{:08x}", run_id(), rand::random::<u32>());
    // Password authentication over TCP, 127.0.0.1 included (initdb trusts it by default).
    let container = objects.postgres_with(
        "migrate-pg",
        &ws,
        &password,
        &["-e", "POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256"],
    );
    let server = Arc::new(Server {
        container,
        password,
        _objects: Mutex::new(objects),
        _ws: ws,
    });
    *shared = Arc::downgrade(&server);
    Some(server)
}

/// One test's database on the shared server, and a workspace with its `migrations/` folder.
struct Db {
    server: Arc<Server>,
    name: String,
    ws: Workspace,
}

impl Db {
    /// A fresh database named after the test.
    fn new(name: &str) -> Option<Db> {
        let server = server()?;
        let db = Db {
            server,
            name: name.to_string(),
            ws: Workspace::new(),
        };
        db.admin(&format!("DROP DATABASE IF EXISTS {name}"));
        db.admin(&format!("CREATE DATABASE {name}"));
        Some(db)
    }

    fn admin(&self, sql: &str) -> String {
        self.psql("postgres", sql)
    }

    /// Runs SQL in this database as the superuser over the local socket, as a witness
    /// independent of runbook; returns psql's unaligned output.
    fn sql(&self, sql: &str) -> String {
        self.psql(&self.name, sql)
    }

    fn psql(&self, database: &str, sql: &str) -> String {
        docker::psql(&self.server.container, database, sql)
    }

    fn file(&self, name: &str, sql: &str) {
        self.ws.write(&format!("migrations/{name}"), sql);
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.ws.join(&format!("migrations/{name}"))).unwrap();
    }

    /// `runbook run migrate` on this database with the password from the environment.
    fn command(&self, extra: &[&str]) -> Command {
        let database = format!("database={}", self.name);
        let container = format!("container={}", self.server.container);
        let mut args = vec![
            "run",
            "migrate",
            "-p",
            &container,
            "-p",
            &database,
            "-p",
            "dir=migrations",
        ];
        let password = format!("password=env:{PASSWORD_VAR}");
        args.extend(["-p", &password]);
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

    /// The history: `version type script success` (`t`/`f`), one line per row, in order.
    fn history(&self) -> Vec<String> {
        self.sql(
            "SELECT concat_ws(' ', coalesce(version, '-'), type, script, success) \
             FROM runbook_schema_history ORDER BY installed_rank",
        )
        .lines()
        .map(String::from)
        .collect()
    }

    fn has_table(&self, table: &str) -> bool {
        self.sql(&format!("SELECT to_regclass('{table}') IS NOT NULL")) == "t"
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

const V1: &str = "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);\n";
const V1_9: &str =
    "CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers);\n";
const V1_10: &str = "ALTER TABLE orders ADD COLUMN total numeric NOT NULL DEFAULT 0;\n";
const V2: &str = "CREATE INDEX orders_customer ON orders (customer);\n";

#[test]
fn a_clean_apply_in_numeric_order_then_a_second_migrate_applies_nothing() {
    let Some(db) = Db::new("clean_apply") else {
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
    assert!(db.has_table("orders") && db.has_table("customer_names"));
    assert_eq!(
        db.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position"),
        "id\ncustomer\ntotal"
    );
    let recorded = db.sql(
        "SELECT concat_ws(' ', version, description, type, checksum, installed_by <> '', execution_time >= 0, \
         installed_on > now() - interval '5 minutes', success) FROM runbook_schema_history WHERE script = 'V1.9__orders.sql'",
    );
    assert_eq!(
        recorded,
        format!("1.9 orders versioned {} t t t t", sha256_hex(V1_9)),
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

#[test]
fn validate_and_migrate_refuse_an_edited_applied_file_a_missing_one_and_a_late_version() {
    let Some(db) = Db::new("validate_refusals") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    db.file("V2__orders.sql", V1_9);
    db.action("migrate", &[]);
    assert_eq!(db.action("validate", &[])["pending"], 0);

    db.file(
        "V1__customers.sql",
        "CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);\n",
    );
    db.file("V3__order_totals.sql", V1_10);
    let refused = db.failing("validate", &[]);
    assert!(
        refused.contains("V1__customers.sql was changed after it was applied"),
        "{refused}"
    );
    let refused = db.failing("migrate", &[]);
    assert!(
        refused.contains("V1__customers.sql was changed after it was applied"),
        "{refused}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'"),
        "0",
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
    let applied = db.action("migrate", &["-p", "out_of_order=true"]);
    assert_eq!(strings(&applied["applied"]), ["V2.5__late.sql"]);
    assert!(db.has_table("late"));
}

#[test]
fn a_failing_migration_is_rolled_back_recorded_and_stops_the_run_at_its_file_and_line() {
    let Some(db) = Db::new("failing_migration") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    let broken = "-- orders, and their lines\nCREATE TABLE orders (id int PRIMARY KEY);\n\n\
                  CREATE TABLE order_lines (\n  id int,\n\n  quantity nosuchtype\n);\n";
    db.file("V2__orders.sql", broken);
    db.file("V3__order_totals.sql", V1_10);

    let error = db.failing("migrate", &[]);
    assert!(
        error.contains(r#"V2__orders.sql:7: ERROR: type "nosuchtype" does not exist"#),
        "the database's message at the file and line: {error}"
    );
    assert!(db.has_table("customers"), "V1 stays applied");
    assert!(
        !db.has_table("orders"),
        "V2's first statement was rolled back"
    );
    assert_eq!(
        db.history(),
        [
            "1 versioned V1__customers.sql t",
            "2 versioned V2__orders.sql f"
        ],
        "the failure is recorded and V3 was never tried"
    );
    let status = db.action("status", &[]);
    assert_eq!(
        strings(&status["pending"]),
        ["V2__orders.sql", "V3__order_totals.sql"]
    );
    assert_eq!(strings(&status["failed"]), ["V2__orders.sql"]);

    // Rolled back means nothing to repair: the fixed file applies on the next run.
    db.file("V2__orders.sql", &broken.replace("nosuchtype", "int"));
    let fixed = db.action("migrate", &[]);
    assert_eq!(
        strings(&fixed["applied"]),
        ["V2__orders.sql", "V3__order_totals.sql"]
    );
    assert!(db.has_table("order_lines"));
}

#[test]
fn undo_runs_the_latest_versions_u_file_after_confirmation() {
    let Some(db) = Db::new("undo_latest") else {
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

    assert_eq!(
        strings(&db.action("migrate", &[])["applied"]),
        ["V2__orders.sql"]
    );
    assert!(db.has_table("orders"));
}

#[test]
fn a_changed_repeatable_is_re_applied_after_the_versioned_ones() {
    let Some(db) = Db::new("repeatable") else {
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
        "ALTER TABLE customers ADD COLUMN email text;\n",
    );
    db.file(
        "R__customer_view.sql",
        "CREATE OR REPLACE VIEW customer_names AS SELECT name, email FROM customers;\n",
    );
    let second = db.action("migrate", &[]);
    assert_eq!(
        strings(&second["applied"]),
        ["V2__email.sql", "R__customer_view.sql"],
        "the view needs the column V2 adds: it runs after"
    );
    assert_eq!(
        db.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'customer_names'"),
        "name,email"
    );
    assert_eq!(
        strings(&db.action("migrate", &[])["applied"]),
        Vec::<String>::new(),
        "an unchanged repeatable is not re-applied"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM runbook_schema_history WHERE type = 'repeatable'"),
        "2"
    );
}

#[test]
fn two_concurrent_runs_produce_one_history() {
    let Some(db) = Db::new("concurrent") else {
        return;
    };
    let scripts: Vec<String> = (1..=5)
        .map(|i| {
            let script = format!("V{i}__step_{i}.sql");
            db.file(
                &script,
                &format!("CREATE TABLE step_{i} (id int);\nSELECT pg_sleep(0.1);\n"),
            );
            script
        })
        .collect();

    // Hold the migration lock (the same key runbook derives from the table name) so that both
    // runs have read the history and wait at the lock before either applies anything.
    let key = "('x' || left(encode(sha256('runbook_schema_history'), 'hex'), 16))::bit(64)::bigint";
    let mut holder = Command::new("docker")
        .args([
            "exec",
            &db.server.container,
            "psql",
            "-X",
            "-U",
            "postgres",
            "-d",
            &db.name,
            "-c",
            &format!("SELECT pg_advisory_lock({key})"),
            "-c",
            "SELECT pg_sleep(60)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locks = |granted: bool| {
        db.sql(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND d.datname = '{}' AND l.granted = {granted}",
            db.name
        ))
    };
    wait_until("the test holds the lock", || locks(true) == "1");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            db.command(&["--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until("both runs wait at the lock", || locks(false) == "2");
    db.sql(&format!(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND d.datname = '{}' AND l.granted",
        db.name
    ));
    let _ = holder.wait();

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
    let versioned = db.sql(
        "SELECT string_agg(version, ',' ORDER BY installed_rank) FROM runbook_schema_history WHERE type = 'versioned'",
    );
    assert_eq!(versioned, "1,2,3,4,5", "one history, in order");
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn baseline_on_a_database_that_already_has_its_tables() {
    let Some(db) = Db::new("baseline") else {
        return;
    };
    // The schema of versions 1 and 2, created before runbook managed this database.
    db.sql(&format!(
        "{V1}{V1_9}INSERT INTO customers (name) VALUES ('kept');"
    ));
    db.file("V1__customers.sql", V1);
    db.file("V2__orders.sql", V1_9);
    db.file("V3__order_totals.sql", V1_10);

    let refused = db.failing("migrate", &[]);
    assert!(
        refused.contains(r#"relation "customers" already exists"#),
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

#[test]
fn real_world_sql_dollar_quotes_semicolons_non_ascii_and_create_index_concurrently() {
    let Some(db) = Db::new("real_world") else {
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
    let applied = db.action("migrate", &[]);
    assert_eq!(strings(&applied["applied"]), ["V2__name_index.sql"]);

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
    let half = "-- runbook:no-transaction
CREATE INDEX CONCURRENTLY customers_note ON customers (note);
                SELECT nosuchcolumn FROM customers;
";
    db.file("V3__note_index.sql", half);
    let error = db.failing("migrate", &[]);
    assert!(
        error.contains("V3__note_index.sql:3: ERROR: column \"nosuchcolumn\" does not exist"),
        "{error}"
    );
    assert!(db.sql("SELECT to_regclass('customers_note') IS NOT NULL") == "t");
    let refused = db.failing("validate", &[]);
    assert!(
        refused.contains("V3__note_index.sql failed on")
            && refused.contains("outside a transaction and may be half applied"),
        "{refused}"
    );
    assert!(db.failing("migrate", &[]).contains("may be half applied"));
    db.file(
        "V3__note_index.sql",
        "-- runbook:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_note ON customers (note);
",
    );
    db.action("repair", &[]);
    assert_eq!(
        strings(&db.action("migrate", &[])["applied"]),
        ["V3__note_index.sql"]
    );
}

#[test]
fn a_dry_run_prints_the_sql_it_would_run_and_changes_nothing() {
    let Some(db) = Db::new("dry_run") else {
        return;
    };
    db.file("V1__customers.sql", V1);
    let out = db.migrate(&["--dry-run"]);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("-- V1__customers.sql: the SQL this run would send to psql")
            && out.stdout.contains(V1.trim()),
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

#[test]
fn the_password_never_appears_in_output_journal_or_the_process_list() {
    let Some(db) = Db::new("password") else {
        return;
    };
    let password = db.server.password.clone();
    db.file(
        "V1__slow.sql",
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(3);\n",
    );

    // While the migration runs, look where someone on the host would: ps, and the command
    // lines of the container's processes as the docker CLI shows them.
    let container = db.server.container.clone();
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
            let psql = top.contains("psql");
            seen.push((String::from_utf8_lossy(&ps.stdout).into_owned(), top));
            if psql && seen.len() > 10 {
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

    let during: Vec<&(String, String)> = seen
        .iter()
        .filter(|(_, top)| top.contains("psql"))
        .collect();
    assert!(
        !during.is_empty(),
        "the watcher saw psql running in the container"
    );
    assert!(
        during
            .iter()
            .any(|(_, top)| top.contains("-U postgres -d password -f -")),
        "and its command line: {:?}",
        during[0].1
    );
    for (ps, top) in &seen {
        assert!(!ps.contains(&password), "password in ps:\n{ps}");
        assert!(!top.contains(&password), "password in docker top:\n{top}");
    }
    assert!(!out.all_output().contains(&password));
    assert!(!db.ws.journals().contains(&password));
    assert!(!db.ws.journals().is_empty());

    // The server really checks it: the wrong password is refused.
    let wrong = db
        .command(&["-p", "action=status"])
        .env(PASSWORD_VAR, "not-the-password")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
}
