//! `runbook doc`: the reference of every primitive, generated from the engine's metadata and
//! the doc comments of the registered functions.

use serde_json::Value;

use crate::engine::{self, reference};
use crate::error::{Error, Result};
use crate::run::{Run, RunOptions};
use crate::sandbox::Sandbox;

#[derive(Debug, clap::Args)]
pub struct DocArgs {
    /// Print the engine's raw function metadata as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The metadata of an engine built like a run's, with every primitive registered.
fn metadata() -> Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let run = Run::new(
        "doc".into(),
        RunOptions::default(),
        Sandbox::default(),
        runtime.handle().clone(),
        None,
        Default::default(),
    );
    reference::metadata(&engine::build(&run, true)).map_err(Error::Failed)
}

/// Prints the reference.
pub fn execute(args: DocArgs) -> Result<()> {
    let meta = metadata()?;
    if args.json {
        super::print_json(&meta);
    } else {
        print!("{}", reference::markdown(&meta));
    }
    Ok(())
}
