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

fn lock_key(table: &str) -> i64 {
    let digest = Sha256::digest(table.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Lines before a migration's own SQL in [`apply_script`], to map psql's line numbers back.
const PREAMBLE_LINES: usize = 6;

/// Creates the history table if missing.
pub fn create_history(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n  installed_rank serial PRIMARY KEY,\n  version text,\n  \
         description text NOT NULL,\n  type text NOT NULL,\n  script text NOT NULL,\n  checksum text NOT NULL,\n  \
         installed_by text NOT NULL,\n  installed_on timestamptz NOT NULL DEFAULT now(),\n  \
         execution_time integer NOT NULL,\n  success boolean NOT NULL\n);\n"
    )
}

/// Reads the history (nothing when the table does not exist yet). Run with `psql -At`.
pub fn query_history(table: &str) -> String {
    format!(
        "\\set ON_ERROR_STOP on\n\
         SELECT to_regclass({lit}) IS NOT NULL AS runbook_has_history \\gset\n\
         \\if :runbook_has_history\n\
         SELECT concat_ws(E'\\x{sep:02x}', installed_rank, coalesce(version, ''), description, type, script, checksum, \
         to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), success) \
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
        if f.len() != 8 {
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
        "INSERT INTO {table} (version, description, type, script, checksum, installed_by, execution_time, success) \
         VALUES ({}, {}, {}, {}, {}, {}, {execution_ms}, {success});",
        m.version.as_ref().map_or("NULL".to_string(), |v| literal(&v.to_string())),
        literal(&m.description),
        literal(kind),
        literal(&m.script),
        literal(&m.checksum),
        literal(installed_by),
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
    format!("DO $runbook$ BEGIN IF {condition} THEN RAISE EXCEPTION '{ALREADY_APPLIED}'; END IF; END $runbook$;")
}

/// The whole psql input that applies (`kind` = `versioned`/`repeatable`) or undoes (`undo`,
/// with the U file as `m`) one migration and records it.
pub fn apply_script(table: &str, m: &Migration, kind: &str, installed_by: &str) -> String {
    let key = lock_key(table);
    let elapsed = "(extract(epoch FROM clock_timestamp() - current_setting('runbook.started')::timestamptz) * 1000)::integer";
    // Exactly PREAMBLE_LINES lines before the migration's own SQL.
    let (begin, lock, end) = if m.no_transaction {
        (
            "SELECT 'no transaction';".to_string(),
            format!("SELECT pg_advisory_lock({key});"),
            format!("SELECT pg_advisory_unlock({key});"),
        )
    } else {
        (
            "BEGIN;".to_string(),
            format!("SELECT pg_advisory_xact_lock({key});"),
            "COMMIT;".to_string(),
        )
    };
    let recorded = if kind == "undo" {
        "undo"
    } else {
        m.kind.name()
    };
    format!(
        "\\set ON_ERROR_STOP on\n\\set QUIET on\n{begin}\n{lock}\n{}\nSELECT set_config('runbook.started', clock_timestamp()::text, {});\n{}\n;\n{}\n{end}\n",
        guard(table, m, kind),
        !m.no_transaction,
        m.sql.trim_end(),
        insert_row(table, m, recorded, installed_by, elapsed, true),
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
    let recorded = if kind == "undo" {
        "undo"
    } else {
        m.kind.name()
    };
    format!(
        "\\set ON_ERROR_STOP on\n{}\n",
        insert_row(
            table,
            m,
            recorded,
            installed_by,
            &execution_ms.to_string(),
            false
        )
    )
}

/// Marks the database as being at `version` without running anything.
pub fn baseline_script(
    table: &str,
    version: &Version,
    description: &str,
    installed_by: &str,
) -> String {
    format!(
        "\\set ON_ERROR_STOP on\nINSERT INTO {table} (version, description, type, script, checksum, installed_by, execution_time, success) \
         VALUES ({}, {}, 'baseline', '<< baseline >>', '', {}, 0, true);\n",
        literal(&version.to_string()),
        literal(description),
        literal(installed_by)
    )
}

/// Removes failed entries and accepts the current checksums of applied files.
pub fn repair_script(table: &str, files: &[Migration]) -> String {
    let mut sql =
        format!("\\set ON_ERROR_STOP on\nBEGIN;\nDELETE FROM {table} WHERE NOT success;\n");
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
    sql.push_str("COMMIT;\n");
    sql
}

/// Turns psql's error output into `file:line: message`, the line counted in the migration.
pub fn explain_error(stderr: &str, m: &Migration) -> String {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return format!("{}: psql failed without a message", m.script);
    };
    let rest: Vec<&str> = lines.collect();
    let detail = if rest.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            rest.join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    if let Some(after) = first.strip_prefix("psql:<stdin>:") {
        if let Some((line, message)) = after.split_once(": ") {
            if let Ok(n) = line.parse::<usize>() {
                let in_file = n
                    .saturating_sub(PREAMBLE_LINES)
                    .clamp(1, m.sql.lines().count().max(1));
                return format!("{}:{in_file}: {}{detail}", m.script, message.trim());
            }
        }
    }
    format!("{}: {}{detail}", m.script, first.trim())
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

    #[test]
    fn the_migration_sql_starts_after_the_preamble() {
        let script = apply_script(
            "schema_history",
            &m("CREATE TABLE a();\nSELECT 1;"),
            "versioned",
            "ops",
        );
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[PREAMBLE_LINES], "CREATE TABLE a();");
        assert!(script.contains("'add o''brien'"), "quotes are doubled");
        assert!(script.contains("BEGIN;") && script.contains("COMMIT;"));
        let nt = apply_script(
            "t",
            &m("-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY i ON a(x);"),
            "versioned",
            "ops",
        );
        assert!(!nt.contains("BEGIN;") && nt.contains("pg_advisory_unlock"));
        assert_eq!(
            nt.lines().nth(PREAMBLE_LINES),
            Some("-- runbook:no-transaction")
        );
    }

    #[test]
    fn psql_errors_point_into_the_file() {
        let stderr = "psql:<stdin>:8: ERROR:  relation \"nope\" does not exist\nLINE 1: SELECT * FROM nope;\n                      ^\n";
        let text = explain_error(stderr, &m("CREATE TABLE a();\nSELECT * FROM nope;"));
        assert!(
            text.starts_with("V3__add_o'brien.sql:2: ERROR:  relation \"nope\" does not exist"),
            "{text}"
        );
    }

    #[test]
    fn history_rows_parse() {
        let out = "\n1\u{1f}1\u{1f}init\u{1f}versioned\u{1f}V1__init.sql\u{1f}abc\u{1f}2026-11-22T10:00:00Z\u{1f}t\n2\u{1f}\u{1f}views\u{1f}repeatable\u{1f}R__views.sql\u{1f}def\u{1f}2026-11-22T10:00:01Z\u{1f}f\n";
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
