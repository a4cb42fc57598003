//! Host commands: only when the run was started with `--allow-exec`; secrets reach them
//! through the environment or stdin, never the command line.

use std::process::Stdio;

use rhai::plugin::*;
use rhai::INT;
use rhai::{Array, Map};
use tokio::io::AsyncWriteExt;

use super::{error, opt_env, opt_string, PrimResult};
use crate::run::Run;
use crate::secrets::Secret;

fn run_command(ctx: &NativeCallContext, argv: &Array, options: &Map) -> PrimResult<Map> {
    let run = Run::of(ctx);
    if !run.options.allow_exec {
        return Err(run.refuse(
            "host commands are disabled for this run; start it with --allow-exec to allow them"
                .into(),
        ));
    }
    let mut args = Vec::with_capacity(argv.len());
    for (i, arg) in argv.iter().enumerate() {
        if arg.is::<Secret>() {
            return Err(error(format!(
                "argument {i} of host::run is a secret: secrets never go on a command line (visible in `ps`); \
                 pass it in `env` or `stdin`"
            )));
        }
        args.push(arg.to_string());
    }
    let Some((program, rest)) = args.split_first() else {
        return Err(error("host::run needs at least the program name"));
    };
    let env = opt_env(options, "env")?;
    let stdin = match options.get("stdin").filter(|v| !v.is_unit()) {
        Some(v) => Some(super::plain_or_secret(v, "`stdin`")?),
        None => None,
    };
    let cwd = opt_string(options, "cwd")?
        .map(|dir| super::checked_path(&run, &dir))
        .transpose()?;
    let mut result = Map::new();
    if !run.mutate("host::run", format!("run `{}`", args.join(" "))) {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stdout".into(), "".into());
        result.insert("stderr".into(), "".into());
        return Ok(result);
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .envs(env)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let what = format!("host command `{program}`");
    let output = run.block_on(&what, async move {
        let mut child = command.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
            pipe.shutdown().await?;
        }
        child.wait_with_output().await
    })?;
    let output = output.map_err(|e| error(format!("{what}: {e}")))?;
    result.insert(
        "code".into(),
        INT::from(output.status.code().unwrap_or(-1)).into(),
    );
    result.insert(
        "stdout".into(),
        String::from_utf8_lossy(&output.stdout).into_owned().into(),
    );
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&output.stderr).into_owned().into(),
    );
    Ok(result)
}

#[export_module]
pub mod api {
    /// Runs a host command (a list: program then arguments) and returns `#{code, stdout,
    /// stderr}`. Refused unless the run was started with `--allow-exec`. Planned in a dry run.
    #[rhai_fn(name = "run", return_raw)]
    pub fn run(ctx: NativeCallContext, argv: Array) -> Result<Map, Box<EvalAltResult>> {
        super::run_command(&ctx, &argv, &Map::new())
    }

    /// Runs a host command with options: `#{env: #{PGPASSWORD: secret}, stdin: text_or_secret,
    /// cwd: dir}`. Secrets are refused in the argument list.
    #[rhai_fn(name = "run", return_raw)]
    pub fn run_with(
        ctx: NativeCallContext,
        argv: Array,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::run_command(&ctx, &argv, &options)
    }
}
