//! The history table as every database sees it: the client input that reads and writes it,
//! built from the few things a [`Dialect`] says differently (literals, locks, conditional
//! errors, how its command-line client reports an error).

use super::{Applied, Migration, Version};

/// What the client prints when a concurrent run applied the migration first.
pub const ALREADY_APPLIED: &str = "runbook-migrate: already applied";

/// Field separator of the history query's output (a control character no description holds).
pub const SEPARATOR: char = '\u{1f}';

/// What differs between databases. Scripts are the input of the database's own command-line
/// client (`psql`, `mariadb`) read from stdin, stopping at the first error.
pub trait Dialect: Sync {
    /// A string as an SQL literal.
    fn literal(&self, text: &str) -> String;
    /// One line that fails with `message` when the SQL `condition` holds.
    fn raise_if(&self, condition: &str, message: &str) -> String;
    /// Client input that runs `body` and stops at the first error.
    fn script(&self, body: &str) -> String;
    /// Client input that runs `body` in one transaction under the migration lock.
    fn locked(&self, table: &str, body: &str) -> String;
    /// Creates the history table if missing (under the lock: first runs may race).
    fn create_history(&self, table: &str) -> String;
    /// Prints the history rows, [`SEPARATOR`] between fields, nothing when there is no table.
    fn query_history(&self, table: &str) -> String;
    /// A failed migration that ran in a transaction left nothing behind (false where DDL
    /// commits by itself).
    fn rolls_back_ddl(&self) -> bool;
    /// Applies (`kind` = `apply`) or undoes (`undo`, with the U file as `m`) one migration
    /// under the lock, re-checking the history first, and records it.
    fn apply_script(&self, table: &str, m: &Migration, kind: &str, installed_by: &str) -> String;
    /// Turns the client's stderr for [`Dialect::apply_script`] into `FILE:LINE: message`.
    fn explain_error(&self, stderr: &str, table: &str, m: &Migration, kind: &str) -> String;
}

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

/// The history's columns, in the order [`query_history`](Dialect::query_history) prints them.
pub const COLUMNS: [&str; 9] = [
    "installed_rank",
    "version",
    "description",
    "type",
    "script",
    "checksum",
    "installed_on",
    "success",
    "in_transaction",
];

/// Parses the output of [`Dialect::query_history`].
pub fn parse_history(output: &str) -> Result<Vec<Applied>, String> {
    let mut rows = Vec::new();
    for line in output.lines().filter(|l| l.contains(SEPARATOR)) {
        let f: Vec<&str> = line.split(SEPARATOR).collect();
        if f.len() != COLUMNS.len() {
            return Err(format!(
                "unexpected history row from the database: `{line}`"
            ));
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

/// The history type a run of `m` records: `undo` for an undo, else the file's kind.
pub fn recorded_kind(m: &Migration, kind: &str) -> &'static str {
    if kind == "undo" {
        "undo"
    } else {
        m.kind.name()
    }
}

/// Whether a run of `m` is recorded as having run in a transaction that a failure rolls back.
fn in_transaction(d: &dyn Dialect, m: &Migration) -> bool {
    d.rolls_back_ddl() && !m.no_transaction
}

/// The INSERT that records a run of `m`; `execution_ms` is an SQL expression.
pub fn insert_row(
    d: &dyn Dialect,
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
        m.version.as_ref().map_or("NULL".to_string(), |v| d.literal(&v.to_string())),
        d.literal(&m.description),
        d.literal(recorded_kind(m, kind)),
        d.literal(&m.script),
        d.literal(&m.checksum),
        d.literal(installed_by),
        in_transaction(d, m),
    )
}

/// The line that makes a concurrent run skip a version already applied (or undone) by
/// another. Repeatables are re-checked by checksum.
pub fn guard(d: &dyn Dialect, table: &str, m: &Migration, kind: &str) -> String {
    let latest = |column: &str, filter: &str| {
        format!(
            "(SELECT {column} FROM {table} WHERE {filter} AND success ORDER BY installed_rank DESC LIMIT 1)"
        )
    };
    let condition = match (kind, &m.version) {
        ("undo", Some(v)) => format!(
            "COALESCE({} <> 'versioned', TRUE)",
            latest("type", &format!("version = {}", d.literal(&v.to_string())))
        ),
        (_, Some(v)) => format!(
            "{} IN ('versioned', 'baseline')",
            latest("type", &format!("version = {}", d.literal(&v.to_string())))
        ),
        (_, None) => format!(
            "{} = {}",
            latest(
                "checksum",
                &format!(
                    "type = 'repeatable' AND description = {}",
                    d.literal(&m.description)
                )
            ),
            d.literal(&m.checksum)
        ),
    };
    d.raise_if(&condition, ALREADY_APPLIED)
}

/// Records a failed attempt.
pub fn record_failure(
    d: &dyn Dialect,
    table: &str,
    m: &Migration,
    kind: &str,
    installed_by: &str,
    execution_ms: i64,
) -> String {
    d.script(&format!(
        "{}\n",
        insert_row(
            d,
            table,
            m,
            kind,
            installed_by,
            &execution_ms.to_string(),
            false
        )
    ))
}

/// Marks the database as being at `version` without running anything; refused (under the
/// lock, so two baselines cannot both pass) when the history has applied entries.
pub fn baseline_script(
    d: &dyn Dialect,
    table: &str,
    version: &Version,
    description: &str,
    installed_by: &str,
) -> String {
    d.locked(
        table,
        &format!(
            "{}\nINSERT INTO {table} (version, description, type, script, checksum, installed_by, execution_time, success, in_transaction) \
             VALUES ({}, {}, 'baseline', '<< baseline >>', '', {}, 0, TRUE, TRUE);\n",
            d.raise_if(
                &format!("EXISTS (SELECT 1 FROM {table} WHERE success)"),
                &format!("cannot baseline: {table} already has applied migrations")
            ),
            d.literal(&version.to_string()),
            d.literal(description),
            d.literal(installed_by)
        ),
    )
}

/// Removes failed entries and accepts the current checksums of applied files.
pub fn repair_script(d: &dyn Dialect, table: &str, files: &[Migration]) -> String {
    let mut sql = format!("DELETE FROM {table} WHERE NOT success;\n");
    for m in files.iter().filter(|m| m.kind == super::Kind::Versioned) {
        let Some(version) = &m.version else { continue };
        sql.push_str(&format!(
            "UPDATE {table} SET checksum = {} WHERE version = {} AND type = 'versioned' AND checksum <> {};\n",
            d.literal(&m.checksum),
            d.literal(&version.to_string()),
            d.literal(&m.checksum)
        ));
    }
    d.locked(table, &sql)
}

/// Folds runs of whitespace (a message spread over lines) into single spaces.
pub fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `FILE:LINE: message (notes)`, or `FILE: message` when the error is not in the file.
pub fn located_message(
    m: &Migration,
    line: Option<usize>,
    message: &str,
    notes: &[String],
) -> String {
    let mut text = match line {
        Some(line) => format!("{}:{line}: {message}", m.script),
        None => format!("{}: {message}", m.script),
    };
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join("; ")));
    }
    text
}

/// The client failed without an error line of the database's: its whole stderr, or a word
/// that it said nothing.
pub fn unexplained(stderr: &str, m: &Migration, client: &str) -> String {
    let text = squeeze(stderr);
    if text.is_empty() {
        format!("{}: {client} failed without a message", m.script)
    } else {
        format!("{}: {text}", m.script)
    }
}

/// The line of the file that the client's input line `n` is, when it is in the file at all
/// (not in what runbook wrote before or after it).
pub fn file_line(n: usize, preamble_lines: usize, m: &Migration) -> Option<usize> {
    n.checked_sub(preamble_lines)
        .filter(|&line| line >= 1 && line <= m.sql.trim_end().lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows_parse() {
        let out = "\n1\u{1f}1\u{1f}init\u{1f}versioned\u{1f}V1__init.sql\u{1f}abc\u{1f}2026-11-22T10:00:00Z\u{1f}t\u{1f}t\n\
                   2\u{1f}\u{1f}views\u{1f}repeatable\u{1f}R__views.sql\u{1f}def\u{1f}2026-11-22T10:00:01Z\u{1f}f\u{1f}f\n";
        let rows = parse_history(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].version, Version::parse("1"));
        assert!(rows[0].success && rows[0].in_transaction);
        assert!(!rows[1].success && rows[1].version.is_none());
        assert!(parse_history("1\u{1f}2\n").is_err());
    }

    #[test]
    fn table_names_are_checked() {
        assert!(check_table("schema_history").is_ok());
        assert!(check_table("ops.schema_history").is_ok());
        assert!(check_table("x; drop table y").is_err());
        assert!(check_table("Upper").is_err());
    }
}
