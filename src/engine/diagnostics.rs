//! Error messages that point at the source: `file:line:col`, the line, a caret, and what went
//! wrong in words.

use rhai::{EvalAltResult, ParseError, Position};

/// Renders a message at a position of a file whose text is known.
pub fn render_at(file: &str, text: &str, line: usize, col: usize, message: &str) -> String {
    let mut out = format!("error: {file}:{line}:{col}: {message}");
    if let Some(source_line) = text.lines().nth(line.saturating_sub(1)) {
        let gutter = line.to_string().len();
        let caret_pad: String = source_line
            .chars()
            .take(col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "\n{:gutter$} |\n{line} | {source_line}\n{:gutter$} | {caret_pad}^",
            "", ""
        ));
    }
    out
}

/// A compile error of a playbook.
pub fn render_parse(file: &str, text: &str, err: &ParseError) -> String {
    let pos = err.position();
    let message = err.err_type().to_string();
    match (pos.line(), pos.position()) {
        (Some(line), col) => render_at(file, text, line, col.unwrap_or(1), &message),
        _ => format!("error: {file}: {message}"),
    }
}

/// The innermost error of a chain of function calls and module loads, with the name of the
/// source it happened in (`None`: the main playbook).
fn innermost(err: &EvalAltResult) -> (&EvalAltResult, Option<&str>) {
    let mut current = err;
    let mut source = None;
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => {
                if !src.is_empty() {
                    source = Some(src.as_str());
                }
                current = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, _) => {
                if !name.is_empty() {
                    source = Some(name.as_str());
                }
                current = inner;
            }
            _ => return (current, source),
        }
    }
}

/// What went wrong, in words, without position.
pub fn message(err: &EvalAltResult) -> String {
    let (inner, _) = innermost(err);
    match inner {
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => value.to_string(),
        EvalAltResult::ErrorRuntime(value, _) => format!("thrown: {value}"),
        EvalAltResult::ErrorTerminated(value, _) => value.to_string(),
        EvalAltResult::ErrorParsing(kind, _) => kind.to_string(),
        other => {
            let text = other.to_string();
            let pos = other.position();
            match text.strip_suffix(&format!(" ({pos})")) {
                Some(plain) if !pos.is_none() => plain.to_string(),
                _ => text,
            }
        }
    }
}

/// A runtime error of a playbook: the sentence an operator reads, and where it happened for
/// the one who edits the playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// What went wrong in words, with the step it happened in: ``step `dump` failed: ...``.
    pub message: String,
    /// `file:line:col` of the innermost position, when known.
    pub location: Option<String>,
    /// The message at its position: `error: file:line:col: ...`, the source line and a caret.
    pub detailed: String,
    /// The script's own error (a `throw`, a failed primitive) rather than a mistake in the
    /// script (an undefined variable, a wrong type): its sentence is enough for an operator.
    pub thrown: bool,
}

impl EvalError {
    /// What to print: the sentence for an error the playbook raised, the source position for
    /// a mistake in the script or when asked (`--verbose`).
    pub fn render(&self, verbose: bool) -> String {
        if verbose || !self.thrown {
            self.detailed.clone()
        } else {
            format!("error: {}", self.message)
        }
    }
}

/// Reads a runtime error of a playbook, pointing at the innermost position, with the step it
/// happened in. `source_text` gives the text of a compiled file by name.
pub fn eval_error(
    main_file: &str,
    err: &EvalAltResult,
    step: Option<&str>,
    source_text: &dyn Fn(&str) -> Option<String>,
) -> EvalError {
    let (inner, source) = innermost(err);
    let file = source.unwrap_or(main_file);
    let mut text = message(err);
    if let Some(step) = step {
        text = format!("step `{step}` failed: {text}");
    }
    let thrown = matches!(
        inner,
        EvalAltResult::ErrorRuntime(..) | EvalAltResult::ErrorTerminated(..)
    );
    let pos: Position = inner.position();
    let location = pos
        .line()
        .map(|line| format!("{file}:{line}:{}", pos.position().unwrap_or(1)));
    let detailed = match (pos.line(), source_text(file)) {
        (Some(line), Some(source_text)) => {
            render_at(file, &source_text, line, pos.position().unwrap_or(1), &text)
        }
        _ => format!("error: {file}: {text}"),
    };
    EvalError {
        message: text,
        location,
        detailed,
        thrown,
    }
}

/// A runtime error rendered at its position (the REPL shows every error this way).
pub fn render_eval(
    main_file: &str,
    err: &EvalAltResult,
    step: Option<&str>,
    source_text: &dyn Fn(&str) -> Option<String>,
) -> String {
    eval_error(main_file, err, step, source_text).detailed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thrown_error_is_its_sentence_and_a_script_mistake_shows_its_line() {
        let engine = rhai::Engine::new();
        let text = "let a = 1;\nthrow \"disk is full\";\n";
        let err = engine.run(text).unwrap_err();
        let sources = |_: &str| Some(text.to_string());
        let e = eval_error("p.rhai", &err, Some("dump"), &sources);
        assert_eq!(e.render(false), "error: step `dump` failed: disk is full");
        assert_eq!(e.location.as_deref(), Some("p.rhai:2:1"));
        assert!(e.render(true).contains("2 | throw"), "{}", e.render(true));

        let text = "let a = b + 1;\n";
        let err = engine.run(text).unwrap_err();
        let sources = |_: &str| Some(text.to_string());
        let e = eval_error("p.rhai", &err, None, &sources);
        assert!(!e.thrown);
        assert!(
            e.render(false).starts_with("error: p.rhai:1:9: "),
            "{}",
            e.render(false)
        );
    }

    #[test]
    fn caret_points_at_the_column() {
        let out = render_at(
            "p.rhai",
            "let a = 1;\nlet b = c + 1;\n",
            2,
            9,
            "variable `c` is not defined",
        );
        assert_eq!(
            out,
            "error: p.rhai:2:9: variable `c` is not defined\n  |\n2 | let b = c + 1;\n  |         ^"
        );
    }
}
