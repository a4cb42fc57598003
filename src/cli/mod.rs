//! The command line: one file per subcommand. Flags are defined once here; help, completions
//! and the README's usage come from these definitions.

mod check;
mod doc;
mod eject;
mod list;
mod repl;
mod run;
mod runs;

use clap::{Parser, Subcommand};

use crate::error::Result;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the playbook failed (a step raised an error, or --timeout stopped it)
  2    usage or compile error (unknown playbook, bad parameter, syntax error)
  3    refused (no confirmation, the stack is locked by another run, or an action
       that cannot be planned in a dry run)
  130  interrupted (Ctrl-C / SIGTERM)
  A run that failed, was refused or interrupted can be finished with --resume RUN_ID.
  Findings playbooks (audit, doctor, cert-check) exit with their report's worst severity:
  0 ok, 1 warning, 2 critical (3 unknown in nagios format).

Environment:
  DOCKER_HOST, VAULT_ADDR, VAULT_TOKEN   how primitives reach Docker and Vault
  RUNBOOK_STATE_DIR    run journals (default $XDG_STATE_HOME/runbook)
  RUNBOOK_CONFIG_DIR   user playbooks/ and stdlib/ (default $XDG_CONFIG_HOME/runbook)";

/// Operational playbooks for Docker stacks: backup, restore, DR drills, rollbacks,
/// migrations, Vault bootstrap and audits, scripted in Rhai.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook: `runbook run backup -p stack=shop`.
    Run(run::RunArgs),
    /// Compile playbooks, validate their headers, and check every `module::function` call names
    /// a function that exists (every shipped one when none is named).
    Check(check::CheckArgs),
    /// List the playbooks available by name and where each comes from.
    List(list::ListArgs),
    /// Show a playbook's description, parameters and origin.
    Show(list::ShowArgs),
    /// Copy a built-in playbook out for editing (to ./playbooks by default).
    Eject(eject::EjectArgs),
    /// Print the reference of every primitive scripts can call.
    Doc(doc::DocArgs),
    /// List past runs from the journal.
    Runs(runs::RunsArgs),
    /// Show the journal of one run.
    Log(runs::LogArgs),
    /// An interactive prompt over the same primitives, for incidents: `runbook repl --dry-run`.
    Repl(repl::ReplArgs),
    /// Print shell completions: `runbook completions bash > /etc/bash_completion.d/runbook`.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// Carries out one command.
pub fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Check(args) => check::execute(args),
        Command::List(args) => list::list(args),
        Command::Show(args) => list::show(args),
        Command::Eject(args) => eject::execute(args),
        Command::Doc(args) => doc::execute(args),
        Command::Runs(args) => runs::runs(args),
        Command::Log(args) => runs::log(args),
        Command::Repl(args) => repl::execute(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "runbook",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// Prints a value as pretty JSON on stdout.
fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        crate::secrets::redact(&serde_json::to_string_pretty(value).unwrap_or_default())
    );
}
