//! Schema migrations: reading Flyway-named files, comparing them with the history table, and
//! writing the SQL the `migrate` playbook sends to `psql` on stdin.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::{checked_path, error, opt_bool, opt_int, opt_string, PrimResult};
use crate::migrations::{self, postgres, Migration, Version};
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
    postgres::check_table(&table).map_err(error)?;
    Ok(table)
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
    let rows = postgres::parse_history(history).map_err(error)?;
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
        postgres::apply_script(&table(options)?, &undo, "undo", &installed_by(options)?).into(),
    );
    Ok(map)
}

#[export_module]
pub mod api {
    /// SQL that creates the history table if it is missing (`table` defaults to
    /// `runbook_schema_history`).
    #[rhai_fn(return_raw)]
    pub fn history_table_sql(table: &str) -> Result<String, Box<EvalAltResult>> {
        postgres::check_table(table).map_err(super::error)?;
        Ok(postgres::create_history(table))
    }

    /// psql input that prints the history rows (nothing when the table does not exist yet);
    /// run it with `psql -At` and pass the output to `migrations::plan`.
    #[rhai_fn(return_raw)]
    pub fn history_query_sql(table: &str) -> Result<String, Box<EvalAltResult>> {
        postgres::check_table(table).map_err(super::error)?;
        Ok(postgres::query_history(table))
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

    /// psql input that applies one migration file in its own transaction (unless it carries
    /// `-- runbook:no-transaction`) under an advisory lock, and records it in the history.
    /// Options: `table`, `installed_by`.
    #[rhai_fn(return_raw)]
    pub fn apply_sql(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let m = super::find(&ctx, dir, script)?;
        Ok(postgres::apply_script(
            &super::table(&options)?,
            &m,
            "apply",
            &super::installed_by(&options)?,
        ))
    }

    /// The undo of `version`: `#{script, sql}` from its `U<version>__*.sql` file; an error when
    /// there is none.
    #[rhai_fn(return_raw)]
    pub fn undo_sql(
        ctx: NativeCallContext,
        dir: &str,
        version: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::undo_sql(&ctx, dir, version, &options)
    }

    /// psql input that records a failed attempt of `script` (after its transaction rolled
    /// back). Options: `table`, `installed_by`, `ms` (execution time), `undo` (bool).
    #[rhai_fn(return_raw)]
    pub fn failure_sql(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let m = super::find(&ctx, dir, script)?;
        let ms = opt_int(&options, "ms")?.unwrap_or(0);
        Ok(postgres::record_failure(
            &super::table(&options)?,
            &m,
            super::run_kind(&options)?,
            &super::installed_by(&options)?,
            ms,
        ))
    }

    /// psql input that marks the database as being at `version` without running anything.
    #[rhai_fn(return_raw)]
    pub fn baseline_sql(
        version: &str,
        description: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let v = Version::parse(version)
            .ok_or_else(|| super::error(format!("`{version}` is not a version")))?;
        Ok(postgres::baseline_script(
            &super::table(&options)?,
            &v,
            description,
            &super::installed_by(&options)?,
        ))
    }

    /// psql input that deletes failed entries and accepts the current checksums of the files.
    #[rhai_fn(return_raw)]
    pub fn repair_sql(
        ctx: NativeCallContext,
        dir: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(postgres::repair_script(
            &super::table(&options)?,
            &super::scan(&ctx, dir)?,
        ))
    }

    /// Turns psql's stderr for `apply_sql` (or `undo_sql`) into `FILE:LINE: message`, the
    /// line counted in the migration file. Options: `table`, `undo` (bool).
    #[rhai_fn(return_raw)]
    pub fn explain_error(
        ctx: NativeCallContext,
        dir: &str,
        script: &str,
        stderr: &str,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        Ok(postgres::explain_error(
            stderr,
            &super::table(&options)?,
            &super::find(&ctx, dir, script)?,
            super::run_kind(&options)?,
        ))
    }

    /// True when psql's stderr says a concurrent run applied the migration first.
    pub fn applied_concurrently(stderr: &str) -> bool {
        stderr.contains(postgres::ALREADY_APPLIED)
    }
}
