//! `runbook eject`: copy a built-in playbook out for editing.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::playbook::catalog;

#[derive(Debug, clap::Args)]
pub struct EjectArgs {
    /// The built-in playbook to copy.
    pub playbook: String,
    /// Directory to write it to; `./playbooks` (which then takes precedence over the built-in).
    #[arg(long, default_value = "playbooks")]
    pub to: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the built-in copy to `<to>/<name>.rhai`.
pub fn execute(args: EjectArgs) -> Result<()> {
    let text = catalog::builtin_playbook(&args.playbook).ok_or_else(|| {
        Error::Usage(format!(
            "no built-in playbook named `{}` (see `runbook list`)",
            args.playbook
        ))
    })?;
    let target = args.to.join(format!("{}.rhai", args.playbook));
    if target.exists() && !args.force {
        return Err(Error::Refused(format!(
            "{} already exists; pass --force to overwrite it",
            target.display()
        )));
    }
    std::fs::create_dir_all(&args.to)
        .map_err(|e| Error::io(format!("cannot create {}", args.to.display()), e))?;
    crate::atomic_file::write(&target, text.as_bytes(), 0o644)
        .map_err(|e| Error::io(format!("cannot write {}", target.display()), e))?;
    println!(
        "wrote {}; `runbook run {}` now uses it (the journal records its hash)",
        target.display(),
        args.playbook
    );
    Ok(())
}
