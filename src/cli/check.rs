//! `runbook check`: compile playbooks and validate their headers without running them.

use std::collections::{BTreeMap, BTreeSet};

use rhai::{Map, Scope};

use crate::engine::{self, calls, diagnostics, reference};
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

/// The functions a script can call by `module::name`: the registered primitive families, and
/// the stdlib modules by name (their public functions).
pub struct Callable {
    registered: BTreeMap<String, BTreeSet<String>>,
    stdlib: BTreeMap<String, std::result::Result<BTreeSet<String>, String>>,
}

impl Callable {
    /// Reads the registered functions from the engine's metadata.
    pub fn of(engine: &rhai::Engine) -> std::result::Result<Callable, String> {
        let mut registered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in reference::functions(&reference::metadata(engine)?) {
            if let Some(module) = f.module {
                registered.entry(module).or_default().insert(f.name);
            }
        }
        Ok(Callable {
            registered,
            stdlib: BTreeMap::new(),
        })
    }

    /// The public functions of a stdlib module, compiled once.
    fn stdlib(
        &mut self,
        engine: &rhai::Engine,
        module: &str,
    ) -> &std::result::Result<BTreeSet<String>, String> {
        self.stdlib.entry(module.to_string()).or_insert_with(|| {
            let source = catalog::module(module)
                .ok_or_else(|| format!("no stdlib module `{module}`"))?
                .map_err(|e| e.to_string())?;
            let ast = engine
                .compile(&source.text)
                .map_err(|e| format!("stdlib module `{module}` does not compile: {e}"))?;
            Ok(ast
                .iter_functions()
                .filter(|f| f.access != rhai::FnAccess::Private)
                .map(|f| f.name.to_string())
                .collect())
        })
    }

    /// The first call in `text` to a function that does not exist, as a message at its position.
    pub fn first_unknown(
        &mut self,
        engine: &rhai::Engine,
        file: &str,
        text: &str,
    ) -> Option<String> {
        let aliases: BTreeMap<String, String> = calls::imports(text)
            .into_iter()
            .map(|i| (i.alias, i.module))
            .collect();
        for call in calls::namespaced_calls(text) {
            let path = format!("{}::{}", call.module, call.function);
            let problem = if let Some(names) = self.registered.get(&call.module) {
                (!names.contains(&call.function)).then(|| {
                    let hint = calls::closest(&call.function, names.iter().map(String::as_str))
                        .map(|n| format!(" (did you mean {}::{n}?)", call.module))
                        .unwrap_or_default();
                    format!("`{path}` is not a function{hint}; see `runbook doc`")
                })
            } else if let Some(module) = aliases.get(&call.module) {
                if module.is_empty() {
                    // Imported by a name chosen at run time: known only then.
                    continue;
                }
                match self.stdlib(engine, module) {
                    Err(e) => Some(e.clone()),
                    Ok(names) if names.contains(&call.function) => None,
                    Ok(names) => {
                        let hint = calls::closest(&call.function, names.iter().map(String::as_str))
                            .map(|n| format!(" (did you mean {}::{n}?)", call.module))
                            .unwrap_or_default();
                        Some(format!(
                            "`{path}` is not a function of stdlib module `{module}`{hint}"
                        ))
                    }
                }
            } else if call.module == "global" {
                None
            } else {
                let known = self
                    .registered
                    .keys()
                    .map(String::as_str)
                    .chain(aliases.keys().map(String::as_str));
                let hint = calls::closest(&call.module, known)
                    .map(|m| format!(" (did you mean {m}::{}?)", call.function))
                    .unwrap_or_default();
                Some(format!(
                    "`{path}`: no module `{}` is registered or imported{hint}",
                    call.module
                ))
            };
            if let Some(message) = problem {
                return Some(diagnostics::render_at(
                    file, text, call.line, call.col, &message,
                ));
            }
        }
        None
    }
}

/// Compiles one playbook with the scope a run gives it, and holds its calls against the
/// functions that exist.
pub fn check_one(
    playbook: &Playbook,
    engine: &rhai::Engine,
    callable: &mut Callable,
) -> std::result::Result<(), String> {
    let mut scope = Scope::new();
    scope.push_constant("params", Map::new());
    scope.push_constant("run", Map::new());
    let file = playbook.file_name();
    engine
        .compile_with_scope(&scope, &playbook.source.text)
        .map_err(|e| diagnostics::render_parse(&file, &playbook.source.text, &e))?;
    if let Some(message) = callable.first_unknown(engine, &file, &playbook.source.text) {
        return Err(message);
    }
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
    let mut callable = Callable::of(&engine).map_err(Error::Usage)?;
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
            .and_then(|p| check_one(&p, &engine, &mut callable).map(|()| p));
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
                    .map_err(|e| diagnostics::render_parse(&file, &m.text, &e))?;
                match callable.first_unknown(&engine, &file, &m.text) {
                    Some(message) => Err(message),
                    None => Ok(file),
                }
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
