//! Encrypted, checksummed archives: `pack` a directory or `seal` a file into one
//! tar → zstd/gzip/none → age file with its SHA-256 computed on the way; `unpack`, `unseal`,
//! `list` and `verify` the way back. The files open with the standard tools too:
//! `age -d FILE | zstd -d | tar -x`.
//!
//! Keys come as options: `#{passphrase: secret}` (scrypt work factor `work_factor`, default
//! 18), `#{recipients: ["age1..."]}` or `#{recipients_file: path}` to write, `#{identity:
//! path}` or `#{identity_key: secret}` (an `AGE-SECRET-KEY-1...` Secret, as a backup set's key)
//! to read, `#{encrypt: false}` for an unencrypted file.

use std::path::Path;
use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::{checked_path, error, opt_bool, opt_int, opt_string, PrimResult};
use crate::archive::{
    self, Compression, Encryption, Key, SealOptions, Sealed, UnsealOptions, DEFAULT_WORK_FACTOR,
};
use crate::run::Run;
use crate::secrets::Secret;

/// The option keys each primitive understands; anything else is a typo, refused.
const SEAL_KEYS: &[&str] = &[
    "passphrase",
    "work_factor",
    "recipients",
    "recipients_file",
    "encrypt",
    "compression",
    "level",
    "workers",
    "name",
];
const OPEN_KEYS: &[&str] = &[
    "passphrase",
    "identity",
    "identity_key",
    "sha256",
    "size",
    "special_files",
    "name",
    "max_bytes",
    "owners",
];

fn int(n: u64) -> Dynamic {
    Dynamic::from(INT::try_from(n).unwrap_or(INT::MAX))
}

pub(crate) fn check_keys(options: &Map, allowed: &[&str], what: &str) -> PrimResult<()> {
    for key in options.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(error(format!(
                "{what}: unknown option `{key}` (known: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// A passphrase option: only a Secret, so it never sits in a script or a log.
fn passphrase(options: &Map, what: &str) -> PrimResult<Option<Secret>> {
    match options.get("passphrase").filter(|v| !v.is_unit()) {
        None => Ok(None),
        Some(v) => v
            .read_lock::<Secret>()
            .map(|s| Some(s.clone()))
            .ok_or_else(|| {
                error(format!(
                "{what}: option `passphrase` must be a Secret (env::secret, fs::read_secret, a \
                 secret parameter or crypto::prompt_passphrase), not a {}",
                crate::value::kind(v)
            ))
            }),
    }
}

fn recipients(run: &Run, options: &Map, what: &str) -> PrimResult<Vec<age::x25519::Recipient>> {
    let mut texts = Vec::new();
    match options.get("recipients").filter(|v| !v.is_unit()) {
        None => {}
        Some(v) if v.is_string() => texts.push(v.to_string()),
        Some(v) => match v.read_lock::<Array>() {
            Some(list) => texts.extend(list.iter().map(|r| r.to_string())),
            None => {
                return Err(error(format!(
                    "{what}: option `recipients` must be a list of age1... keys"
                )))
            }
        },
    }
    if let Some(file) = opt_string(options, "recipients_file")? {
        let path = checked_path(run, &file)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| error(format!("{what}: cannot read recipients file {file}: {e}")))?;
        texts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    texts
        .iter()
        .map(|t| archive::parse_recipient(t).map_err(|e| error(format!("{what}: {e}"))))
        .collect()
}

/// The encryption a key option map asks for (`passphrase`, `recipients`, `recipients_file`,
/// `encrypt: false`).
pub(crate) fn encryption(run: &Run, options: &Map, what: &str) -> PrimResult<Encryption> {
    let passphrase = passphrase(options, what)?;
    let recipients = recipients(run, options, what)?;
    let encrypt = opt_bool(options, "encrypt")?.unwrap_or(true);
    match (passphrase, recipients.is_empty(), encrypt) {
        (Some(_), false, _) => Err(error(format!(
            "{what}: give a passphrase or recipients, not both (age cannot mix them)"
        ))),
        (Some(_), true, false) | (None, false, false) => Err(error(format!(
            "{what}: `encrypt: false` contradicts the key given"
        ))),
        (Some(passphrase), true, true) => {
            let work_factor =
                opt_int(options, "work_factor")?.unwrap_or(DEFAULT_WORK_FACTOR as INT);
            let work_factor = u8::try_from(work_factor).map_err(|_| {
                error(format!(
                    "{what}: `work_factor` {work_factor} is out of range"
                ))
            })?;
            Ok(Encryption::Passphrase {
                passphrase,
                work_factor,
            })
        }
        (None, false, true) => Ok(Encryption::Recipients(recipients)),
        (None, true, false) => Ok(Encryption::None),
        (None, true, true) => Err(error(format!(
            "{what} needs a key: `passphrase` (a Secret), `recipients` (age1... keys) or \
             `recipients_file`, or `encrypt: false` for an unencrypted file"
        ))),
    }
}

/// Ctrl-C and `--timeout` stop a long pass between buffers.
fn stop_of(run: &Arc<Run>) -> archive::Stop {
    let run = run.clone();
    Arc::new(move || run.stop_reason())
}

pub(crate) fn seal_options(run: &Arc<Run>, options: &Map, what: &str) -> PrimResult<SealOptions> {
    check_keys(options, SEAL_KEYS, what)?;
    let compression = Compression::parse(
        &opt_string(options, "compression")?.unwrap_or_else(|| "zstd".into()),
        opt_int(options, "level")?,
        opt_int(options, "workers")?,
    )
    .map_err(|e| error(format!("{what}: {e}")))?;
    Ok(SealOptions {
        compression,
        encryption: encryption(run, options, what)?,
        artifact: opt_string(options, "name")?,
        stop: Some(stop_of(run)),
    })
}

pub(crate) fn unseal_options(run: &Run, options: &Map, what: &str) -> PrimResult<UnsealOptions> {
    check_keys(options, OPEN_KEYS, what)?;
    let key = open_key(run, options, what)?;
    let size = match opt_int(options, "size")? {
        Some(n) => {
            Some(u64::try_from(n).map_err(|_| error(format!("{what}: `size` {n} is negative")))?)
        }
        None => None,
    };
    let special_files = match opt_int(options, "special_files")? {
        Some(n) => u64::try_from(n)
            .map_err(|_| error(format!("{what}: `special_files` {n} is negative")))?,
        None => 0,
    };
    Ok(UnsealOptions {
        key,
        sha256: opt_string(options, "sha256")?,
        size,
        compression: None,
        artifact: opt_string(options, "name")?,
        special_files,
    })
}

/// The key a key option map opens with: `passphrase`, `identity` (a file) or `identity_key`
/// (a Secret); [`Key::None`] when none is given.
pub(crate) fn open_key(run: &Run, options: &Map, what: &str) -> PrimResult<Key> {
    let passphrase = passphrase(options, what)?;
    let identity = opt_string(options, "identity")?;
    let identity_key = match options.get("identity_key").filter(|v| !v.is_unit()) {
        None => None,
        Some(v) => Some(
            v.read_lock::<Secret>()
                .map(|s| s.clone())
                .ok_or_else(|| error(format!("{what}: option `identity_key` must be a Secret")))?,
        ),
    };
    match (passphrase, identity, identity_key) {
        (Some(passphrase), None, None) => Ok(Key::Passphrase(passphrase)),
        (None, Some(file), None) => {
            let path = checked_path(run, &file)?;
            Ok(Key::Identities(
                archive::read_identity_file(&path).map_err(|e| error(e.to_string()))?,
            ))
        }
        (None, None, Some(secret)) => archive::SetKey::from_identity(&secret)
            .map(|key| key.key())
            .map_err(|why| error(format!("{what}: {why}"))),
        (None, None, None) => Ok(Key::None),
        _ => Err(error(format!(
            "{what}: give one key: a passphrase, an identity or an identity_key"
        ))),
    }
}

pub(crate) fn sealed_map(sealed: &Sealed, name: Option<&str>) -> Map {
    let mut map = Map::new();
    if let Some(name) = name {
        map.insert("name".into(), name.into());
    }
    map.insert("path".into(), sealed.path.display().to_string().into());
    map.insert("size".into(), int(sealed.bytes));
    map.insert("sha256".into(), sealed.sha256.clone().into());
    map.insert("compression".into(), sealed.compression.name().into());
    map.insert("encryption".into(), sealed.encryption.into());
    map.insert("input_bytes".into(), int(sealed.input_bytes));
    if let Some(entries) = sealed.entries {
        map.insert("entries".into(), int(entries));
    }
    let list = |items: &[String]| -> Dynamic {
        items
            .iter()
            .cloned()
            .map(Dynamic::from)
            .collect::<Array>()
            .into()
    };
    map.insert("skipped".into(), list(&sealed.skipped));
    map.insert("changed".into(), list(&sealed.changed));
    map
}

/// What a dry run returns in place of a sealed file: the same keys, nothing measured.
pub(crate) fn planned_map(dest: &Path, options: &SealOptions) -> Map {
    let mut map = Map::new();
    map.insert("path".into(), dest.display().to_string().into());
    map.insert("planned".into(), true.into());
    map.insert("compression".into(), options.compression.name().into());
    map.insert("encryption".into(), options.encryption.name().into());
    map
}

/// Entries and bytes under a directory, for the plan; a walk of metadata only.
fn measure(dir: &Path) -> (u64, u64) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    if !meta.is_dir() {
        return (1, if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = (1, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let (entries, bytes) = measure(&entry.path());
        total = (total.0 + entries, total.1 + bytes);
    }
    total
}

fn create_parent(path: &Path) -> PrimResult<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| {
            error(format!(
                "cannot create the directory of {}: {e}",
                path.display()
            ))
        }),
        None => Ok(()),
    }
}

fn warn_about(sealed: &Sealed, what: &str) {
    use super::log::{emit, Level};
    if !sealed.skipped.is_empty() {
        emit(
            Level::Warn,
            &format!(
                "{what}: not archived (not regular files): {}",
                sealed.skipped.join(", ")
            ),
        );
    }
    if !sealed.changed.is_empty() {
        emit(
            Level::Warn,
            &format!(
                "{what}: changed while being read (archived as read): {}",
                sealed.changed.join(", ")
            ),
        );
    }
}

fn pack(ctx: &NativeCallContext, dir: &str, dest: &str, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let (source, target) = (checked_path(&run, dir)?, checked_path(&run, dest)?);
    let options = seal_options(&run, options, "archive::pack")?;
    let (entries, bytes) = measure(&source);
    let detail = format!(
        "archive {} ({entries} entries, {bytes} bytes) to {} ({}, {})",
        source.display(),
        target.display(),
        options.compression,
        options.encryption
    );
    if !run.mutate("archive::pack", detail) {
        return Ok(planned_map(&target, &options));
    }
    create_parent(&target)?;
    let sealed = archive::seal_dir(&source, &target, &options).map_err(|e| error(e.to_string()))?;
    warn_about(&sealed, &format!("archive::pack {dir}"));
    Ok(sealed_map(&sealed, options.artifact.as_deref()))
}

fn seal_file(ctx: &NativeCallContext, src: &str, dest: &str, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let (source, target) = (checked_path(&run, src)?, checked_path(&run, dest)?);
    let options = seal_options(&run, options, "archive::seal")?;
    let detail = format!(
        "seal {}{} to {} ({}, {})",
        source.display(),
        size_note(&source),
        target.display(),
        options.compression,
        options.encryption
    );
    if !run.mutate("archive::seal", detail) {
        return Ok(planned_map(&target, &options));
    }
    let file = std::fs::File::open(&source)
        .map_err(|e| error(format!("archive::seal: cannot open {src}: {e}")))?;
    create_parent(&target)?;
    let sealed = archive::seal(file, &target, &options).map_err(|e| error(e.to_string()))?;
    Ok(sealed_map(&sealed, options.artifact.as_deref()))
}

/// " (N bytes)" for a file that exists; nothing for one an earlier step of a dry run would
/// have written.
fn size_note(path: &Path) -> String {
    std::fs::metadata(path)
        .map(|m| format!(" ({} bytes)", m.len()))
        .unwrap_or_default()
}

fn unpack(ctx: &NativeCallContext, src: &str, dir: &str, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let (source, target) = (checked_path(&run, src)?, checked_path(&run, dir)?);
    check_keys(options, OPEN_KEYS, "archive::unpack")?;
    let mut extract = archive::ExtractOptions::new();
    extract.stop = Some(stop_of(&run));
    if let Some(owners) = opt_bool(options, "owners")? {
        extract.owners = owners;
    }
    if let Some(max) = opt_int(options, "max_bytes")? {
        extract.max_bytes = Some(u64::try_from(max).unwrap_or(0));
    }
    let detail = format!(
        "extract {}{} into {}",
        source.display(),
        size_note(&source),
        target.display()
    );
    let mut map = Map::new();
    map.insert("path".into(), target.display().to_string().into());
    if !run.mutate("archive::unpack", detail) {
        map.insert("planned".into(), true.into());
        return Ok(map);
    }
    // The key is read only when acting: in a dry run an earlier step may be what creates it.
    let unseal = unseal_options(&run, options, "archive::unpack")?;
    let done =
        archive::unpack(&source, &target, &unseal, &extract).map_err(|e| error(e.to_string()))?;
    map.insert("entries".into(), int(done.entries));
    map.insert("bytes".into(), int(done.bytes));
    map.insert("sha256".into(), done.sha256.unwrap_or_default().into());
    Ok(map)
}

fn seal_json(
    ctx: &NativeCallContext,
    value: &Dynamic,
    dest: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, dest)?;
    let options = seal_options(&run, options, "archive::seal_json")?;
    let text = serde_json::to_vec_pretty(&crate::value::to_json_exact(value))
        .map_err(|e| error(format!("archive::seal_json: {e}")))?;
    let detail = format!(
        "seal {} bytes of JSON to {} ({}, {})",
        text.len(),
        target.display(),
        options.compression,
        options.encryption
    );
    if !run.mutate("archive::seal_json", detail) {
        return Ok(planned_map(&target, &options));
    }
    create_parent(&target)?;
    let sealed =
        archive::seal(text.as_slice(), &target, &options).map_err(|e| error(e.to_string()))?;
    Ok(sealed_map(&sealed, options.artifact.as_deref()))
}

fn unseal_json(ctx: &NativeCallContext, src: &str, options: &Map) -> PrimResult<Dynamic> {
    use std::io::Read;
    let run = Run::of(ctx);
    let source = checked_path(&run, src)?;
    let unseal = unseal_options(&run, options, "archive::unseal_json")?;
    let mut reader = archive::unseal(&source, &unseal).map_err(|e| error(e.to_string()))?;
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|e| error(format!("{src}: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| error(format!("{src} does not hold JSON: {e}")))?;
    Ok(crate::value::from_json(&value))
}

fn unseal_file(ctx: &NativeCallContext, src: &str, dest: &str, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let (source, target) = (checked_path(&run, src)?, checked_path(&run, dest)?);
    check_keys(options, OPEN_KEYS, "archive::unseal")?;
    let detail = format!(
        "decrypt and decompress {}{} to {} (mode 0600)",
        source.display(),
        size_note(&source),
        target.display()
    );
    let mut map = Map::new();
    map.insert("path".into(), target.display().to_string().into());
    if !run.mutate("archive::unseal", detail) {
        map.insert("planned".into(), true.into());
        return Ok(map);
    }
    let unseal = unseal_options(&run, options, "archive::unseal")?;
    create_parent(&target)?;
    let mut reader = archive::unseal(&source, &unseal).map_err(|e| error(e.to_string()))?;
    let mut file = crate::atomic_file::AtomicFile::create(&target, 0o600)
        .map_err(|e| error(format!("cannot create {dest}: {e}")))?;
    let bytes = copy_stopping(&run, &mut reader, &mut file, &source, dest)?;
    let sha256 = reader.finish().map_err(|e| error(e.to_string()))?;
    file.commit()
        .map_err(|e| error(format!("cannot write {dest}: {e}")))?;
    map.insert("bytes".into(), int(bytes));
    map.insert("sha256".into(), sha256.into());
    Ok(map)
}

/// Copies the unsealed stream to the file in large buffers, stopping on Ctrl-C or
/// `--timeout`.
fn copy_stopping(
    run: &Run,
    reader: &mut archive::Unsealed,
    file: &mut crate::atomic_file::AtomicFile,
    source: &Path,
    dest: &str,
) -> PrimResult<u64> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        run.check_stop()?;
        let n = reader
            .read(&mut buf)
            .map_err(|e| error(archive::Error::from_io(e, source, "read").to_string()))?;
        if n == 0 {
            return Ok(total);
        }
        file.write_all(&buf[..n])
            .map_err(|e| error(format!("cannot write {dest}: {e}")))?;
        total += n as u64;
    }
}

fn list(ctx: &NativeCallContext, src: &str, options: &Map) -> PrimResult<Array> {
    let run = Run::of(ctx);
    let source = checked_path(&run, src)?;
    let unseal = unseal_options(&run, options, "archive::list")?;
    let mut reader = archive::unseal(&source, &unseal).map_err(|e| error(e.to_string()))?;
    let entries = archive::list(&mut reader, &source).map_err(|e| error(e.to_string()))?;
    reader.finish().map_err(|e| error(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut map = Map::new();
            map.insert("path".into(), e.path.into());
            map.insert("kind".into(), e.kind.into());
            map.insert("size".into(), int(e.size));
            map.insert("mode".into(), INT::from(e.mode).into());
            map.insert("uid".into(), int(e.uid));
            map.insert("gid".into(), int(e.gid));
            map.insert("mtime".into(), int(e.mtime));
            if let Some(link) = e.link {
                map.insert("link".into(), link.into());
            }
            Dynamic::from(map)
        })
        .collect())
}

fn verify(ctx: &NativeCallContext, src: &str, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let source = checked_path(&run, src)?;
    let unseal = unseal_options(&run, options, "archive::verify")?;
    let verified = archive::verify(&source, &unseal).map_err(|e| error(e.to_string()))?;
    let mut map = Map::new();
    map.insert("path".into(), source.display().to_string().into());
    map.insert("size".into(), int(verified.bytes));
    map.insert("sha256".into(), verified.sha256.into());
    map.insert("content_bytes".into(), int(verified.content_bytes));
    map.insert("compression".into(), verified.compression.into());
    map.insert("encryption".into(), verified.encryption.into());
    if let Some(entries) = verified.entries {
        map.insert("entries".into(), int(entries));
    }
    Ok(map)
}

#[export_module]
pub mod api {
    use rhai::{Array, Map};

    /// Archives a directory into one file: tar (owners, modes, mtimes, symlinks, hard links,
    /// sparse files) → zstd level 3 → age → `dest` (0600, written whole or not at all), with
    /// its SHA-256 computed on the way. Options: the key (`passphrase` with `work_factor`,
    /// `recipients`, `recipients_file`, or `encrypt: false`), `compression` (zstd, gzip,
    /// none), `level`, `workers`, `name` (for errors). Returns `#{path, size, sha256,
    /// compression, encryption, input_bytes, entries, skipped, changed}`, ready for
    /// `manifest::write`.
    #[rhai_fn(return_raw)]
    pub fn pack(
        ctx: NativeCallContext,
        dir: &str,
        dest: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::pack(&ctx, dir, dest, &options)
    }

    /// Seals one file's bytes (a database dump) like `pack`, without tar: compress, encrypt,
    /// write `dest` with its SHA-256. Same options and result as `pack`.
    #[rhai_fn(return_raw)]
    pub fn seal(
        ctx: NativeCallContext,
        src: &str,
        dest: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::seal_file(&ctx, src, dest, &options)
    }

    /// Extracts an archive into `dir`, refusing entries that would escape it (absolute
    /// paths, `..`, symlink and hard link tricks), device nodes and oversize claims. Options:
    /// `passphrase` or `identity` (an age identity file), `sha256` and `size` to check
    /// (from a manifest), `max_bytes`, `owners` (restore numeric owners; default when root),
    /// `name`. Returns `#{path, entries, bytes, sha256}`.
    #[rhai_fn(return_raw)]
    pub fn unpack(
        ctx: NativeCallContext,
        src: &str,
        dir: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::unpack(&ctx, src, dir, &options)
    }

    /// Seals a value as JSON (container specs with their environment) → zstd → age → `dest`,
    /// so it never sits on disk in clear. Options and result as `pack`.
    #[rhai_fn(return_raw)]
    pub fn seal_json(
        ctx: NativeCallContext,
        value: Dynamic,
        dest: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::seal_json(&ctx, &value, dest, &options)
    }

    /// Reads back a value `seal_json` wrote, checking the file's checksum when `sha256` is
    /// given. Options as `unpack`. Reads only: it runs in a dry run too.
    #[rhai_fn(return_raw)]
    pub fn unseal_json(
        ctx: NativeCallContext,
        src: &str,
        options: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        super::unseal_json(&ctx, src, &options)
    }

    /// Decrypts and decompresses a sealed file into `dest` (0600, atomic), checking its
    /// checksum. Options as `unpack`. Returns `#{path, bytes, sha256}`.
    #[rhai_fn(return_raw)]
    pub fn unseal(
        ctx: NativeCallContext,
        src: &str,
        dest: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::unseal_file(&ctx, src, dest, &options)
    }

    /// The entries of an archive (`#{path, kind, size, mode, uid, gid, mtime, link}`), read
    /// to the end so its checksum is verified too. Options as `unpack`.
    #[rhai_fn(return_raw)]
    pub fn list(
        ctx: NativeCallContext,
        src: &str,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::list(&ctx, src, &options)
    }

    /// Reads a sealed file to its end without writing anything: it must decrypt,
    /// decompress, match `sha256`/`size` when given, and when it holds a tar, every entry
    /// must pass the extraction rules (no absolute path, `..`, write through a symlink, hard
    /// link out of the tree; device nodes and FIFOs only up to `special_files`, what the set
    /// records the original held; the error names the entry).
    /// Returns `#{path, size, sha256, content_bytes, entries, compression, encryption}`.
    #[rhai_fn(return_raw)]
    pub fn verify(
        ctx: NativeCallContext,
        src: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::verify(&ctx, src, &options)
    }
}
