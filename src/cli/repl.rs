//! `runbook repl`: the incident prompt over the same engine and primitives as `runbook run`.

use std::path::PathBuf;

use crate::error::Result;
use crate::repl::{self, ReplOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "At the prompt:
  let c = docker::inspect(\"shop-db-1\");   statements run like lines of a playbook
  :help docker                            the functions of a module, with their docs
  :load backup stack=shop                 load a playbook, then :steps, :next, :run
  :dry-run on                             mutating primitives plan instead of acting
  :journal                                what was done at this prompt so far
  :save incident.rhai                     what was typed, as a new playbook
Tab completes functions, variables, playbooks and their parameters. Ctrl-C cancels the
running entry; Ctrl-D leaves. Without a terminal, statements are read from stdin.")]
pub struct ReplArgs {
    /// Start with dry run on: mutating primitives record what they would do and act not.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to confirmations of destructive steps.
    #[arg(short, long)]
    pub yes: bool,
    /// Allow host commands (host::run).
    #[arg(long)]
    pub allow_exec: bool,
    /// Allow file access under this directory too (repeatable).
    #[arg(long, value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,
}

/// Starts the REPL.
pub fn execute(args: ReplArgs) -> Result<()> {
    repl::start(ReplOptions {
        dry_run: args.dry_run,
        assume_yes: args.yes,
        allow_exec: args.allow_exec,
        allow_paths: args.allow_path,
    })
}
