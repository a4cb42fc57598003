//! `runbook check`: compile playbooks and validate their headers without running them.

use rhai::{Map, Scope};

use crate::engine::{self, diagnostics};
use crate::error::{Error, Result};
use crate::playbook::{catalog, Playbook};
use crate::run::{Run, RunOptions};
use crate::sandbox::Sandbox;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Playbook names or paths; every playbook `runbook list` shows when none is given.
    pub playbooks: Vec<String>,
}

/// Every `params.NAME` the script reads must be declared in the header.
fn undeclared_params(playbook: &Playbook) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    for (line_no, line) in playbook.source.text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        let mut offset = 0;
        while let Some(at) = rest.find("params.") {
            let before = code[..offset + at].chars().last();
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && playbook.header.param(&name).is_none()
            {
                found.push((line_no + 1, offset + at + 1, name.clone()));
            }
            offset += at + 7;
            rest = &rest[at + 7..];
        }
    }
    found
}

/// Compiles one playbook with the scope a run gives it.
pub fn check_one(playbook: &Playbook, engine: &rhai::Engine) -> std::result::Result<(), String> {
    let mut scope = Scope::new();
    scope.push_constant("params", Map::new());
    scope.push_constant("run", Map::new());
    let file = playbook.file_name();
    engine
        .compile_with_scope(&scope, &playbook.source.text)
        .map_err(|e| diagnostics::render_parse(&file, &playbook.source.text, &e))?;
    if let Some((line, col, name)) = undeclared_params(playbook).into_iter().next() {
        return Err(diagnostics::render_at(
            &file,
            &playbook.source.text,
            line,
            col,
            &format!(
                "`params.{name}` is not declared in the header (add `//! param {name}: TYPE`)"
            ),
        ));
    }
    Ok(())
}

/// Checks the named playbooks (all when none named) and the stdlib modules they can import.
pub fn execute(args: CheckArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let run = Run::new(
        "check".into(),
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
        Sandbox::default(),
        runtime.handle().clone(),
        None,
        Default::default(),
    );
    let engine = engine::build(&run, true);
    let sources: Vec<Result<crate::playbook::SourceFile>> = if args.playbooks.is_empty() {
        catalog::all_playbooks()
    } else {
        args.playbooks
            .iter()
            .map(|t| catalog::playbook(t))
            .collect()
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for source in sources {
        checked += 1;
        let outcome = source
            .and_then(Playbook::from_source)
            .map_err(|e| e.to_string())
            .and_then(|p| check_one(&p, &engine).map(|()| p));
        match outcome {
            Ok(p) => println!(
                "ok  {} v{} ({})",
                p.header.name,
                p.header.version,
                p.source.origin.describe()
            ),
            Err(message) => failures.push(message),
        }
    }
    if args.playbooks.is_empty() {
        for module in catalog::all_modules() {
            checked += 1;
            let outcome = module.map_err(|e| e.to_string()).and_then(|m| {
                let file = m.display_name("stdlib");
                engine
                    .compile(&m.text)
                    .map(|_| file.clone())
                    .map_err(|e| diagnostics::render_parse(&file, &m.text, &e))
            });
            match outcome {
                Ok(file) => println!("ok  {file}"),
                Err(message) => failures.push(message),
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Compile(format!(
            "{}\n{} of {checked} failed the check",
            failures.join("\n\n"),
            failures.len()
        )))
    }
}
