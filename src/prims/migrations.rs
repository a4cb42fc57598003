//! Schema migrations: reading Flyway-named files, comparing them with the history table, and
//! writing the input the `migrate` playbook sends to the database's client (`psql`, `mariadb`)
//! on stdin. Every function takes an options map: `engine` (`postgres`, the default, or
//! `mariadb`) and `table` (the history table, default `runbook_schema_history`).

use rhai::plugin::*;
use rhai::{Array, Map};

use super::{checked_path, error, opt_bool, opt_int, opt_string, plain_or_secret, PrimResult};
use crate::migrations::history::{self, Dialect};
use crate::migrations::mariadb::{self, MariaDb};
use crate::migrations::postgres::Postgres;
use crate::migrations::{self, Migration, Version};
use crate::run::Run;

const DEFAULT_TABLE: &str = "runbook_schema_history";

fn scan(ctx: &NativeCallContext, dir: &str) -> PrimResult<Vec<Migration>> {
    let resolved = checked_path(&Run::of(ctx), dir)?;
    migrations::scan(&resolved).map_err(|problems| error(problems.join("; ")))
}

fn find(ctx: &NativeCallContext, dir: &str, script: &str) -> PrimResult<Migration> {
    scan(ctx, dir)?
        .into_iter()
        .find(|m| m.script == script)
        .ok_or_else(|| error(format!("no migration file {script} in {dir}")))
}

fn table(options: &Map) -> PrimResult<String> {
    let table = opt_string(options, "table")?.unwrap_or_else(|| DEFAULT_TABLE.to_string());
    history::check_table(&table).map_err(error)?;
    Ok(table)
}

/// The database the options name (`engine`).
fn dialect(options: &Map) -> PrimResult<&'static dyn Dialect> {
    match opt_string(options, "engine")?.as_deref() {
        None | Some("postgres") => Ok(&Postgres),
        Some("mariadb") => Ok(&MariaDb),
        Some(other) => Err(error(format!(
            "engine `{other}` is not supported: postgres or mariadb"
        ))),
    }
}

fn installed_by(options: &Map) -> PrimResult<String> {
    Ok(opt_string(options, "installed_by")?
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "runbook".into())))
}

/// `undo` when the options say the run undoes a version, else `apply`.
fn run_kind(options: &Map) -> PrimResult<&'static str> {
    Ok(if opt_bool(options, "undo")?.unwrap_or(false) {
        "undo"
    } else {
        "apply"
    })
}

/// A version as scripts see it: its text, or () for none.
fn version_value(version: Option<&Version>) -> Dynamic {
    version.map_or(Dynamic::UNIT, |v| v.to_string().into())
}

fn describe(m: &Migration) -> Dynamic {
    let mut map = Map::new();
    map.insert("script".into(), m.script.clone().into());
    map.insert("type".into(), m.kind.name().into());
    map.insert("version".into(), version_value(m.version.as_ref()));
    map.insert("description".into(), m.description.clone().into());
    map.insert("checksum".into(), m.checksum.clone().into());
    map.insert("no_transaction".into(), m.no_transaction.into());
    map.into()
}

fn plan(ctx: &NativeCallContext, dir: &str, history: &str, options: &Map) -> PrimResult<Map> {
    let files = scan(ctx, dir)?;
    let rows = history::parse_history(history).map_err(error)?;
    let plan = migrations::plan(
        &files,
        &rows,
        opt_bool(options, "out_of_order")?.unwrap_or(false),
    );
    let mut map = Map::new();
    let rows = |list: &[migrations::Applied]| -> Array {
        list.iter()
            .map(|a| {
                let mut row = Map::new();
                row.insert("version".into(), version_value(a.version.as_ref()));
                row.insert("script".into(), a.script.clone().into());
                row.insert("type".into(), a.kind.clone().into());
                row.insert("installed_on".into(), a.installed_on.clone().into());
                Dynamic::from(row)
            })
            .collect()
    };
    let latest = plan.applied.iter().filter_map(|a| a.version.clone()).max();
    let target = plan
        .pending
        .iter()
        .filter_map(|m| m.version.clone())
        .chain(latest.clone())
        .max();
    map.insert("applied".into(), rows(&plan.applied).into());
    map.insert("failed".into(), rows(&plan.failed).into());
    map.insert("latest".into(), version_value(latest.as_ref()));
    map.insert("target".into(), version_value(target.as_ref()));
    map.insert(
        "pending".into(),
        plan.pending.iter().map(describe).collect::<Array>().into(),
    );
    map.insert(
        "repeatable".into(),
        plan.repeatable
            .iter()
            .map(describe)
            .collect::<Array>()
            .into(),
    );
    map.insert(
        "problems".into(),
        plan.problems
            .into_iter()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    map.insert(
        "files".into(),
        files.iter().map(describe).collect::<Array>().into(),
    );
    Ok(map)
}

fn undo_sql(ctx: &NativeCallContext, dir: &str, version: &str, options: &Map) -> PrimResult<Map> {
    let wanted =
        Version::parse(version).ok_or_else(|| error(format!("`{version}` is not a version")))?;
    let undo = scan(ctx, dir)?
        .into_iter()
        .find(|m| m.kind == migrations::Kind::Undo && m.version.as_ref() == Some(&wanted))
        .ok_or_else(|| {
            error(format!(
                "version {version} has no undo file (U{version}__<description>.sql) in {dir}"
            ))
        })?;
    let mut map = Map::new();
    map.insert("script".into(), undo.script.clone().into());
    map.insert(
        "sql".into(),
        dialect(options)?
            .apply_script(&table(options)?, &undo, "undo", &installed_by(options)?)
            .into(),
    );
    Ok(map)
}

#[export_module]
pub mod api {
    use crate::secrets::Secret;

    /// Client input that creates the history table if it is missing. Options: `engine`, `table`.
    #[rhai_fn(return_raw)]
    pub fn history_table_sql(options: Map) -> Result<String, Box<EvalAltResult>> {
        Ok(super::dialect(&options)?.create_history(&super::table(&options)?))
    }

    /// Client input that prints the history rows (nothing when the table does not exist yet);
    /// pass its output to `migrations::plan`. Options: `engine`, `table`.
    #[rhai_fn(return_raw)]
    pub fn history_query_sql(options: Map) -> Result<String, Box<EvalAltResult>> {
        Ok(super::dialect(&options)?.query_history(&super::table(&options)?))
    }

    /// Compares the migration files of `dir` with the history output: returns `#{applied,
    /// failed, latest, target, pending, repeatable, problems, files}` (`target`: the latest
    /// version once the pending ones are applied; `failed`: attempts that were rolled back and
    /// will be tried again). Options: `out_of_order` (default false).
    #[rhai_fn(return_raw)]
    pub fn plan(
        ctx: NativeCallContext,
        dir: &str,
        history: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::plan(&ctx, dir, history, &options)
    }

    /// Client input that applies one migration file under the migration lock, in its own
    /// transaction (unless it carries `-- runbook:no-transaction`), skipping it when a
    /// concurrent run applied it first, and records it in the history. Options: `engine`,
    /// `table`, `installed_by`.
    #[rhai_fn(return_raw)]
    pub fn apply_sql(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let m = super::find(&ctx, dir, script)?;
        Ok(super::dialect(&options)?.apply_script(
            &super::table(&options)?,
            &m,
            "apply",
            &super::installed_by(&options)?,
        ))
    }

    /// The undo of `version`: `#{script, sql}` from its `U<version>__*.sql` file; an error when
    /// there is none. Options as for `apply_sql`.
    #[rhai_fn(return_raw)]
    pub fn undo_sql(
        ctx: NativeCallContext,
        dir: &str,
        version: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::undo_sql(&ctx, dir, version, &options)
    }

    /// Client input that records a failed attempt of `script`. Options: `engine`, `table`,
    /// `installed_by`, `ms` (execution time), `undo` (bool).
    #[rhai_fn(return_raw)]
    pub fn failure_sql(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let m = super::find(&ctx, dir, script)?;
        let ms = opt_int(&options, "ms")?.unwrap_or(0);
        Ok(history::record_failure(
            super::dialect(&options)?,
            &super::table(&options)?,
            &m,
            super::run_kind(&options)?,
            &super::installed_by(&options)?,
            ms,
        ))
    }

    /// Client input that marks the database as being at `version` without running anything
    /// (refused by the database when a migration is applied already).
    #[rhai_fn(return_raw)]
    pub fn baseline_sql(
        version: &str,
        description: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let v = Version::parse(version)
            .ok_or_else(|| super::error(format!("`{version}` is not a version")))?;
        Ok(history::baseline_script(
            super::dialect(&options)?,
            &super::table(&options)?,
            &v,
            description,
            &super::installed_by(&options)?,
        ))
    }

    /// Client input that deletes failed entries and accepts the current checksums of the files.
    #[rhai_fn(return_raw)]
    pub fn repair_sql(
        ctx: NativeCallContext,
        dir: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(history::repair_script(
            super::dialect(&options)?,
            &super::table(&options)?,
            &super::scan(&ctx, dir)?,
        ))
    }

    /// Turns the client's stderr for `apply_sql` (or `undo_sql`) into `FILE:LINE: message`,
    /// the line counted in the migration file. Options: `engine`, `table`, `undo` (bool).
    #[rhai_fn(return_raw)]
    pub fn explain_error(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        stderr: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(super::dialect(&options)?.explain_error(
            stderr,
            &super::table(&options)?,
            &super::find(&ctx, dir, script)?,
            super::run_kind(&options)?,
        ))
    }

    /// True when the client's stderr says a concurrent run applied the migration first.
    pub fn applied_concurrently(stderr: &str) -> bool {
        stderr.contains(history::ALREADY_APPLIED)
    }

    /// Credentials for one `mariadb` client exec: `#{path, content}`, a fresh path under
    /// `/tmp` and the options file (a Secret) to place there with `docker::exec`'s `files`, for
    /// `mariadb --defaults-extra-file=PATH`: `password` (a Secret, text, or () for none) never
    /// reaches a command line.
    #[rhai_fn(return_raw)]
    pub fn mariadb_client_defaults(
        user: &str,
        password: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        let password = if password.is_unit() {
            None
        } else {
            Some(super::plain_or_secret(&password, "the password")?)
        };
        let mut map = Map::new();
        map.insert(
            "path".into(),
            format!("/tmp/runbook-client-{:016x}.cnf", rand::random::<u64>()).into(),
        );
        map.insert(
            "content".into(),
            Dynamic::from(Secret::new(super::mariadb::client_defaults(
                user,
                password.as_deref(),
            ))),
        );
        Ok(map)
    }
}
