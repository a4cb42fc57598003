//! Backup-set mechanics that are better in Rust than in Rhai: retention over calendar periods.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::{error, opt_int, PrimResult};
use crate::retention::{self, Policy};

fn retention(sets: &Array, policy: &Map) -> PrimResult<Array> {
    let count = |key: &str, default: usize| -> PrimResult<usize> {
        match opt_int(policy, key)? {
            Some(n) if n < 0 => Err(error(format!("`{key}` must be zero or more, got {n}"))),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            None => Ok(default),
        }
    };
    let defaults = Policy::default();
    let policy = Policy {
        daily: count("keep_daily", defaults.daily)?,
        weekly: count("keep_weekly", defaults.weekly)?,
        monthly: count("keep_monthly", defaults.monthly)?,
    };
    let mut dated = Vec::with_capacity(sets.len());
    for set in sets {
        let name = set.to_string();
        let stamp = name.get(..16).unwrap_or(&name);
        let time = chrono::NaiveDateTime::parse_from_str(stamp, super::time::STAMP_FORMAT)
            .map_err(|_| {
                error(format!(
                    "backup set `{name}` does not start with a time like 20261122T164001Z"
                ))
            })?
            .and_utc();
        dated.push((name, time));
    }
    Ok(retention::apply(&dated, policy)
        .into_iter()
        .map(|v| {
            let mut m = Map::new();
            m.insert("set".into(), v.set.into());
            m.insert(
                "time".into(),
                v.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .into(),
            );
            m.insert("keep".into(), v.keep.into());
            m.insert(
                "reasons".into(),
                v.reasons
                    .into_iter()
                    .map(Dynamic::from)
                    .collect::<Array>()
                    .into(),
            );
            Dynamic::from(m)
        })
        .collect())
}

#[export_module]
pub mod api {
    /// Decides which backup sets to keep, restic-style: for `keep_daily` / `keep_weekly` /
    /// `keep_monthly` (default 7 / 4 / 12) the newest set of each of the last N UTC days, ISO
    /// weeks and months is kept; the policies are ORed. `sets` are set names starting with a
    /// `time::stamp()`. Returns `[#{set, time, keep, reasons}]`, newest first.
    #[rhai_fn(return_raw)]
    pub fn retention(sets: Array, policy: Map) -> Result<Array, Box<EvalAltResult>> {
        super::retention(&sets, &policy)
    }
}
