//! The SQL a migrate run sends to `psql` on stdin. Each versioned migration runs in its own
//! transaction that first takes an advisory lock and re-checks the history, so two concurrent
//! runs serialise and the second one skips what the first applied.

use sha2::{Digest, Sha256};

use super::{Applied, Migration, Version};

/// What `psql` prints when a concurrent run applied the migration first.
pub const ALREADY_APPLIED: &str = "runbook-migrate: already applied";

/// Field separator of the history query's output (a control character no description holds).
const SEPARATOR: char = '\u{1f}';

/// Checks a history table name: `name` or `schema.name`, lowercase identifiers.
pub fn check_table(table: &str) -> Result<(), String> {
    let ok = |part: &str| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ok(p)) {
        Ok(())
    } else {
        Err(format!(
            "history table `{table}` must be a lowercase identifier, optionally schema-qualified"
        ))
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The advisory lock of one history table (advisory locks are per database already).
fn lock_key(table: &str) -> i64 {
    let digest = Sha256::digest(table.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `body` in one transaction under the migration lock.
fn locked(table: &str, body: &str) -> String {
    format!(
        "\\set ON_ERROR_STOP on\n\\set QUIET on\nBEGIN;\nSELECT pg_advisory_xact_lock({}) \\g /dev/null\n{body}COMMIT;\n",
        lock_key(table)
    )
}

/// Creates the history table if missing, under the migration lock: two first runs at once
/// would otherwise race in `CREATE TABLE IF NOT EXISTS` (a duplicate `pg_type` row).
pub fn create_history(table: &str) -> String {
    locked(
        table,
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (\n  installed_rank serial PRIMARY KEY,\n  version text,\n  \
             description text NOT NULL,\n  type text NOT NULL,\n  script text NOT NULL,\n  checksum text NOT NULL,\n  \
             installed_by text NOT NULL,\n  installed_on timestamptz NOT NULL DEFAULT now(),\n  \
             execution_time integer NOT NULL,\n  success boolean NOT NULL,\n  in_transaction boolean NOT NULL\n);\n"
        ),
    )
}

/// Reads the history (nothing when the table does not exist yet). Run with `psql -At`.
pub fn query_history(table: &str) -> String {
    format!(
        "\\set ON_ERROR_STOP on\n\
         SELECT to_regclass({lit}) IS NOT NULL AS runbook_has_history \\gset\n\
         \\if :runbook_has_history\n\
         SELECT concat_ws(E'\\x{sep:02x}', installed_rank, coalesce(version, ''), description, type, script, checksum, \
         to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), success, in_transaction) \
         FROM {table} ORDER BY installed_rank;\n\
         \\endif\n",
        lit = literal(table),
        sep = SEPARATOR as u32
    )
}

/// Parses the output of [`query_history`].
pub fn parse_history(output: &str) -> Result<Vec<Applied>, String> {
    let mut rows = Vec::new();
    for line in output.lines().filter(|l| l.contains(SEPARATOR)) {
        let f: Vec<&str> = line.split(SEPARATOR).collect();
        if f.len() != 9 {
            return Err(format!("unexpected history row from psql: `{line}`"));
        }
        rows.push(Applied {
            rank: f[0]
                .parse()
                .map_err(|_| format!("bad installed_rank `{}`", f[0]))?,
            version: if f[1].is_empty() {
                None
            } else {
                Version::parse(f[1])
            },
            description: f[2].to_string(),
            kind: f[3].to_string(),
            script: f[4].to_string(),
            checksum: f[5].to_string(),
            installed_on: f[6].to_string(),
            success: f[7] == "t",
            in_transaction: f[8] == "t",
        });
    }
    Ok(rows)
}

fn insert_row(
    table: &str,
    m: &Migration,
    kind: &str,
    installed_by: &str,
    execution_ms: &str,
    success: bool,
) -> String {
    format!(
        "INSERT INTO {table} (version, description, type, script, checksum, installed_by, execution_time, success, in_transaction) \
         VALUES ({}, {}, {}, {}, {}, {}, {execution_ms}, {success}, {});",
        m.version.as_ref().map_or("NULL".to_string(), |v| literal(&v.to_string())),
        literal(&m.description),
        literal(kind),
        literal(&m.script),
        literal(&m.checksum),
        literal(installed_by),
        !m.no_transaction,
    )
}

/// A statement that fails with `message` when `condition` holds.
fn raise_if(condition: &str, message: &str) -> String {
    format!(
        "DO $runbook$ BEGIN IF {condition} THEN RAISE EXCEPTION {}; END IF; END $runbook$;",
        literal(message)
    )
}

/// The guard that makes a concurrent run skip a version already applied (or undone) by
/// another. Repeatables are re-checked by checksum.
fn guard(table: &str, m: &Migration, kind: &str) -> String {
    let condition = match (kind, &m.version) {
        ("undo", Some(v)) => format!(
            "(SELECT type FROM {table} WHERE version = {} AND success ORDER BY installed_rank DESC LIMIT 1) IS DISTINCT FROM 'versioned'",
            literal(&v.to_string())
        ),
        (_, Some(v)) => format!(
            "(SELECT type FROM {table} WHERE version = {} AND success ORDER BY installed_rank DESC LIMIT 1) IN ('versioned', 'baseline')",
            literal(&v.to_string())
        ),
        (_, None) => format!(
            "(SELECT checksum FROM {table} WHERE type = 'repeatable' AND description = {} AND success ORDER BY installed_rank DESC LIMIT 1) = {}",
            literal(&m.description),
            literal(&m.checksum)
        ),
    };
    raise_if(&condition, ALREADY_APPLIED)
}

/// What psql reads before a migration's own SQL in [`apply_script`]: settings, the
/// transaction, the lock, the guard. Its line count maps psql's line numbers back to the file.
fn preamble(table: &str, m: &Migration, kind: &str) -> String {
    let key = lock_key(table);
    // ECHO errors: psql prints the failing statement, which locates the error in the file.
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
    format!(
        "\\set ON_ERROR_STOP on\n\\set QUIET on\n\\set ECHO errors\n{begin}\n{lock}\n{}\n\
         SELECT set_config('runbook.started', clock_timestamp()::text, {}) \\g /dev/null\n",
        guard(table, m, kind),
        !m.no_transaction,
    )
}

/// The history type a run of `m` records: `undo` for an undo, else the file's kind.
fn recorded_kind(m: &Migration, kind: &str) -> &'static str {
    if kind == "undo" {
        "undo"
    } else {
        m.kind.name()
    }
}

/// The whole psql input that applies (`kind` = `apply`) or undoes (`undo`, with the U file as
/// `m`) one migration and records it.
pub fn apply_script(table: &str, m: &Migration, kind: &str, installed_by: &str) -> String {
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
        preamble(table, m, kind),
        m.sql.trim_end(),
        insert_row(
            table,
            m,
            recorded_kind(m, kind),
            installed_by,
            elapsed,
            true
        ),
    )
}

/// Records a failed attempt (after its transaction rolled back).
pub fn record_failure(
    table: &str,
    m: &Migration,
    kind: &str,
    installed_by: &str,
    execution_ms: i64,
) -> String {
    format!(
        "\\set ON_ERROR_STOP on\n{}\n",
        insert_row(
            table,
            m,
            recorded_kind(m, kind),
            installed_by,
            &execution_ms.to_string(),
            false
        )
    )
}

/// Marks the database as being at `version` without running anything; refused (under the
/// lock, so two baselines cannot both pass) when the history has entries.
pub fn baseline_script(
    table: &str,
    version: &Version,
    description: &str,
    installed_by: &str,
) -> String {
    locked(
        table,
        &format!(
            "{}\nINSERT INTO {table} (version, description, type, script, checksum, installed_by, execution_time, success, in_transaction) \
             VALUES ({}, {}, 'baseline', '<< baseline >>', '', {}, 0, true, true);\n",
            raise_if(
                &format!("EXISTS (SELECT 1 FROM {table} WHERE success)"),
                &format!("cannot baseline: {table} already has applied migrations")
            ),
            literal(&version.to_string()),
            literal(description),
            literal(installed_by)
        ),
    )
}

/// Removes failed entries and accepts the current checksums of applied files.
pub fn repair_script(table: &str, files: &[Migration]) -> String {
    let mut sql = format!("DELETE FROM {table} WHERE NOT success;\n");
    for m in files
        .iter()
        .filter(|m| m.version.is_some() && m.kind == super::Kind::Versioned)
    {
        sql.push_str(&format!(
            "UPDATE {table} SET checksum = {} WHERE version = {} AND type = 'versioned' AND checksum <> {};\n",
            literal(&m.checksum),
            literal(&m.version.as_ref().expect("filtered").to_string()),
            literal(&m.checksum)
        ));
    }
    locked(table, &sql)
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

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
        message: squeeze(message),
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
            error.notes.push(squeeze(line));
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

/// Turns psql's stderr for [`apply_script`] into `FILE:LINE: message`, the line counted in
/// the migration file: the line the server points at, else the failing statement's first.
pub fn explain_error(stderr: &str, table: &str, m: &Migration, kind: &str) -> String {
    let Some(error) = parse_psql_error(stderr) else {
        let text = squeeze(stderr);
        return if text.is_empty() {
            format!("{}: psql failed without a message", m.script)
        } else {
            format!("{}: {text}", m.script)
        };
    };
    let file: Vec<&str> = m.sql.trim_end().lines().collect();
    let before = preamble(table, m, kind).lines().count();
    // Errors before or after the file's own SQL (the lock, the history) have no line in it.
    let line = error.input_line.and_then(|n| {
        let end = n
            .checked_sub(before)
            .filter(|&e| e >= 1 && e <= file.len())?;
        let lines = statement_lines(&file, end, &error.statement).filter(|l| !l.is_empty());
        Some(lines.map_or(end, |lines| {
            error
                .statement_line
                .and_then(|k| lines.get(k.checked_sub(1)?).copied())
                .unwrap_or(lines[0])
        }))
    });
    let mut text = match line {
        Some(line) => format!("{}:{line}: {}", m.script, error.message),
        None => format!("{}: {}", m.script, error.message),
    };
    if !error.notes.is_empty() {
        text.push_str(&format!(" ({})", error.notes.join("; ")));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn m(sql: &str) -> Migration {
        Migration {
            kind: super::super::Kind::Versioned,
            version: Version::parse("3"),
            description: "add o'brien".into(),
            script: "V3__add_o'brien.sql".into(),
            path: PathBuf::from("x"),
            checksum: "abc".into(),
            sql: sql.into(),
            no_transaction: sql.contains(super::super::NO_TRANSACTION_MARKER),
        }
    }

    fn preamble_lines(m: &Migration) -> usize {
        preamble("t", m, "apply").lines().count()
    }

    #[test]
    fn the_migration_sql_follows_the_preamble() {
        let mig = m("CREATE TABLE a();\nSELECT 1;");
        let script = apply_script("t", &mig, "apply", "ops");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[preamble_lines(&mig)], "CREATE TABLE a();");
        assert!(script.contains("'add o''brien'"), "quotes are doubled");
        assert!(script.contains("BEGIN;") && script.contains("COMMIT;"));
        let nt = m("-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY i ON a(x);");
        let script = apply_script("t", &nt, "apply", "ops");
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
            explain_error(&stderr, "t", &mig, "apply"),
            "V3__add_o'brien.sql:8: ERROR: type \"nosuchtype\" does not exist"
        );

        // No position from the server: the statement's first line.
        let stderr = psql_error(
            &mig,
            10,
            "ERROR:  division by zero",
            "CREATE TABLE b (\n  id int,\n  x nosuchtype\n)\n;",
        );
        assert!(explain_error(&stderr, "t", &mig, "apply").starts_with("V3__add_o'brien.sql:5: "));

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
            explain_error(&stderr, "t", &mig, "apply"),
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
            explain_error(&after, "t", &mig, "apply"),
            "V3__add_o'brien.sql: ERROR: deadlock detected"
        );
        let mig = m("CREATE INDEX CONCURRENTLY i ON a (x);");
        let stderr = psql_error(
            &mig,
            1,
            "ERROR:  CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
            "CREATE INDEX CONCURRENTLY i ON a (x);",
        );
        assert!(explain_error(&stderr, "t", &mig, "apply").ends_with(
            "add the line `-- runbook:no-transaction` to the file to run it outside a transaction"
        ));
        assert_eq!(
            explain_error("psql: error: connection refused\n", "t", &mig, "apply"),
            "V3__add_o'brien.sql: psql: error: connection refused"
        );
    }

    #[test]
    fn history_rows_parse() {
        let out = "\n1\u{1f}1\u{1f}init\u{1f}versioned\u{1f}V1__init.sql\u{1f}abc\u{1f}2026-11-22T10:00:00Z\u{1f}t\u{1f}t\n2\u{1f}\u{1f}views\u{1f}repeatable\u{1f}R__views.sql\u{1f}def\u{1f}2026-11-22T10:00:01Z\u{1f}f\u{1f}f\n";
        let rows = parse_history(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].version, Version::parse("1"));
        assert!(rows[0].success && !rows[1].success && rows[1].version.is_none());
    }

    #[test]
    fn history_query_skips_a_missing_table() {
        let q = query_history("schema_history");
        assert!(
            q.contains("\\if :runbook_has_history") && q.contains("E'\\x1f'"),
            "{q}"
        );
    }

    #[test]
    fn table_names_are_checked() {
        assert!(check_table("schema_history").is_ok());
        assert!(check_table("ops.schema_history").is_ok());
        assert!(check_table("x; drop table y").is_err());
    }
}
