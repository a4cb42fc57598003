//! Backup-set mechanics that are better in Rust than in Rhai: a set's data key (made, wrapped
//! by the operator's key, opened once per run), opening a set with its manifest authenticated,
//! and retention over calendar periods.

use std::path::Path;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::archive::{check_keys, encryption, open_key};
use super::{checked_path, error, opt_int, PrimResult};
use crate::archive::{self, Encryption, Key, Manifest, SetKey, SET_KEY_FILE};
use crate::prims::log;
use crate::retention::{self, Policy};
use crate::run::Run;
use crate::secrets::Secret;

/// The operator's key options `new_set_key`, `open_set_key` and `open_set` take: what
/// `backup_set::write_key` or `read_key` returns.
const OPERATOR_KEYS: &[&str] = &[
    "passphrase",
    "work_factor",
    "recipients",
    "recipients_file",
    "identity",
];

/// A set key as scripts hold it: `recipient`, `identity_key` (a Secret), and the option maps
/// to `write` the set's artifacts with and to `read` them.
fn set_key_map(key: &SetKey) -> Map {
    let secret = Dynamic::from(key.identity().clone());
    let mut read = Map::new();
    read.insert("identity_key".into(), secret.clone());
    let mut write = Map::new();
    write.insert(
        "recipients".into(),
        Dynamic::from(vec![Dynamic::from(key.recipient.clone())]),
    );
    let mut map = Map::new();
    map.insert("recipient".into(), key.recipient.clone().into());
    map.insert("identity_key".into(), secret);
    map.insert("read".into(), read.into());
    map.insert("write".into(), write.into());
    map
}

/// The set key a script passes back (a `set_key_map`).
pub(crate) fn set_key_of(value: &Map, what: &str) -> PrimResult<SetKey> {
    let secret = value
        .get("identity_key")
        .and_then(|v| v.read_lock::<Secret>().map(|s| s.clone()))
        .ok_or_else(|| {
            error(format!(
                "{what}: the set key must be what backup::open_set_key returns"
            ))
        })?;
    SetKey::from_identity(&secret).map_err(|why| error(format!("{what}: {why}")))
}

/// Where the cache keeps the key of a set a dry run only planned.
fn planned_id(path: &Path) -> String {
    format!("planned:{}", path.display())
}

fn new_set_key(ctx: &NativeCallContext, dir: &str, operator: &Map) -> PrimResult<Map> {
    let what = "backup::new_set_key";
    let run = Run::of(ctx);
    check_keys(operator, OPERATOR_KEYS, what)?;
    let mut writing = operator.clone();
    writing.remove("identity");
    let encryption = encryption(&run, &writing, what)?;
    if matches!(encryption, Encryption::None) {
        return Err(error(format!(
            "{what}: a backup set's key must be encrypted: give a passphrase or recipients"
        )));
    }
    let dir = checked_path(&run, dir)?;
    let path = dir.join(SET_KEY_FILE);
    let key = SetKey::generate();
    if run.mutate(
        what,
        format!(
            "write a new data key for the set in {}, encrypted with {encryption}",
            dir.display()
        ),
    ) {
        let sealed = key
            .wrap(&path, &encryption)
            .map_err(|e| error(e.to_string()))?;
        run.remember_set_key(sealed.sha256, key.clone());
    } else {
        run.remember_set_key(planned_id(&path), key.clone());
    }
    Ok(set_key_map(&key))
}

fn open_set_key(ctx: &NativeCallContext, dir: &str, operator: &Map) -> PrimResult<SetKey> {
    let what = "backup::open_set_key";
    let run = Run::of(ctx);
    check_keys(operator, OPERATOR_KEYS, what)?;
    let dir = checked_path(&run, dir)?;
    let path = dir.join(SET_KEY_FILE);
    let id = match archive::sha256_file(&path) {
        Ok(sha) => sha,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && run.options.dry_run => {
            planned_id(&path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(error(format!(
                "backup set {} has no {SET_KEY_FILE}: the set is incomplete or was altered",
                dir.display()
            )))
        }
        Err(e) => return Err(error(format!("cannot read {}: {e}", path.display()))),
    };
    if let Some(key) = run.set_key(&id) {
        return Ok(key);
    }
    let mut reading = operator.clone();
    for writing_only in ["work_factor", "recipients", "recipients_file"] {
        reading.remove(writing_only);
    }
    let key = match open_key(&run, &reading, what)? {
        Key::None if operator.contains_key("recipients") || operator.contains_key("recipients_file") => {
            return Err(error(format!(
                "the key of backup set {} is encrypted to age recipients: pass identity=<age identity file> to read it",
                dir.display()
            )))
        }
        Key::None => {
            return Err(error(format!(
                "{what}: give the passphrase or an identity that opens the key of backup set {}",
                dir.display()
            )))
        }
        key => key,
    };
    let key = SetKey::unwrap(&path, &key)
        .map_err(|e| error(format!("backup set {}: {e}", dir.display())))?;
    run.remember_set_key(id, key.clone());
    Ok(key)
}

/// The set name and stack name a set's directory says: `<stack>/<set>` or
/// `<stack>/.<set>.partial`.
fn names_of(dir: &Path) -> (String, String) {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let set = base
        .strip_prefix('.')
        .and_then(|b| b.strip_suffix(".partial"))
        .unwrap_or(&base)
        .to_string();
    let stack = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    (set, stack)
}

fn open_set(ctx: &NativeCallContext, dir: &str, operator: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let path = checked_path(&run, dir)?;
    let manifest_path = path.join("manifest.json");
    if !manifest_path.exists() {
        return Err(error(format!(
            "{} has no manifest.json: not a complete backup set",
            path.display()
        )));
    }
    let manifest = Manifest::read(&manifest_path).map_err(|e| error(e.to_string()))?;
    let (set, stack) = names_of(&path);
    let read = if manifest.is_authenticated() {
        let key = open_set_key(ctx, dir, operator)?;
        manifest
            .check_mac(&manifest_path, &key)
            .map_err(|e| error(format!("backup set {}: {}", path.display(), e.problem)))?;
        let said = |field: &str| {
            manifest
                .metadata
                .get(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        if said("set") != set || said("stack") != stack {
            return Err(error(format!(
                "backup set {}: its manifest says it is set {} of stack {}, not set {set} of stack {stack}; a set renamed or moved by hand is refused",
                path.display(),
                said("set"),
                said("stack"),
            )));
        }
        Dynamic::from(set_key_map(&key)["read"].clone())
    } else {
        log::emit(
            log::Level::Warn,
            &format!(
                "backup set {} is in format v1: its manifest is not authenticated and each artifact has its own key derivation; a new backup writes format v2",
                path.display()
            ),
        );
        let mut read = Map::new();
        for key in ["passphrase", "identity"] {
            if let Some(v) = operator.get(key).filter(|v| !v.is_unit()) {
                read.insert(key.into(), v.clone());
            }
        }
        if read.is_empty() {
            Dynamic::UNIT
        } else {
            read.into()
        }
    };
    let mut map = Map::new();
    map.insert("dir".into(), dir.into());
    map.insert("name".into(), set.into());
    map.insert("stack".into(), stack.into());
    map.insert(
        "format".into(),
        Dynamic::from(if manifest.is_authenticated() {
            2_i64
        } else {
            1
        }),
    );
    map.insert("manifest".into(), super::manifest::to_dynamic(&manifest));
    map.insert("key".into(), read);
    Ok(map)
}

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
    /// Makes the data key of a new backup set (format v2) in `dir`: a random age X25519
    /// identity, written to `dir/key.age` encrypted with the operator's key (`passphrase`,
    /// `recipients` or `recipients_file`). Returns the set key: `recipient`, `identity_key` (a
    /// Secret), and `write` / `read`, the key options to seal and open the set's artifacts.
    #[rhai_fn(return_raw)]
    pub fn new_set_key(
        ctx: NativeCallContext,
        dir: &str,
        operator: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::new_set_key(&ctx, dir, &operator)
    }

    /// The data key of the set in `dir`, opened with the operator's key (`passphrase` or
    /// `identity`): once per run, whatever the number of calls (a key this run made or
    /// opened before costs nothing).
    #[rhai_fn(return_raw)]
    pub fn open_set_key(
        ctx: NativeCallContext,
        dir: &str,
        operator: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::open_set_key(&ctx, dir, &operator).map(|key| super::set_key_map(&key))
    }

    /// Opens the backup set in `dir` before anything else reads it: its manifest is read and,
    /// for a format v2 set, authenticated under the set's key (any change to it is refused)
    /// and checked to name this set and stack. A format v1 set opens with a warning. Returns
    /// `#{dir, name, stack, format, manifest, key}`, where `key` opens its artifacts (() for a
    /// v1 set written to recipients when no identity is given: checksums only).
    #[rhai_fn(return_raw)]
    pub fn open_set(
        ctx: NativeCallContext,
        dir: &str,
        operator: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::open_set(&ctx, dir, &operator)
    }

    /// Decides which backup sets to keep, restic-style: for `keep_daily` / `keep_weekly` /
    /// `keep_monthly` (default 7 / 4 / 12) the newest set of each of the last N UTC days, ISO
    /// weeks and months is kept; the policies are ORed. `sets` are set names starting with a
    /// `time::stamp()`. Returns `[#{set, time, keep, reasons}]`, newest first.
    #[rhai_fn(return_raw)]
    pub fn retention(sets: Array, policy: Map) -> Result<Array, Box<EvalAltResult>> {
        super::retention(&sets, &policy)
    }
}
