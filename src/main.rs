//! The `runbook` binary: parse arguments, hand them to the library, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = runbook::cli::Cli::parse();
    let code = match runbook::cli::execute(cli) {
        Ok(()) => runbook::ExitCode::Success as i32,
        Err(err) => {
            if !err.is_silent() {
                eprintln!("{}", err.render());
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}
