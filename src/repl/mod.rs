//! `runbook repl`: the same engine, primitives, limits and secrets as `runbook run`, at a
//! prompt. Variables and functions persist between entries, everything done is journaled like
//! a run, and a playbook can be loaded and stepped through.

mod display;
mod editor;
mod stepper;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use rhai::{Dynamic, Engine, Scope, AST};
use serde_json::{json, Value};

use crate::engine::{self, diagnostics, reference};
use crate::error::{Error, Result};
use crate::playbook::journal::{self, Journal};
use crate::playbook::runner::{self, Outcome, RunReport, RunRequest};
use crate::playbook::{catalog, params, Playbook};
use crate::run::{Action, Run, RunOptions, StepReport};
use crate::{atomic_file, locations, secrets};

use editor::{PromptHelper, Vocabulary, COMMANDS};
use stepper::{Event, Loaded};

/// How the REPL was started.
#[derive(Debug, Clone, Default)]
pub struct ReplOptions {
    pub dry_run: bool,
    pub assume_yes: bool,
    pub allow_exec: bool,
    pub allow_paths: Vec<PathBuf>,
}

/// The name entries have in error positions.
const PROMPT_FILE: &str = "<prompt>";

/// One thing done at the prompt, for `:journal` and `:save`.
struct Entry {
    source: String,
    ok: bool,
    actions: Vec<Action>,
    note: String,
}

/// The state of one REPL session.
struct Session {
    options: ReplOptions,
    interactive: bool,
    runtime: tokio::runtime::Runtime,
    /// The run entries evaluate in; replaced (journal carried over) when dry run is toggled.
    run: Arc<Mutex<Arc<Run>>>,
    engine: Engine,
    scope: Scope<'static>,
    /// Functions defined at the prompt, merged into every entry.
    functions: AST,
    /// `import "module" as alias;` entries, registered for the entries after them.
    imports: Vec<(String, String)>,
    entries: Vec<Entry>,
    loaded: Option<Loaded>,
    vocabulary: Arc<RwLock<Vocabulary>>,
}

/// Starts the REPL: a prompt on a terminal, else statements read from stdin.
pub fn start(options: ReplOptions) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let mut session = Session::new(options, interactive)?;
    let result = if interactive {
        session.prompt_loop()
    } else {
        session.stdin_loop()
    };
    session.close();
    result
}

impl Session {
    fn new(options: ReplOptions, interactive: bool) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the async runtime", e))?;
        let run_id = journal::new_run_id("repl");
        let mut journal = Journal::open(&run_id)?;
        journal
            .record(
                "run_start",
                json!({
                    "run_id": run_id,
                    "attempt": 1,
                    "playbook": "repl",
                    "version": env!("CARGO_PKG_VERSION"),
                    "target": "repl",
                    "repl": true,
                    "dry_run": options.dry_run,
                    "params": {},
                    "given": [],
                }),
                true,
            )
            .map_err(|e| Error::io("cannot write the journal", e))?;
        let run = new_run(&run_id, &options, interactive, &runtime);
        run.attach_journal(journal);
        let engine = engine::build(&run, false);
        let session = Session {
            options,
            interactive,
            runtime,
            run: Arc::new(Mutex::new(run)),
            engine,
            scope: Scope::new(),
            functions: AST::empty(),
            imports: Vec::new(),
            entries: Vec::new(),
            loaded: None,
            vocabulary: Arc::default(),
        };
        session.watch_interrupts()?;
        session.refresh_vocabulary(true);
        Ok(session)
    }

    fn current_run(&self) -> Arc<Run> {
        self.run.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ctrl-C cancels the entry (or loaded step) running now, never the REPL itself.
    fn watch_interrupts(&self) -> Result<()> {
        let _entered = self.runtime.enter();
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| Error::io("cannot watch for Ctrl-C", e))?;
        let run = self.run.clone();
        self.runtime.spawn(async move {
            while interrupts.recv().await.is_some() {
                run.lock().unwrap_or_else(|e| e.into_inner()).cancel();
            }
        });
        Ok(())
    }

    fn prompt_loop(&mut self) -> Result<()> {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut editor = rustyline::Editor::with_config(config)
            .map_err(|e| Error::Failed(format!("cannot start the line editor: {e}")))?;
        editor.set_helper(Some(PromptHelper::new(self.vocabulary.clone())));
        let history = locations::state_dir().join("repl_history");
        let _ = editor.load_history(&history);
        eprintln!(
            "runbook {} REPL{}: Rhai statements, `:help` for commands, Ctrl-D to leave.",
            env!("CARGO_PKG_VERSION"),
            if self.options.dry_run {
                " (dry run)"
            } else {
                ""
            }
        );
        loop {
            match editor.readline(&self.prompt()) {
                Ok(line) => {
                    let keep_going = self.handle(&line);
                    if let Some(parent) = history.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let _ = editor.save_history(&history);
                    if !keep_going {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(Error::Failed(format!("cannot read the prompt: {e}"))),
            }
        }
        Ok(())
    }

    /// Without a terminal: one statement per line (a statement left open continues on the
    /// next lines), commands as at the prompt.
    fn stdin_loop(&mut self) -> Result<()> {
        let parser = Engine::new_raw();
        let mut pending = String::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| Error::io("cannot read stdin", e))?;
            pending.push_str(&line);
            if editor::is_incomplete(&parser, &pending) {
                pending.push('\n');
                continue;
            }
            let entry = std::mem::take(&mut pending);
            if !self.handle(&entry) {
                return Ok(());
            }
        }
        if !pending.trim().is_empty() {
            self.handle(&pending);
        }
        Ok(())
    }

    fn prompt(&self) -> String {
        let mut prompt = String::from("runbook");
        if self.options.dry_run {
            prompt.push_str(" [dry-run]");
        }
        if let Some(loaded) = &self.loaded {
            prompt.push_str(&format!(" ({})", loaded.name));
        }
        prompt.push_str("> ");
        prompt
    }

    /// Handles one entry; false when the REPL should end.
    fn handle(&mut self, line: &str) -> bool {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return true;
        }
        if let Some(command) = trimmed.strip_prefix(':') {
            let mut words = command.split_whitespace();
            let name = words.next().unwrap_or_default();
            let args: Vec<&str> = words.collect();
            return self.command(name, &args);
        }
        self.evaluate(line);
        true
    }

    // ---- entries ------------------------------------------------------------------------

    fn evaluate(&mut self, source: &str) {
        let run = self.current_run();
        run.reset_cancel();
        let before = run.actions().len();
        let outcome = self.eval_entry(&run, source);
        let actions = run.actions()[before..].to_vec();
        let (ok, note) = match outcome {
            Ok(value) => {
                let shown = display::render(&crate::value::to_json(&value));
                if !shown.is_empty() {
                    println!("{shown}");
                }
                (true, String::new())
            }
            Err(message) => {
                eprintln!("{message}");
                (false, message)
            }
        };
        run.journal(
            "entry",
            json!({"source": source, "ok": ok, "error": if ok { Value::Null } else { note.clone().into() }}),
            true,
        );
        self.entries.push(Entry {
            source: source.trim_end().to_string(),
            ok,
            actions,
            note,
        });
        self.refresh_vocabulary(false);
    }

    fn eval_entry(&mut self, run: &Arc<Run>, source: &str) -> std::result::Result<Dynamic, String> {
        run.remember_source(PROMPT_FILE, source);
        let mut entry = self
            .engine
            .compile_with_scope(&self.scope, source)
            .map_err(|e| diagnostics::render_parse(PROMPT_FILE, source, &e))?;
        entry.set_source(PROMPT_FILE);
        let ast = self.functions.merge(&entry);
        let _entered = self.runtime.enter();
        let value = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast)
            .map_err(|e| {
                secrets::redact(&diagnostics::render_eval(PROMPT_FILE, &e, None, &|name| {
                    run.source_text(name)
                }))
            })?;
        self.functions = self.functions.merge(&entry.clone_functions_only());
        for (module, alias) in imports_in(source) {
            self.import(&module, &alias)?;
            self.imports.push((module, alias));
        }
        Ok(value)
    }

    /// Makes an imported stdlib module callable from the entries that follow.
    fn import(&mut self, module: &str, alias: &str) -> std::result::Result<(), String> {
        let resolved = self
            .engine
            .module_resolver()
            .resolve(&self.engine, None, module, rhai::Position::NONE)
            .map_err(|e| format!("import \"{module}\": {e}"))?;
        self.engine.register_static_module(alias, resolved);
        Ok(())
    }

    fn refresh_vocabulary(&self, with_catalog: bool) {
        let mut vocabulary = self.vocabulary.write().unwrap_or_else(|e| e.into_inner());
        if with_catalog {
            if let Ok(meta) = reference::metadata(&self.engine) {
                vocabulary.functions = reference::functions(&meta);
            }
            vocabulary.playbooks = catalog::all_playbooks()
                .into_iter()
                .flatten()
                .filter_map(|source| Playbook::from_source(source).ok())
                .map(|p| {
                    let params = p.header.params.iter().map(|p| p.name.clone()).collect();
                    (p.header.name, params)
                })
                .collect();
        }
        vocabulary.names = self
            .scope
            .iter_raw()
            .map(|(name, _, _)| name.to_string())
            .chain(
                self.functions
                    .iter_functions()
                    .map(|f| format!("{}(", f.name)),
            )
            .collect();
    }

    // ---- commands -----------------------------------------------------------------------

    fn command(&mut self, name: &str, args: &[&str]) -> bool {
        match name {
            "help" | "h" | "?" => self.help(args.first().copied()),
            "dry-run" => self.set_dry_run(args.first().copied()),
            "load" => self.load(args),
            "steps" => self.steps(),
            "next" | "n" => self.advance(false),
            "run" => self.advance(true),
            "journal" => self.print_journal(),
            "save" => self.save(args.first().copied()),
            "quit" | "q" | "exit" => return false,
            other => eprintln!("unknown command `:{other}`; `:help` lists them"),
        }
        true
    }

    fn help(&self, topic: Option<&str>) {
        let vocabulary = self.vocabulary.read().unwrap_or_else(|e| e.into_inner());
        let Some(topic) = topic else {
            println!("Commands:");
            for (name, help) in COMMANDS {
                println!("  {name:9} {help}");
            }
            let mut modules: Vec<String> = vocabulary
                .functions
                .iter()
                .filter_map(|f| f.module.clone())
                .collect();
            modules.dedup();
            println!("Modules (`:help NAME`): {}", modules.join(", "));
            println!(
                "Global functions: step, confirm, confirm_typed, is_dry_run, ... (`:help step`)"
            );
            println!("Anything else is a Rhai statement, run like a line of a playbook.");
            return;
        };
        let matches: Vec<_> = vocabulary
            .functions
            .iter()
            .filter(|f| f.module.as_deref() == Some(topic) || f.path() == topic)
            .collect();
        if matches.is_empty() {
            println!("no help for `{topic}`: try `:help` for the list of modules");
        }
        for f in matches {
            let prefix = f
                .module
                .as_ref()
                .map(|m| format!("{m}::"))
                .unwrap_or_default();
            println!("{prefix}{}", f.signature);
            if !f.doc.is_empty() {
                println!("    {}", f.doc);
            }
        }
    }

    /// Rebuilds the run and engine with dry run on or off; variables, functions, imports and
    /// the journal carry over.
    fn set_dry_run(&mut self, arg: Option<&str>) {
        let dry_run = match arg {
            Some("on") => true,
            Some("off") => false,
            None => {
                println!(
                    "dry run is {}",
                    if self.options.dry_run { "on" } else { "off" }
                );
                return;
            }
            Some(other) => {
                eprintln!("`:dry-run {other}`: say on or off");
                return;
            }
        };
        self.options.dry_run = dry_run;
        let old = self.current_run();
        let run = new_run(&old.id, &self.options, self.interactive, &self.runtime);
        if let Some(journal) = old.take_journal() {
            run.attach_journal(journal);
        }
        run.journal("dry_run", json!({"dry_run": dry_run}), false);
        self.engine = engine::build(&run, false);
        *self.run.lock().unwrap_or_else(|e| e.into_inner()) = run;
        for (module, alias) in self.imports.clone() {
            if let Err(e) = self.import(&module, &alias) {
                eprintln!("error: {e}");
            }
        }
        println!(
            "dry run {}",
            if dry_run {
                "on: mutating primitives plan instead of acting"
            } else {
                "off: primitives act"
            }
        );
    }

    fn load(&mut self, args: &[&str]) {
        let Some((target, assignments)) = args.split_first() else {
            eprintln!("`:load <playbook> [key=value...]`: name a playbook (`runbook list`)");
            return;
        };
        let params = match assignments
            .iter()
            .map(|a| params::split_assignment(a))
            .collect::<std::result::Result<Vec<_>, _>>()
        {
            Ok(params) => params,
            Err(e) => {
                eprintln!("error: {e}");
                return;
            }
        };
        // A playbook already loaded stops where it holds (its journal stays resumable).
        self.loaded = None;
        let request = RunRequest {
            target: Some(target.to_string()),
            params,
            options: RunOptions {
                dry_run: self.options.dry_run,
                assume_yes: self.options.assume_yes,
                allow_exec: self.options.allow_exec,
                interactive: self.interactive,
                timeout: None,
            },
            allow_paths: self.options.allow_paths.clone(),
            verbose: true,
            ..Default::default()
        };
        match Loaded::start(request) {
            Ok((_, Some(Event::Finished(report)))) if report.is_err() => {
                let note = report.err().map(|e| e.render()).unwrap_or_default();
                eprintln!("{note}");
                self.record(&format!(":load {}", args.join(" ")), false, note);
            }
            Ok((loaded, event)) => {
                println!(
                    "loaded {}: {} step(s) written{}; `:steps`, `:next`, `:run`",
                    loaded.name,
                    loaded.written_steps.len(),
                    if self.options.dry_run {
                        " (dry run)"
                    } else {
                        ""
                    }
                );
                self.loaded = Some(loaded);
                self.after_wait(event, &format!(":load {}", args.join(" ")));
            }
            Err(e) => eprintln!("{}", e.render()),
        }
    }

    fn steps(&self) {
        let Some(loaded) = &self.loaded else {
            eprintln!("no playbook loaded: `:load <playbook>` first");
            return;
        };
        for report in &loaded.done {
            println!(
                "  done  {:40} {} in {:.1}s",
                report.key,
                report.outcome,
                report.duration_ms as f64 / 1000.0
            );
        }
        if let Some(step) = &loaded.holding {
            println!("  next  {step}");
        }
        let seen = loaded.done.len() + usize::from(loaded.holding.is_some());
        for step in loaded.written_steps.iter().skip(seen) {
            println!("  later {step}");
        }
        if loaded.is_finished() {
            println!("  (finished)");
        }
    }

    /// `:next` (one step) or `:run` (to the end) on the loaded playbook.
    fn advance(&mut self, to_end: bool) {
        let Some(loaded) = self.loaded.as_mut() else {
            eprintln!("no playbook loaded: `:load <playbook>` first");
            return;
        };
        if loaded.holding.is_none() {
            eprintln!(
                "{} has finished; `:load` it again to start over",
                loaded.name
            );
            return;
        }
        let (event, command) = if to_end {
            (loaded.run_to_end(print_step), ":run")
        } else {
            (loaded.next(print_step), ":next")
        };
        self.after_wait(event, command);
    }

    /// Reports where a loaded playbook stopped, and journals the command at the prompt.
    fn after_wait(&mut self, event: Option<Event>, command: &str) {
        let (ok, note) = match event {
            Some(Event::Holding(step)) => {
                println!("next step: {step}");
                (true, format!("holding before `{step}`"))
            }
            Some(Event::Finished(report)) => match *report {
                Ok(report) => {
                    let ok = report.outcome == Outcome::Success;
                    (ok, finished(&report))
                }
                Err(e) => (false, e.render()),
            },
            Some(Event::Ended(_)) | None => (false, "the playbook thread ended".into()),
        };
        if ok {
            if !note.starts_with("holding") {
                println!("{note}");
            }
        } else {
            eprintln!("{note}");
        }
        self.record(command, ok, note);
    }

    /// Journals a command given at the prompt.
    fn record(&mut self, command: &str, ok: bool, note: String) {
        self.current_run().journal(
            "command",
            json!({"command": command, "ok": ok, "note": note}),
            true,
        );
        self.entries.push(Entry {
            source: command.to_string(),
            ok,
            actions: Vec::new(),
            note,
        });
    }

    fn print_journal(&self) {
        let run = self.current_run();
        println!("session {} (`runbook log {}`)", run.id, run.id);
        for (i, entry) in self.entries.iter().enumerate() {
            let first = entry.source.lines().next().unwrap_or_default();
            let more = if entry.source.lines().count() > 1 {
                " …"
            } else {
                ""
            };
            println!(
                "{:>3}. {}  {first}{more}",
                i + 1,
                if entry.ok { "ok    " } else { "failed" }
            );
            for action in &entry.actions {
                println!("       {}: {}", action.action, action.detail);
            }
            if !entry.note.is_empty() && !entry.ok {
                println!("       {}", entry.note.lines().next().unwrap_or_default());
            }
        }
    }

    /// Writes the entries that succeeded as a playbook with a header.
    fn save(&self, file: Option<&str>) {
        let Some(file) = file else {
            eprintln!("`:save <file.rhai>`: name the playbook file to write");
            return;
        };
        let path = PathBuf::from(file);
        if path.exists() {
            eprintln!("{file} exists; choose another name (nothing written)");
            return;
        }
        let name: String = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut text = format!(
            "//! name: {name}\n//! version: 0.1.0\n//! description: Saved from the runbook REPL (session {}) on {}.\n\n",
            self.current_run().id,
            chrono::Utc::now().format("%Y-%m-%d")
        );
        for (module, alias) in &self.imports {
            text.push_str(&format!("import \"{module}\" as {alias};\n"));
        }
        for entry in self
            .entries
            .iter()
            .filter(|e| e.ok && !e.source.starts_with(':'))
        {
            if imports_in(&entry.source).is_empty() {
                text.push_str(&entry.source);
                if !entry.source.ends_with(';') && !entry.source.ends_with('}') {
                    text.push(';');
                }
                text.push('\n');
            }
        }
        match atomic_file::write(&path, text.as_bytes(), 0o644) {
            Ok(()) => println!("wrote {file}; check it with `runbook check {file}`"),
            Err(e) => eprintln!("cannot write {file}: {e} (nothing written)"),
        }
    }

    /// Ends the session: a loaded playbook stops where it holds, cleanups run, the journal
    /// records the end.
    fn close(&mut self) {
        self.loaded = None;
        let run = self.current_run();
        run.finish();
        run.journal(
            "run_end",
            json!({"outcome": "success", "entries": self.entries.len()}),
            true,
        );
    }
}

fn new_run(
    id: &str,
    options: &ReplOptions,
    interactive: bool,
    runtime: &tokio::runtime::Runtime,
) -> Arc<Run> {
    Run::new(
        id.to_string(),
        RunOptions {
            dry_run: options.dry_run,
            assume_yes: options.assume_yes,
            allow_exec: options.allow_exec,
            interactive,
            timeout: None,
        },
        runner::sandbox(&options.allow_paths),
        runtime.handle().clone(),
        None,
        BTreeMap::new(),
    )
}

fn print_step(report: &StepReport) {
    println!(
        "step {} {} in {:.1}s",
        report.key,
        report.outcome,
        report.duration_ms as f64 / 1000.0
    );
    let shown = display::render(&report.result);
    if !shown.is_empty() {
        println!("{shown}");
    }
    if let Some(error) = &report.error {
        eprintln!("  {error}");
    }
}

fn finished(report: &RunReport) -> String {
    let outcome = serde_json::to_value(report.outcome).unwrap_or_default();
    let mut text = format!(
        "{} {}: {} (run {}{})",
        report.playbook,
        report.version,
        outcome.as_str().unwrap_or("?"),
        report.run_id,
        if report.dry_run { ", dry run" } else { "" }
    );
    if report.dry_run && !report.actions.is_empty() {
        text.push_str(&format!("\nplan ({} changes):", report.actions.len()));
        for (i, action) in report.actions.iter().enumerate() {
            text.push_str(&format!(
                "\n  {:>3}. {}: {}",
                i + 1,
                action.action,
                action.detail
            ));
        }
    }
    if let Some(error) = &report.error {
        text.push('\n');
        text.push_str(error);
    }
    text
}

/// The `import "module" as alias;` statements of an entry.
fn imports_in(source: &str) -> Vec<(String, String)> {
    source
        .split(';')
        .filter_map(|statement| {
            let rest = statement.trim().strip_prefix("import")?.trim_start();
            let rest = rest.strip_prefix('"')?;
            let (module, rest) = rest.split_once('"')?;
            let alias = rest.trim().strip_prefix("as")?.trim();
            let valid = !alias.is_empty() && alias.chars().all(|c| c.is_alphanumeric() || c == '_');
            valid.then(|| (module.to_string(), alias.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::imports_in;

    #[test]
    fn finds_import_statements() {
        assert_eq!(
            imports_in("import \"backup_set\" as sets; let a = 1;\nimport \"postgres\" as pg;"),
            [
                ("backup_set".to_string(), "sets".to_string()),
                ("postgres".to_string(), "pg".to_string())
            ]
        );
        assert!(imports_in("let important = 1;").is_empty());
    }
}
