//! Versioned SQL migrations with Flyway's file naming, and the decisions a `migrate` run makes
//! from the files and the history table: what is applied, what is pending, what is wrong.
//!
//! `V<version>__<description>.sql` applies a version, `U<version>__<description>.sql` undoes it,
//! `R__<description>.sql` is re-applied whenever its checksum changes, after the versioned ones.

pub mod history;
pub mod mariadb;
pub mod postgres;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A migration version: numeric parts, compared part by part (1.10 after 1.9; 1.0 equals 1).
#[derive(Debug, Clone, Eq)]
pub struct Version(Vec<u64>);

impl Version {
    /// Parses `1`, `1.2`, `1_2`, `2026.11.22.1`.
    pub fn parse(text: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = text.split(['.', '_']).map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }

    fn trimmed(&self) -> &[u64] {
        let end = self.0.iter().rposition(|&p| p != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.trimmed() == other.trimmed()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.trimmed().cmp(other.trimmed())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// What a migration file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Versioned,
    Undo,
    Repeatable,
}

impl Kind {
    /// The name used in the history table and in scripts.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Versioned => "versioned",
            Kind::Undo => "undo",
            Kind::Repeatable => "repeatable",
        }
    }
}

/// The marker that lets a file run outside a transaction (`CREATE INDEX CONCURRENTLY`).
pub const NO_TRANSACTION_MARKER: &str = "-- runbook:no-transaction";

/// One migration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub kind: Kind,
    pub version: Option<Version>,
    pub description: String,
    /// The file name, as recorded in the history.
    pub script: String,
    /// SHA-256 of the content with CRLF normalised to LF, so a checkout's line endings do not
    /// count as an edit.
    pub checksum: String,
    pub sql: String,
    /// The file carries [`NO_TRANSACTION_MARKER`].
    pub no_transaction: bool,
}

/// What a file name says: kind, version (none for repeatables) and description.
type Name = (Kind, Option<Version>, String);

/// Parses a file name; `None` when it is not a migration name at all.
fn parse_name(name: &str) -> Option<Result<Name, String>> {
    let stem = name.strip_suffix(".sql")?;
    let (kind, rest) = match stem.chars().next()? {
        'V' => (Kind::Versioned, &stem[1..]),
        'U' => (Kind::Undo, &stem[1..]),
        'R' => (Kind::Repeatable, &stem[1..]),
        _ => return Some(Err(format!("{name}: migration files start with V, U or R"))),
    };
    let Some((version, description)) = rest.split_once("__") else {
        return Some(Err(format!(
            "{name}: expected {}<version>__<description>.sql (two underscores)",
            &stem[..1]
        )));
    };
    if description.is_empty() {
        return Some(Err(format!("{name}: the description after `__` is empty")));
    }
    let description = description.replace('_', " ");
    match kind {
        Kind::Repeatable if !version.is_empty() => Some(Err(format!(
            "{name}: repeatable migrations have no version (R__<description>.sql)"
        ))),
        Kind::Repeatable => Some(Ok((kind, None, description))),
        _ => match Version::parse(version) {
            Some(v) => Some(Ok((kind, Some(v), description))),
            None => Some(Err(format!(
                "{name}: `{version}` is not a version like 1, 1.2 or 2_1"
            ))),
        },
    }
}

/// Reads every `.sql` file of a directory. Badly named files and duplicate versions are
/// errors, all of them listed.
pub fn scan(dir: &Path) -> Result<Vec<Migration>, Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![format!(
            "cannot read migrations directory {}: {e}",
            dir.display()
        )]
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut migrations = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match parse_name(&name) {
            None => {}
            Some(Err(problem)) => problems.push(problem),
            Some(Ok((kind, version, description))) => {
                let path = dir.join(&name);
                match std::fs::read_to_string(&path) {
                    Ok(sql) => {
                        let normalised = sql.replace("\r\n", "\n");
                        migrations.push(Migration {
                            kind,
                            version,
                            description,
                            checksum: hex::encode(Sha256::digest(normalised.as_bytes())),
                            no_transaction: normalised
                                .lines()
                                .any(|l| l.trim() == NO_TRANSACTION_MARKER),
                            script: name,
                            sql: normalised,
                        });
                    }
                    Err(e) => problems.push(format!("{name}: cannot read: {e}")),
                }
            }
        }
    }
    let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
    for m in &migrations {
        let key = (
            m.kind.name().to_string(),
            m.version.as_ref().map_or_else(
                || m.description.clone(),
                |v| {
                    v.trimmed()
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(".")
                },
            ),
        );
        if let Some(other) = seen.insert(key, &m.script) {
            problems.push(format!(
                "{} and {other} have the same {}",
                m.script,
                if m.version.is_some() {
                    "version"
                } else {
                    "description"
                }
            ));
        }
    }
    migrations.sort_by(|a, b| {
        a.version
            .cmp(&b.version)
            .then_with(|| a.script.cmp(&b.script))
    });
    if problems.is_empty() {
        Ok(migrations)
    } else {
        Err(problems)
    }
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub rank: i64,
    pub version: Option<Version>,
    pub description: String,
    /// `versioned`, `undo`, `repeatable` or `baseline`.
    pub kind: String,
    pub script: String,
    pub checksum: String,
    pub installed_on: String,
    pub success: bool,
    /// It ran inside a transaction: a failure left nothing behind. False for files marked
    /// no-transaction, and on databases whose DDL commits by itself (MariaDB).
    pub in_transaction: bool,
}

/// What a `migrate` would do, and what stops it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Versions in effect (applied or baselined), oldest first.
    pub applied: Vec<Applied>,
    /// Versioned migrations to apply, in order.
    pub pending: Vec<Migration>,
    /// Repeatable migrations new or changed since last applied.
    pub repeatable: Vec<Migration>,
    /// Failed attempts that were rolled back: informational, the file is simply tried again.
    pub failed: Vec<Applied>,
    /// Problems that make `validate` and `migrate` fail, one sentence each.
    pub problems: Vec<String>,
}

/// A failed attempt is either harmless (it ran in a transaction that was rolled back: the
/// file is simply tried again) or a problem (it may be half applied).
fn judge_failure(plan: &mut Plan, failure: &Applied) {
    if failure.in_transaction {
        plan.failed.push(failure.clone());
    } else {
        plan.problems.push(format!(
            "{} failed on {} and may be half applied (it ran where a failure is not rolled back): \
             check the database, fix the file, then run action=repair to clear the failed entry",
            failure.script, failure.installed_on
        ));
    }
}

/// Compares the files with the history.
pub fn plan(migrations: &[Migration], history: &[Applied], out_of_order: bool) -> Plan {
    let mut plan = Plan::default();
    let mut rows: Vec<&Applied> = history.iter().collect();
    rows.sort_by_key(|r| r.rank);

    // Per version: the latest successful row decides its state (an undo cancels an apply);
    // failures after it either were rolled back or need a repair.
    let mut versions: Vec<(Version, Option<&Applied>, Vec<&Applied>)> = Vec::new();
    for row in rows.iter().filter(|r| r.kind != "repeatable") {
        let Some(v) = &row.version else { continue };
        let slot = match versions.iter().position(|(sv, _, _)| sv == v) {
            Some(i) => &mut versions[i],
            None => {
                versions.push((v.clone(), None, Vec::new()));
                versions.last_mut().expect("just pushed")
            }
        };
        if row.success {
            slot.1 = Some(row);
            slot.2.clear();
        } else {
            slot.2.push(row);
        }
    }
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    let in_effect = |v: &Version| {
        versions
            .iter()
            .any(|(sv, row, _)| sv == v && row.is_some_and(|r| r.kind != "undo"))
    };
    let baseline = versions
        .iter()
        .filter(|(_, row, _)| row.is_some_and(|r| r.kind == "baseline"))
        .map(|(v, _, _)| v.clone())
        .max();
    let versioned: Vec<&Migration> = migrations
        .iter()
        .filter(|m| m.kind == Kind::Versioned)
        .collect();

    for (version, row, failures) in &versions {
        // A baseline covers earlier versions, failed attempts included.
        if row.is_some() || baseline.as_ref().is_none_or(|b| version > b) {
            for failure in failures {
                judge_failure(&mut plan, failure);
            }
        }
        let Some(row) = row.filter(|r| r.kind != "undo") else {
            continue;
        };
        plan.applied.push(row.clone());
        if row.kind == "baseline" {
            continue;
        }
        match versioned.iter().find(|m| m.version.as_ref() == Some(version)) {
            None => plan.problems.push(format!(
                "version {version} ({}) was applied on {} but its file is missing",
                row.script, row.installed_on
            )),
            Some(m) if m.checksum != row.checksum => plan.problems.push(format!(
                "{} was changed after it was applied on {} (checksum {} then, {} now): restore the file, \
                 or undo the version first; action=repair accepts the change",
                m.script,
                row.installed_on,
                short(&row.checksum),
                short(&m.checksum)
            )),
            Some(_) => {}
        }
    }
    let blocked: Vec<&Version> = versions
        .iter()
        .filter(|(_, _, failures)| failures.iter().any(|f| !f.in_transaction))
        .map(|(v, _, _)| v)
        .collect();
    let latest = plan.applied.iter().filter_map(|r| r.version.clone()).max();
    for m in versioned {
        let v = m
            .version
            .as_ref()
            .expect("versioned migrations have a version");
        if in_effect(v) || baseline.as_ref().is_some_and(|b| v <= b) || blocked.contains(&v) {
            continue;
        }
        if let Some(latest) = latest.as_ref().filter(|l| v < *l) {
            if !out_of_order {
                plan.problems.push(format!(
                    "{} is pending but version {latest} is already applied; apply it with out_of_order=true \
                     or renumber it",
                    m.script
                ));
                continue;
            }
        }
        plan.pending.push(m.clone());
    }
    for m in migrations.iter().filter(|m| m.kind == Kind::Repeatable) {
        let mine: Vec<&&Applied> = rows
            .iter()
            .filter(|r| r.kind == "repeatable" && r.description == m.description)
            .collect();
        let last_success = mine.iter().rev().find(|r| r.success);
        for failure in mine
            .iter()
            .filter(|r| !r.success && last_success.is_none_or(|s| r.rank > s.rank))
        {
            judge_failure(&mut plan, failure);
        }
        if last_success.is_none_or(|r| r.checksum != m.checksum) {
            plan.repeatable.push(m.clone());
        }
    }
    plan
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically_by_parts() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1_2"), v("1.2"));
        assert!(Version::parse("1.a").is_none());
        assert_eq!(v("2026.11.1").to_string(), "2026.11.1");
    }

    #[test]
    fn file_names_follow_flyway() {
        let (k, ver, d) = parse_name("V1_2__add_users_table.sql").unwrap().unwrap();
        assert_eq!(
            (k, ver.unwrap().to_string(), d.as_str()),
            (Kind::Versioned, "1.2".to_string(), "add users table")
        );
        assert!(parse_name("R__views.sql").unwrap().is_ok());
        assert!(parse_name("V1_add.sql")
            .unwrap()
            .unwrap_err()
            .contains("two underscores"));
        assert!(parse_name("R1__x.sql").unwrap().is_err());
        assert!(parse_name("notes.txt").is_none());
    }

    fn migration(script: &str, sql: &str) -> Migration {
        let (kind, version, description) = parse_name(script).unwrap().unwrap();
        Migration {
            kind,
            version,
            description,
            script: script.into(),
            checksum: hex::encode(Sha256::digest(sql.as_bytes())),
            sql: sql.into(),
            no_transaction: false,
        }
    }

    fn applied(rank: i64, m: &Migration, kind: &str, success: bool) -> Applied {
        Applied {
            rank,
            version: m.version.clone(),
            description: m.description.clone(),
            kind: kind.into(),
            script: m.script.clone(),
            checksum: m.checksum.clone(),
            installed_on: "2026-11-01".into(),
            success,
            in_transaction: !m.no_transaction,
        }
    }

    #[test]
    fn pending_follow_the_applied_and_a_second_plan_is_empty() {
        let files = vec![
            migration("V1__a.sql", "a"),
            migration("V1.10__c.sql", "c"),
            migration("V1.9__b.sql", "b"),
            migration("R__views.sql", "v"),
        ];
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| a.version.cmp(&b.version));
        let p = plan(&sorted, &[], false);
        let names: Vec<&str> = p.pending.iter().map(|m| m.script.as_str()).collect();
        assert_eq!(names, ["V1__a.sql", "V1.9__b.sql", "V1.10__c.sql"]);
        assert_eq!(p.repeatable.len(), 1);

        let history: Vec<Applied> = sorted
            .iter()
            .enumerate()
            .map(|(i, m)| applied(i as i64, m, m.kind.name(), true))
            .collect();
        let p = plan(&sorted, &history, false);
        assert!(
            p.pending.is_empty() && p.repeatable.is_empty() && p.problems.is_empty(),
            "{:?}",
            p.problems
        );

        let mut changed = sorted.clone();
        changed[0] = migration("R__views.sql", "v2");
        let p = plan(&changed, &history, false);
        assert_eq!(p.repeatable.len(), 1, "a changed repeatable is re-applied");
    }

    #[test]
    fn edited_missing_and_out_of_order_are_problems() {
        let v1 = migration("V1__a.sql", "a");
        let v2 = migration("V2__b.sql", "b");
        let history = vec![
            applied(1, &v1, "versioned", true),
            applied(2, &v2, "versioned", true),
        ];

        let edited = vec![migration("V1__a.sql", "a edited"), v2.clone()];
        let p = plan(&edited, &history, false);
        assert!(
            p.problems[0].contains("V1__a.sql was changed after it was applied"),
            "{:?}",
            p.problems
        );

        let p = plan(std::slice::from_ref(&v2), &history, false);
        assert!(
            p.problems[0].contains("version 1 (V1__a.sql) was applied")
                && p.problems[0].contains("missing")
        );

        let late = vec![v1.clone(), migration("V1.5__late.sql", "l"), v2.clone()];
        let p = plan(&late, &history, false);
        assert!(
            p.problems[0].contains("V1.5__late.sql is pending but version 2 is already applied")
        );
        let p = plan(&late, &history, true);
        assert!(p.problems.is_empty());
        assert_eq!(p.pending[0].script, "V1.5__late.sql");
    }

    #[test]
    fn failed_undone_and_baselined_versions() {
        let v1 = migration("V1__a.sql", "a");
        let v2 = migration("V2__b.sql", "b");
        let files = vec![v1.clone(), v2.clone()];

        // The failed attempt ran in a transaction, so it was rolled back: it is tried again.
        let failed = [
            applied(1, &v1, "versioned", true),
            applied(2, &v2, "versioned", false),
        ];
        let p = plan(&files, &failed, false);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.failed.len(), 1);
        assert_eq!(p.pending[0].script, "V2__b.sql");
        // Outside a transaction nothing was rolled back: a repair comes first, even when the
        // file has changed since.
        let half_applied = [
            applied(1, &v1, "versioned", true),
            Applied {
                in_transaction: false,
                ..applied(2, &v2, "versioned", false)
            },
        ];
        let p = plan(&files, &half_applied, false);
        assert!(
            p.problems[0].contains("V2__b.sql failed on 2026-11-01 and may be half applied"),
            "{:?}",
            p.problems
        );
        assert!(p.pending.is_empty() && p.failed.is_empty());
        // A failed undo leaves the version applied.
        let u2 = migration("U2__b.sql", "undo b");
        let with_undo = vec![v1.clone(), v2.clone(), u2.clone()];
        let p = plan(
            &with_undo,
            &[
                applied(1, &v1, "versioned", true),
                applied(2, &v2, "versioned", true),
                applied(3, &u2, "undo", false),
            ],
            false,
        );
        assert!(
            p.problems.is_empty() && p.pending.is_empty(),
            "{:?}",
            p.problems
        );
        assert_eq!(p.applied.len(), 2);

        let undone = vec![
            applied(1, &v1, "versioned", true),
            applied(2, &v2, "versioned", true),
            applied(3, &v2, "undo", true),
        ];
        let p = plan(&files, &undone, false);
        assert!(p.problems.is_empty());
        assert_eq!(
            p.pending
                .iter()
                .map(|m| m.script.as_str())
                .collect::<Vec<_>>(),
            ["V2__b.sql"]
        );

        let baseline = Applied {
            script: "<< baseline >>".into(),
            checksum: String::new(),
            ..applied(1, &v1, "baseline", true)
        };
        let p = plan(&files, &[baseline], false);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            p.pending
                .iter()
                .map(|m| m.script.as_str())
                .collect::<Vec<_>>(),
            ["V2__b.sql"]
        );
    }
}
