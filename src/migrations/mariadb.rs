//! MariaDB through its `mariadb` client: the same history, locks and checks as Postgres, with
//! one difference an operator must know: MariaDB commits each DDL statement by itself, so a
//! failed migration may be half applied whatever the transaction around it, and always needs a
//! look and an `action=repair` before the next run (as Flyway does on MySQL).

use super::history::{self, Dialect, SEPARATOR};
use super::Migration;

/// MariaDB: DDL commits implicitly, named locks (`GET_LOCK`), errors from `mariadb`.
pub struct MariaDb;

/// How long a run waits for another one's lock before giving up.
const LOCK_WAIT_SECONDS: u32 = 86_400;

/// The client's options file for one exec (placed 0600 by `docker::exec`'s `files`), so the
/// password never reaches a command line. Values are quoted: `#` would start a comment.
pub fn client_defaults(user: &str, password: Option<&str>) -> String {
    let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = format!("[client]\nuser={}\n", quoted(user));
    if let Some(password) = password {
        text.push_str(&format!("password={}\n", quoted(password)));
    }
    text
}

impl MariaDb {
    /// The named lock of one history table in the current database (lock names are global to
    /// the server, so the database is part of the name).
    fn lock_name(&self, table: &str) -> String {
        format!(
            "CONCAT('runbook-', LEFT(SHA2(CONCAT(DATABASE(), '.', {}), 256), 40))",
            self.literal(table)
        )
    }

    fn lock(&self, table: &str) -> String {
        self.raise_if(
            &format!(
                "GET_LOCK({}, {LOCK_WAIT_SECONDS}) IS NOT TRUE",
                self.lock_name(table)
            ),
            &format!("runbook-migrate: the lock on {table} was not granted within a day"),
        )
    }

    fn unlock(&self, table: &str) -> String {
        format!("DO RELEASE_LOCK({});", self.lock_name(table))
    }

    /// What the client reads before a migration's own SQL in `apply_script`. Its line count
    /// maps the client's line numbers to the file.
    fn preamble(&self, table: &str, m: &Migration, kind: &str) -> String {
        let begin = if m.no_transaction {
            "-- runbook: outside a transaction"
        } else {
            "START TRANSACTION;"
        };
        format!(
            "{}\n{}\n{begin}\nSET @runbook_started = NOW(6);\n",
            self.lock(table),
            history::guard(self, table, m, kind)
        )
    }

    /// `table` as a schema (the current database when unqualified) and a name, as literals.
    fn schema_and_name(&self, table: &str) -> (String, String) {
        match table.split_once('.') {
            Some((schema, name)) => (self.literal(schema), self.literal(name)),
            None => ("DATABASE()".to_string(), self.literal(table)),
        }
    }
}

/// One error the client reported: the input line of the failing statement's start, the
/// message, and where a syntax error's `at line K` points in the statement.
struct ClientError {
    input_line: Option<usize>,
    message: String,
    statement_line: Option<usize>,
}

/// `ERROR 1064 (42000) at line 7: message` (the message may continue on further lines).
fn parse_client_error(stderr: &str) -> Option<ClientError> {
    let start = stderr.lines().position(|l| l.starts_with("ERROR "))?;
    let lines: Vec<&str> = stderr.lines().skip(start).collect();
    let first = lines[0];
    let (head, rest) = first.split_once(": ")?;
    let input_line = head
        .split_once(" at line ")
        .and_then(|(_, n)| n.trim().parse().ok());
    let code = head.split(" at line ").next().unwrap_or(head);
    let text = history::squeeze(&[&[rest], &lines[1..]].concat().join("\n"));
    let statement_line = text
        .rsplit_once(" at line ")
        .and_then(|(_, k)| k.parse().ok())
        .filter(|_| text.contains("You have an error in your SQL syntax"));
    Some(ClientError {
        input_line,
        message: format!("{code}: {text}"),
        statement_line,
    })
}

impl Dialect for MariaDb {
    fn literal(&self, text: &str) -> String {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    }

    /// An anonymous block, between delimiter changes (the client splits statements at `;`).
    fn raise_if(&self, condition: &str, message: &str) -> String {
        format!(
            "DELIMITER ;;\nBEGIN NOT ATOMIC IF {condition} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {}; END IF; END;;\nDELIMITER ;",
            self.literal(message)
        )
    }

    /// The client stops at the first error by itself (batch mode).
    fn script(&self, body: &str) -> String {
        body.to_string()
    }

    fn locked(&self, table: &str, body: &str) -> String {
        format!(
            "{}\nSTART TRANSACTION;\n{body}COMMIT;\n{}\n",
            self.lock(table),
            self.unlock(table)
        )
    }

    fn create_history(&self, table: &str) -> String {
        self.locked(
            table,
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n  installed_rank int NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  \
                 version varchar(50),\n  description text NOT NULL,\n  type varchar(20) NOT NULL,\n  script text NOT NULL,\n  \
                 checksum varchar(64) NOT NULL,\n  installed_by varchar(100) NOT NULL,\n  \
                 installed_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  execution_time int NOT NULL,\n  \
                 success boolean NOT NULL,\n  in_transaction boolean NOT NULL\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
            ),
        )
    }

    /// Run with `mariadb -N -B -r` (no column names, tab-free raw rows).
    fn query_history(&self, table: &str) -> String {
        let fields = history::COLUMNS.map(|c| match c {
            "version" => "COALESCE(version, '')".to_string(),
            "installed_on" => "DATE_FORMAT(installed_on, '%Y-%m-%dT%H:%i:%sZ')".to_string(),
            "success" | "in_transaction" => format!("IF({c}, 't', 'f')"),
            other => other.to_string(),
        });
        let (schema, name) = self.schema_and_name(table);
        format!(
            "SET time_zone = '+00:00';\nDELIMITER ;;\nBEGIN NOT ATOMIC IF EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = {schema} AND table_name = {name}) THEN \
             SELECT CONCAT_WS(CHAR({sep}), {fields}) FROM {table} ORDER BY installed_rank; END IF; END;;\nDELIMITER ;\n",
            sep = SEPARATOR as u32,
            fields = fields.join(", "),
        )
    }

    fn rolls_back_ddl(&self) -> bool {
        false
    }

    fn apply_script(&self, table: &str, m: &Migration, kind: &str, installed_by: &str) -> String {
        let elapsed = "TIMESTAMPDIFF(MICROSECOND, @runbook_started, NOW(6)) DIV 1000";
        let end = if m.no_transaction { "" } else { "COMMIT;\n" };
        // The lone `;` ends a last statement the file left unterminated.
        format!(
            "{}{}\n;\n{}\n{end}{}\n",
            self.preamble(table, m, kind),
            m.sql.trim_end(),
            history::insert_row(self, table, m, kind, installed_by, elapsed, true),
            self.unlock(table)
        )
    }

    /// The line a syntax error points at, else the failing statement's first.
    fn explain_error(&self, stderr: &str, table: &str, m: &Migration, kind: &str) -> String {
        let Some(error) = parse_client_error(stderr) else {
            return history::unexplained(stderr, m, "mariadb");
        };
        let before = self.preamble(table, m, kind).lines().count();
        let lines = m.sql.trim_end().lines().count();
        let line = error
            .input_line
            .and_then(|n| history::file_line(n, before, m))
            .map(|start| (start + error.statement_line.unwrap_or(1) - 1).min(lines));
        history::located_message(m, line, &error.message, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{Kind, Version};

    fn m(sql: &str) -> Migration {
        Migration {
            kind: Kind::Versioned,
            version: Version::parse("2"),
            description: "o'brien \\ backslash".into(),
            script: "V2__orders.sql".into(),
            checksum: "abc".into(),
            sql: sql.into(),
            no_transaction: false,
        }
    }

    fn before(mig: &Migration) -> usize {
        MariaDb.preamble("t", mig, "apply").lines().count()
    }

    #[test]
    fn the_migration_sql_follows_the_preamble_in_a_transaction_under_the_lock() {
        let mig = m("CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);");
        let script = MariaDb.apply_script("t", &mig, "apply", "ops");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[before(&mig)], "CREATE TABLE a (id int);");
        assert!(script.starts_with("DELIMITER ;;\nBEGIN NOT ATOMIC IF GET_LOCK("));
        assert!(script.contains("START TRANSACTION;") && script.contains("COMMIT;"));
        assert!(script.contains("'o''brien \\\\ backslash'"), "{script}");
        assert!(
            script.contains(", true, false);"),
            "recorded as not rolled back: {script}"
        );
        assert!(script.trim_end().ends_with("DO RELEASE_LOCK(CONCAT('runbook-', LEFT(SHA2(CONCAT(DATABASE(), '.', 't'), 256), 40)));"));
    }

    #[test]
    fn errors_point_at_the_statement_or_the_syntax_errors_line() {
        let mig = m("-- orders\nCREATE TABLE orders (id int);\n\nCREATE TABLE lines (\n  id int,\n\n  qty int int\n);\n");
        let at = before(&mig);
        let stderr = format!(
            "--------------\nCREATE TABLE lines (\n  id int,\n\n  qty int int\n)\n--------------\n\n\
             ERROR 1064 (42000) at line {}: You have an error in your SQL syntax; check the manual that \
             corresponds to your MariaDB server version for the right syntax to use near 'int\n)' at line 4\n",
            at + 4
        );
        assert_eq!(
            MariaDb.explain_error(&stderr, "t", &mig, "apply"),
            "V2__orders.sql:7: ERROR 1064 (42000): You have an error in your SQL syntax; check the manual that \
             corresponds to your MariaDB server version for the right syntax to use near 'int )' at line 4"
        );
        let stderr = format!(
            "ERROR 1050 (42S01) at line {}: Table 'orders' already exists\n",
            at + 2
        );
        assert_eq!(
            MariaDb.explain_error(&stderr, "t", &mig, "apply"),
            "V2__orders.sql:2: ERROR 1050 (42S01): Table 'orders' already exists"
        );
        assert_eq!(
            MariaDb.explain_error("ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)\n", "t", &mig, "apply"),
            "V2__orders.sql: ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1' (using password: YES)"
        );
    }

    #[test]
    fn the_client_defaults_quote_what_an_options_file_would_misread() {
        assert_eq!(
            client_defaults("app", Some("p#ss\"w\\rd")),
            "[client]\nuser=\"app\"\npassword=\"p#ss\\\"w\\\\rd\"\n"
        );
        assert_eq!(client_defaults("app", None), "[client]\nuser=\"app\"\n");
    }
}
