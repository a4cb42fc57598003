//! Postgres through `psql`: each migration runs in its own transaction that first takes an
//! advisory lock and re-checks the history, so two concurrent runs serialise and the second one
//! skips what the first applied.

use sha2::{Digest, Sha256};

use super::history::{self, Dialect, SEPARATOR};
use super::Migration;

/// Postgres: DDL is transactional, advisory locks, errors from `psql`.
pub struct Postgres;

/// The advisory lock of one history table (advisory locks are per database already).
fn lock_key(table: &str) -> i64 {
    let digest = Sha256::digest(table.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Postgres {
    /// What psql reads before a migration's own SQL in `apply_script`: settings, the
    /// transaction, the lock, the guard. Its line count maps psql's line numbers to the file.
    fn preamble(&self, table: &str, m: &Migration, kind: &str) -> String {
        let key = lock_key(table);
        let (begin, lock) = if m.no_transaction {
            (
                "-- runbook: outside a transaction",
                format!("SELECT pg_advisory_lock({key}) \\g /dev/null"),
            )
        } else {
            (
                "BEGIN;",
                format!("SELECT pg_advisory_xact_lock({key}) \\g /dev/null"),
            )
        };
        // ECHO errors: psql prints the failing statement, which locates the error in the file.
        format!(
            "\\set ON_ERROR_STOP on\n\\set QUIET on\n\\set ECHO errors\n{begin}\n{lock}\n{}\n\
             SELECT set_config('runbook.started', clock_timestamp()::text, {}) \\g /dev/null\n",
            history::guard(self, table, m, kind),
            !m.no_transaction,
        )
    }
}

impl Dialect for Postgres {
    fn literal(&self, text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    fn raise_if(&self, condition: &str, message: &str) -> String {
        format!(
            "DO $runbook$ BEGIN IF {condition} THEN RAISE EXCEPTION {}; END IF; END $runbook$;",
            self.literal(message)
        )
    }

    fn script(&self, body: &str) -> String {
        format!("\\set ON_ERROR_STOP on\n\\set QUIET on\n{body}")
    }

    fn locked(&self, table: &str, body: &str) -> String {
        self.script(&format!(
            "BEGIN;\nSELECT pg_advisory_xact_lock({}) \\g /dev/null\n{body}COMMIT;\n",
            lock_key(table)
        ))
    }

    /// Under the lock: two first runs at once would otherwise race in `CREATE TABLE IF NOT
    /// EXISTS` (a duplicate `pg_type` row).
    fn create_history(&self, table: &str) -> String {
        self.locked(
            table,
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n  installed_rank serial PRIMARY KEY,\n  version text,\n  \
                 description text NOT NULL,\n  type text NOT NULL,\n  script text NOT NULL,\n  checksum text NOT NULL,\n  \
                 installed_by text NOT NULL,\n  installed_on timestamptz NOT NULL DEFAULT now(),\n  \
                 execution_time integer NOT NULL,\n  success boolean NOT NULL,\n  in_transaction boolean NOT NULL\n);\n"
            ),
        )
    }

    /// Run with `psql -At`.
    fn query_history(&self, table: &str) -> String {
        let fields = history::COLUMNS.map(|c| match c {
            "version" => "coalesce(version, '')".to_string(),
            "installed_on" => {
                "to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    .to_string()
            }
            other => other.to_string(),
        });
        format!(
            "\\set ON_ERROR_STOP on\n\
             SELECT to_regclass({lit}) IS NOT NULL AS runbook_has_history \\gset\n\
             \\if :runbook_has_history\n\
             SELECT concat_ws(E'\\x{sep:02x}', {fields}) FROM {table} ORDER BY installed_rank;\n\
             \\endif\n",
            lit = self.literal(table),
            sep = SEPARATOR as u32,
            fields = fields.join(", "),
        )
    }

    fn rolls_back_ddl(&self) -> bool {
        true
    }

    fn apply_script(&self, table: &str, m: &Migration, kind: &str, installed_by: &str) -> String {
        let elapsed = "(extract(epoch FROM clock_timestamp() - current_setting('runbook.started')::timestamptz) * 1000)::integer";
        let end = if m.no_transaction {
            format!(
                "SELECT pg_advisory_unlock({}) \\g /dev/null",
                lock_key(table)
            )
        } else {
            "COMMIT;".to_string()
        };
        // The lone `;` ends a last statement the file left unterminated.
        format!(
            "{}{}\n;\n{}\n{end}\n",
            self.preamble(table, m, kind),
            m.sql.trim_end(),
            history::insert_row(self, table, m, kind, installed_by, elapsed, true),
        )
    }

    /// The line the server points at, else the failing statement's first.
    fn explain_error(&self, stderr: &str, table: &str, m: &Migration, kind: &str) -> String {
        let Some(error) = parse_psql_error(stderr) else {
            return history::unexplained(stderr, m, "psql");
        };
        let file: Vec<&str> = m.sql.trim_end().lines().collect();
        let before = self.preamble(table, m, kind).lines().count();
        let line = error
            .input_line
            .and_then(|n| history::file_line(n, before, m))
            .map(|end| {
                statement_lines(&file, end, &error.statement)
                    .filter(|lines| !lines.is_empty())
                    .map_or(end, |lines| {
                        error
                            .statement_line
                            .and_then(|k| lines.get(k.checked_sub(1)?).copied())
                            .unwrap_or(lines[0])
                    })
            });
        let mut text = history::located_message(m, line, &error.message, &error.notes);
        if error
            .message
            .contains("cannot run inside a transaction block")
        {
            text.push_str(&format!(
                "; add the line `{}` to the file to run it outside a transaction",
                super::NO_TRANSACTION_MARKER
            ));
        }
        text
    }
}

/// One error psql reported: its input line, the message, the server's `LINE k` (counted in
/// the statement), DETAIL/HINT/CONTEXT, and the failing statement (printed under ECHO errors).
#[derive(Debug, Default)]
struct PsqlError {
    input_line: Option<usize>,
    message: String,
    statement_line: Option<usize>,
    notes: Vec<String>,
    statement: Vec<String>,
}

/// `psql:<stdin>:N: rest` → `(N, rest)`.
fn located(line: &str) -> Option<(usize, &str)> {
    let (n, rest) = line.strip_prefix("psql:<stdin>:")?.split_once(": ")?;
    Some((n.parse().ok()?, rest))
}

/// The first error in psql's stderr (notices and warnings before it are skipped).
fn parse_psql_error(stderr: &str) -> Option<PsqlError> {
    let lines: Vec<&str> = stderr.lines().collect();
    let is_error = |l: &str| {
        let rest = located(l).map_or(l, |(_, r)| r);
        ["ERROR:", "FATAL:", "PANIC:", "psql: error:"]
            .iter()
            .any(|p| rest.starts_with(p))
    };
    let start = lines.iter().position(|l| is_error(l))?;
    let (input_line, message) = match located(lines[start]) {
        Some((n, rest)) => (Some(n), rest),
        None => (None, lines[start]),
    };
    let mut error = PsqlError {
        input_line,
        message: history::squeeze(message),
        ..PsqlError::default()
    };
    let mut in_statement = false;
    for line in &lines[start + 1..] {
        if let Some((_, rest)) = located(line) {
            match rest.strip_prefix("STATEMENT:  ") {
                Some(first) if !in_statement => {
                    error.statement.push(first.to_string());
                    in_statement = true;
                    continue;
                }
                _ => break,
            }
        }
        if in_statement {
            error.statement.push(line.to_string());
        } else if let Some(k) = line
            .strip_prefix("LINE ")
            .and_then(|l| l.split_once(':'))
            .and_then(|(k, _)| k.parse().ok())
        {
            error.statement_line.get_or_insert(k);
        } else if ["DETAIL:", "HINT:", "CONTEXT:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            error.notes.push(history::squeeze(line));
        }
    }
    Some(error)
}

/// The file line (1-based) of each line of `statement`, which psql read ending at file line
/// `end`. psql drops empty lines outside quotes and the blanks before a statement, so the
/// statement is matched from its end backwards, skipping empty file lines.
fn statement_lines(file: &[&str], end: usize, statement: &[String]) -> Option<Vec<usize>> {
    let mut at = end;
    let mut found = vec![0; statement.len()];
    for (j, wanted) in statement.iter().enumerate().rev() {
        loop {
            let line = *file.get(at.checked_sub(1)?)?;
            if line.contains(wanted.as_str()) {
                found[j] = at;
                at -= 1;
                break;
            }
            if !line.trim().is_empty() {
                return None;
            }
            at -= 1;
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::Version;

    fn m(sql: &str) -> Migration {
        Migration {
            kind: super::super::Kind::Versioned,
            version: Version::parse("3"),
            description: "add o'brien".into(),
            script: "V3__add_o'brien.sql".into(),
            checksum: "abc".into(),
            sql: sql.into(),
            no_transaction: sql.contains(super::super::NO_TRANSACTION_MARKER),
        }
    }

    fn preamble_lines(m: &Migration) -> usize {
        Postgres.preamble("t", m, "apply").lines().count()
    }

    #[test]
    fn the_migration_sql_follows_the_preamble() {
        let mig = m("CREATE TABLE a();\nSELECT 1;");
        let script = Postgres.apply_script("t", &mig, "apply", "ops");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[preamble_lines(&mig)], "CREATE TABLE a();");
        assert!(script.contains("'add o''brien'"), "quotes are doubled");
        assert!(script.contains("BEGIN;") && script.contains("COMMIT;"));
        let nt = m("-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY i ON a(x);");
        let script = Postgres.apply_script("t", &nt, "apply", "ops");
        assert!(!script.contains("BEGIN;") && script.contains("pg_advisory_unlock"));
        assert_eq!(
            script.lines().nth(preamble_lines(&nt)),
            Some("-- runbook:no-transaction")
        );
    }

    /// psql's stderr for an error at input line `end` (counted in the file) of `statement`.
    fn psql_error(mig: &Migration, end: usize, error: &str, statement: &str) -> String {
        let n = end + preamble_lines(mig);
        format!("psql:<stdin>:{n}: {error}\npsql:<stdin>:{n}: STATEMENT:  {statement}\n")
    }

    #[test]
    fn errors_point_at_the_line_in_the_file() {
        let sql = "-- two tables\n\nCREATE TABLE a (id int);\n\nCREATE TABLE b (\n  id int,\n\n  x nosuchtype\n)\n;\n";
        let mig = m(sql);
        // The server's LINE counts in the statement psql sent, without its empty lines.
        let stderr = psql_error(
            &mig,
            10,
            "ERROR:  type \"nosuchtype\" does not exist\nLINE 3:   x nosuchtype\n            ^",
            "CREATE TABLE b (\n  id int,\n  x nosuchtype\n)\n;",
        );
        assert_eq!(
            Postgres.explain_error(&stderr, "t", &mig, "apply"),
            "V3__add_o'brien.sql:8: ERROR: type \"nosuchtype\" does not exist"
        );

        // No position from the server: the statement's first line.
        let stderr = psql_error(
            &mig,
            10,
            "ERROR:  division by zero",
            "CREATE TABLE b (\n  id int,\n  x nosuchtype\n)\n;",
        );
        assert!(Postgres
            .explain_error(&stderr, "t", &mig, "apply")
            .starts_with("V3__add_o'brien.sql:5: "));

        // A second statement on the same line, notices before the error, a hint after it.
        let mig = m("SELECT 1; SELECT 1/0;\n");
        let stderr = format!(
            "psql:<stdin>:{}: NOTICE:  something\n{}",
            preamble_lines(&mig) + 1,
            psql_error(
                &mig,
                1,
                "ERROR:  division by zero\nHINT:  do not",
                "SELECT 1/0;"
            )
        );
        assert_eq!(
            Postgres.explain_error(&stderr, "t", &mig, "apply"),
            "V3__add_o'brien.sql:1: ERROR: division by zero (HINT: do not)"
        );
    }

    #[test]
    fn errors_outside_the_file_have_no_line_and_concurrently_gets_a_hint() {
        let mig = m("SELECT 1;");
        let after = format!(
            "psql:<stdin>:{}: ERROR:  deadlock detected\n",
            preamble_lines(&mig) + 3
        );
        assert_eq!(
            Postgres.explain_error(&after, "t", &mig, "apply"),
            "V3__add_o'brien.sql: ERROR: deadlock detected"
        );
        let mig = m("CREATE INDEX CONCURRENTLY i ON a (x);");
        let stderr = psql_error(
            &mig,
            1,
            "ERROR:  CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
            "CREATE INDEX CONCURRENTLY i ON a (x);",
        );
        assert!(Postgres
            .explain_error(&stderr, "t", &mig, "apply")
            .ends_with(
            "add the line `-- runbook:no-transaction` to the file to run it outside a transaction"
        ));
        assert_eq!(
            Postgres.explain_error("psql: error: connection refused\n", "t", &mig, "apply"),
            "V3__add_o'brien.sql: psql: error: connection refused"
        );
    }

    #[test]
    fn history_query_skips_a_missing_table() {
        let q = Postgres.query_history("schema_history");
        assert!(
            q.contains("\\if :runbook_has_history") && q.contains("E'\\x1f'"),
            "{q}"
        );
    }
}
