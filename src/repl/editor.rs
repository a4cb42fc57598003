//! The line editor's helper: completion from the engine's metadata, the variables in scope
//! and the playbook catalog; and multi-line input that continues while a statement is open.

use std::sync::{Arc, RwLock};

use rhai::{Engine, ParseErrorType};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::engine::reference::FunctionDoc;

/// The REPL's own commands, for completion and `:help`.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        ":help",
        "[topic]  commands, a module (`:help docker`) or a function",
    ),
    (
        ":dry-run",
        "on|off  mutating primitives plan instead of acting",
    ),
    (
        ":load",
        "<playbook> [key=value...]  load a playbook to step through",
    ),
    (
        ":steps",
        "the loaded playbook's steps: done, next, still to come",
    ),
    (
        ":next",
        "run the loaded playbook's next step and show its result",
    ),
    (":run", "run the rest of the loaded playbook"),
    (":journal", "what was done at this prompt so far"),
    (
        ":save",
        "<file.rhai>  write what was typed as a new playbook",
    ),
    (":quit", "leave (Ctrl-D does too)"),
];

/// What completion offers; the session refreshes it after every entry.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    pub functions: Vec<FunctionDoc>,
    /// Variables in scope and functions defined at the prompt.
    pub names: Vec<String>,
    /// Playbook names with their parameter names.
    pub playbooks: Vec<(String, Vec<String>)>,
}

impl Vocabulary {
    fn modules(&self) -> Vec<String> {
        let mut modules: Vec<String> = self
            .functions
            .iter()
            .filter_map(|f| f.module.clone())
            .collect();
        modules.dedup();
        modules
    }

    /// Candidates for the word `word` typed at the start of `line` (a prompt entry or a
    /// `:command`), as (replacement, display).
    pub fn candidates(&self, line: &str, word: &str) -> Vec<(String, String)> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at_new_word = line.ends_with(char::is_whitespace);
        let position = words.len() - usize::from(!at_new_word && !words.is_empty());
        let mut out = Vec::new();
        let mut offer = |replacement: String, display: String| {
            if replacement.starts_with(word) && replacement != word {
                out.push((replacement, display));
            }
        };
        match (words.first().copied(), position) {
            (Some(cmd), 0) if cmd.starts_with(':') => {
                for (name, help) in COMMANDS {
                    offer(name.to_string(), format!("{name} {help}"));
                }
            }
            (Some(":load"), 1) => {
                for (name, _) in &self.playbooks {
                    offer(name.clone(), name.clone());
                }
            }
            (Some(":load"), _) => {
                let playbook = words.get(1).copied().unwrap_or_default();
                for (name, params) in &self.playbooks {
                    if name == playbook {
                        for param in params {
                            offer(format!("{param}="), format!("{param}="));
                        }
                    }
                }
            }
            (Some(":help"), _) => {
                for module in self.modules() {
                    offer(module.clone(), module);
                }
                for f in &self.functions {
                    offer(f.path(), f.path());
                }
            }
            (Some(cmd), _) if cmd.starts_with(':') => {}
            _ => self.code_candidates(word, &mut offer),
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    fn code_candidates(&self, word: &str, offer: &mut impl FnMut(String, String)) {
        if word.contains("::") {
            for f in self.functions.iter().filter(|f| f.module.is_some()) {
                offer(
                    format!("{}(", f.path()),
                    f.path() + "(" + args(&f.signature),
                );
            }
            return;
        }
        for module in self.modules() {
            offer(format!("{module}::"), format!("{module}::"));
        }
        for f in self.functions.iter().filter(|f| f.module.is_none()) {
            offer(format!("{}(", f.name), f.signature.clone());
        }
        for name in &self.names {
            offer(name.clone(), name.clone());
        }
    }
}

/// `(name: string, options: map) -> map` from `inspect(name: string, options: map) -> map`.
fn args(signature: &str) -> &str {
    signature.find('(').map_or("", |i| &signature[i + 1..])
}

/// Whether `input` is a statement still open at its end (an unclosed block, list, call or
/// template string), so Enter should continue it on a new line.
pub fn is_incomplete(parser: &Engine, input: &str) -> bool {
    if input.trim_start().starts_with(':') {
        return false;
    }
    let Err(err) = parser.compile(input) else {
        return false;
    };
    let last_line = input.lines().last().unwrap_or_default();
    let at_end = err.position().line() >= Some(input.lines().count().max(1))
        && err.position().position().unwrap_or(0) > last_line.chars().count();
    match err.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::MissingToken(..) => at_end || input.ends_with('\n'),
        ParseErrorType::BadInput(rhai::LexError::UnterminatedString) => {
            input.matches('`').count() % 2 == 1
        }
        _ => false,
    }
}

/// The rustyline helper of the REPL.
pub struct PromptHelper {
    vocabulary: Arc<RwLock<Vocabulary>>,
    parser: Engine,
}

impl PromptHelper {
    pub fn new(vocabulary: Arc<RwLock<Vocabulary>>) -> Self {
        PromptHelper {
            vocabulary,
            parser: Engine::new_raw(),
        }
    }
}

impl Completer for PromptHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let vocabulary = self.vocabulary.read().unwrap_or_else(|e| e.into_inner());
        let pairs = vocabulary
            .candidates(before, &before[start..])
            .into_iter()
            .map(|(replacement, display)| Pair {
                display,
                replacement,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Validator for PromptHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(&self.parser, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Hinter for PromptHelper {
    type Hint = String;
}

impl Highlighter for PromptHelper {}

impl Helper for PromptHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_blocks_lists_calls_and_templates_continue() {
        let parser = Engine::new_raw();
        for open in [
            "if true {",
            "let a = [1,",
            "fn f() {",
            "foo(1,",
            "let x = 1 +",
            "let t = `a",
        ] {
            assert!(is_incomplete(&parser, open), "{open:?} should continue");
        }
        for done in [
            "if true { 1 }",
            "let a = 1;",
            "x = ;",
            "}",
            "let s = \"abc",
            ":help",
        ] {
            assert!(
                !is_incomplete(&parser, done),
                "{done:?} should not continue"
            );
        }
    }

    fn vocabulary() -> Vocabulary {
        let f = |module: Option<&str>, name: &str, signature: &str| FunctionDoc {
            module: module.map(str::to_string),
            name: name.into(),
            signature: signature.into(),
            doc: String::new(),
        };
        Vocabulary {
            functions: vec![
                f(
                    Some("fs"),
                    "write_text",
                    "write_text(path: string, text: string)",
                ),
                f(Some("fs"), "read_text", "read_text(path: string) -> string"),
                f(None, "step", "step(name: string, body: closure) -> any"),
            ],
            names: vec!["stack".into()],
            playbooks: vec![("backup".into(), vec!["stack".into(), "backup_dir".into()])],
        }
    }

    fn replacements(line: &str, word: &str) -> Vec<String> {
        vocabulary()
            .candidates(line, word)
            .into_iter()
            .map(|c| c.0)
            .collect()
    }

    #[test]
    fn completes_module_functions_globals_variables_commands_and_playbooks() {
        assert_eq!(replacements("fs::w", "fs::w"), ["fs::write_text("]);
        assert_eq!(replacements("let a = f", "f"), ["fs::"]);
        assert_eq!(replacements("st", "st"), ["stack", "step("]);
        assert_eq!(replacements(":lo", ":lo"), [":load"]);
        assert_eq!(replacements(":load b", "b"), ["backup"]);
        assert_eq!(replacements(":load backup st", "st"), ["stack="]);
        assert_eq!(
            replacements(":help f", "f"),
            ["fs", "fs::read_text", "fs::write_text"]
        );
    }
}
