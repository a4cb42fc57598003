//! Exec in a container: a command's output as text, to a 0600 file, or sealed (a dump) and fed
//! back; secrets go through the environment, stdin or 0600 files only.

use std::io::Write;
use std::sync::Mutex;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::*;
use crate::docker::{self, ExecInput, ExecRequest, SecretFile};
use crate::prims::{
    checked_path, error, opt_bool, opt_env, opt_string, plain_or_secret, PrimResult,
};
use crate::run::Run;
use crate::secrets::Secret;

/// The exec request a script described; argv may not hold secrets.
fn exec_request(argv: &Array, options: &Map) -> PrimResult<(ExecRequest, ExecInput)> {
    let mut args = Vec::with_capacity(argv.len());
    for (i, arg) in argv.iter().enumerate() {
        if arg.is::<Secret>() {
            return Err(error(format!(
                "argument {i} of docker::exec is a secret: secrets never go on a command line \
                 (visible in `ps` on the host); pass it in `env`, `stdin` or `files`"
            )));
        }
        args.push(arg.to_string());
    }
    let files = match options.get("files").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(value) => {
            let map = value.read_lock::<Map>().ok_or_else(|| {
                error("option `files` must be a map of container path: content (a secret or text)")
            })?;
            map.iter()
                .map(|(path, content)| {
                    Ok(SecretFile {
                        path: path.to_string(),
                        content: plain_or_secret(content, &format!("`files.{path}`"))?.into_bytes(),
                    })
                })
                .collect::<PrimResult<Vec<_>>>()?
        }
    };
    let input = match options.get("stdin").filter(|v| !v.is_unit()) {
        Some(v) => ExecInput::Bytes(plain_or_secret(v, "`stdin`")?.into_bytes()),
        None => ExecInput::None,
    };
    let request = ExecRequest {
        argv: args,
        env: opt_env(options, "env")?,
        user: opt_string(options, "user")?,
        workdir: opt_string(options, "workdir")?,
        files,
    };
    Ok((request, input))
}

fn exec(ctx: &NativeCallContext, container: &str, argv: &Array, options: &Map) -> PrimResult<Map> {
    let (request, input) = exec_request(argv, options)?;
    let read_only = opt_bool(options, "read_only")?.unwrap_or(false);
    let mut result = Map::new();
    must_exist(ctx, Kind::Container, container)?;
    if !read_only
        && !Run::of(ctx).mutate(
            "docker::exec",
            format!(
                "run `{}` in container `{container}`",
                request.argv.join(" ")
            ),
        )
    {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stdout".into(), "".into());
        result.insert("stderr".into(), "".into());
        return Ok(result);
    }
    let what = format!("exec in container `{container}`");
    let outcome = call(ctx, &what, |d| async move {
        d.exec(container, request, input).await
    })?;
    result.insert("code".into(), Dynamic::from(outcome.code));
    result.insert(
        "stdout".into(),
        String::from_utf8_lossy(&outcome.stdout).into_owned().into(),
    );
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&outcome.stderr).into_owned().into(),
    );
    Ok(result)
}

/// Streams an exec's stdout into a file that appears only when the process succeeded.
fn exec_to_file(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (request, input) = exec_request(argv, options)?;
    let mut result = Map::new();
    must_exist(ctx, Kind::Container, container)?;
    if !run.mutate(
        "docker::exec_to_file",
        format!(
            "run `{}` in container `{container}`, its output to {} (mode 0600)",
            request.argv.join(" "),
            target.display()
        ),
    ) {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stderr".into(), "".into());
        result.insert("bytes".into(), Dynamic::from(0 as INT));
        return Ok(result);
    }
    let what = format!("exec in container `{container}`");
    let io = |e: std::io::Error| error(format!("cannot write {file}: {e}"));
    let mut out = create_file(&target).map_err(io)?;
    let (status, bytes) = call(ctx, &what, |d| async move {
        let mut stream = d.exec_stream(container, request, input).await?;
        let mut bytes: u64 = 0;
        while let Some(chunk) = stream.stdout.next_chunk().await {
            let target = || docker::Target::Container(container.into());
            let chunk = chunk.map_err(|e| {
                docker::DockerError::from_stream(target(), "reading the exec's output failed", e)
            })?;
            out.write_all(&chunk).map_err(|e| {
                docker::DockerError::io(target(), format!("cannot write {file}"), e)
            })?;
            bytes += chunk.len() as u64;
        }
        let status = stream.finish().await?;
        Ok((status, (bytes, out)))
    })?;
    let (bytes, out) = bytes;
    if status.code == 0 {
        out.commit().map_err(io)?;
    }
    result.insert("code".into(), Dynamic::from(status.code));
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&status.stderr).into_owned().into(),
    );
    result.insert(
        "bytes".into(),
        Dynamic::from(INT::try_from(bytes).unwrap_or(INT::MAX)),
    );
    Ok(result)
}

/// An exec's stdout that fails at its end when the process failed, so a sealed dump of a
/// failed `pg_dump` is never committed.
struct CheckedOutput {
    stream: Option<docker::ExecStream>,
    container: String,
    program: String,
    status: std::sync::Arc<Mutex<Option<docker::ExecStatus>>>,
}

impl std::io::Read for CheckedOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let n = stream.stdout.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let stream = self.stream.take().expect("checked above");
        let status = stream
            .wait()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (code, stderr) = (
            status.code,
            String::from_utf8_lossy(&status.stderr).trim().to_string(),
        );
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        if code != 0 {
            return Err(std::io::Error::other(format!(
                "`{}` in container `{}` exited with {code}: {stderr}",
                self.program, self.container
            )));
        }
        Ok(0)
    }
}

/// An exec's stdout → compress → encrypt → `file`, committed only when the process succeeds.
fn exec_backup(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "seal", EXEC_KEYS)?;
    let (request, input) = exec_request(argv, &own)?;
    let what = format!("container `{container}`");
    let seal = crate::prims::archive::seal_options(&run, &archive, &what)?;
    let program = request.argv.first().cloned().unwrap_or_default();
    must_exist(ctx, Kind::Container, container)?;
    if !run.mutate(
        "docker::exec_backup",
        format!(
            "run `{}` in container `{container}`, its output ({}, {}) to {} (mode 0600)",
            request.argv.join(" "),
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(crate::prims::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let stream = call(ctx, &format!("exec in {what}"), |d| async move {
        d.exec_stream(container, request, input).await
    })?;
    let status = std::sync::Arc::new(Mutex::new(None));
    let output = CheckedOutput {
        stream: Some(stream),
        container: container.to_string(),
        program,
        status: status.clone(),
    };
    let sealed =
        crate::archive::seal(output, &target, &seal).map_err(|e| error(format!("{what}: {e}")))?;
    let mut result = crate::prims::archive::sealed_map(&sealed, None);
    if let Some(status) = status.lock().unwrap_or_else(|e| e.into_inner()).take() {
        result.insert("code".into(), Dynamic::from(status.code));
        result.insert(
            "stderr".into(),
            String::from_utf8_lossy(&status.stderr).into_owned().into(),
        );
    }
    Ok(result)
}

/// A sealed file → decrypt → decompress → a process's stdin (a dump into `psql`).
fn exec_restore(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let source = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "unseal", EXEC_KEYS)?;
    let (request, _) = exec_request(argv, &own)?;
    let what = format!("container `{container}`");
    let unseal = crate::prims::archive::unseal_options(&run, &archive, &what)?;
    let mut result = Map::new();
    must_exist(ctx, Kind::Container, container)?;
    if !run.mutate(
        "docker::exec_restore",
        format!(
            "feed {} to `{}` in container `{container}`",
            source.display(),
            request.argv.join(" ")
        ),
    ) {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stdout".into(), "".into());
        result.insert("stderr".into(), "".into());
        return Ok(result);
    }
    let content =
        crate::archive::unseal(&source, &unseal).map_err(|e| error(format!("{what}: {e}")))?;
    let input = ExecInput::Reader(Box::new(content));
    let outcome = call(ctx, &format!("exec in {what}"), |d| async move {
        d.exec(container, request, input).await
    })?;
    result.insert("code".into(), Dynamic::from(outcome.code));
    result.insert(
        "stdout".into(),
        String::from_utf8_lossy(&outcome.stdout).into_owned().into(),
    );
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&outcome.stderr).into_owned().into(),
    );
    Ok(result)
}

/// The exec options `exec_request` reads; everything else is for the archive pipeline.
const EXEC_KEYS: &[&str] = &["env", "user", "workdir", "files", "stdin"];

#[export_module]
pub mod api {
    use super::*;

    /// Runs a command (a list: program then arguments) in a running container; returns
    /// `#{code, stdout, stderr}`. Planned in a dry run.
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec(&ctx, container, &argv, &Map::new())
    }

    /// Runs a command in a container with options: `stdin` (text or secret), `env` (`#{NAME:
    /// secret}`), `files` (`#{"/run/pgpass": secret}`: 0600, owned by the exec's user, removed
    /// after), `user`, `workdir`, `read_only` (true: it only reads, so it runs in a dry run
    /// too). Secrets are refused in the argument list.
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec_with(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec(&ctx, container, &argv, &options)
    }

    /// Runs a command in a container streaming its stdout to a file (mode 0600) that appears
    /// only if the command exits 0 (a `pg_dump` never sits in memory); returns `#{code,
    /// stderr, bytes}`. Options as for `exec`.
    #[rhai_fn(return_raw)]
    pub fn exec_to_file(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_to_file(&ctx, container, &argv, file, &options)
    }

    /// Runs a process in a container and seals its stdout (a `pg_dump`) → zstd → age →
    /// `file` in one pass; the file is committed only when the process exits 0, else the
    /// error carries its exit code and stderr. Options: those of `exec` (`env`, `user`,
    /// `workdir`, `files`, `stdin`) and the key and compression of `archive::pack`. Returns
    /// what `archive::pack` returns plus `code` and `stderr`.
    #[rhai_fn(return_raw)]
    pub fn exec_backup(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_backup(&ctx, container, &argv, file, &options)
    }

    /// Feeds a sealed file, decrypted and decompressed, to a process's stdin (a dump into
    /// `psql`). Options: those of `exec` and `passphrase`/`identity`, `sha256`, `size`. A file
    /// that fails to decrypt or match its checksum fails the exec whatever its exit code.
    /// Returns `#{code, stdout, stderr}`.
    #[rhai_fn(return_raw)]
    pub fn exec_restore(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_restore(&ctx, container, &argv, file, &options)
    }
}
