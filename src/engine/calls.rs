//! The namespaced calls in a script's source (`docker::containers(...)`, `audit::ports(...)`)
//! and its `import "NAME" as ALIAS;` lines, found without running it, so `runbook check`
//! can hold every call against the registered functions and the stdlib modules.
//!
//! Rhai resolves a namespaced call only when it runs; a typo would otherwise surface in the
//! middle of a run. This reads tokens (skipping comments and strings, entering `${...}` of
//! template strings), which is all the check needs.

/// A call `module::function(` at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub module: String,
    pub function: String,
    pub line: usize,
    pub col: usize,
}

/// `import "NAME" as ALIAS;`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub module: String,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Path,
    Punct(char),
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
    tokens: Vec<(Token, usize, usize)>,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    /// Code until end of input, or until the `}` closing a `${` when `in_template`.
    fn code(&mut self, in_template: bool) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            let (line, col) = (self.line, self.col);
            match c {
                '/' => {
                    self.bump();
                    match self.peek() {
                        Some('/') => {
                            while self.peek().is_some_and(|c| c != '\n') {
                                self.bump();
                            }
                        }
                        Some('*') => self.block_comment(),
                        _ => self.tokens.push((Token::Punct('/'), line, col)),
                    }
                }
                '"' => {
                    self.bump();
                    let text = self.quoted('"');
                    self.tokens.push((Token::Str(text), line, col));
                }
                '\'' => {
                    self.bump();
                    self.quoted('\'');
                }
                '`' => {
                    self.bump();
                    self.template();
                }
                ':' => {
                    self.bump();
                    if self.peek() == Some(':') {
                        self.bump();
                        self.tokens.push((Token::Path, line, col));
                    } else {
                        self.tokens.push((Token::Punct(':'), line, col));
                    }
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut word = String::new();
                    while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                        word.push(c);
                        self.bump();
                    }
                    self.tokens.push((Token::Ident(word), line, col));
                }
                c if c.is_whitespace() => {
                    self.bump();
                }
                c => {
                    self.bump();
                    if in_template {
                        if c == '{' {
                            depth += 1;
                        } else if c == '}' {
                            if depth == 0 {
                                return;
                            }
                            depth -= 1;
                        }
                    }
                    self.tokens.push((Token::Punct(c), line, col));
                }
            }
        }
    }

    /// After `/*`: Rhai block comments nest.
    fn block_comment(&mut self) {
        self.bump();
        let mut depth = 1;
        while let Some(c) = self.bump() {
            match (c, self.peek()) {
                ('*', Some('/')) => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                ('/', Some('*')) => {
                    self.bump();
                    depth += 1;
                }
                _ => {}
            }
        }
    }

    /// After the opening quote: the text up to the closing one, escapes kept as written.
    fn quoted(&mut self, quote: char) -> String {
        let mut text = String::new();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    if let Some(next) = self.bump() {
                        text.push(next);
                    }
                }
                c if c == quote => break,
                c => text.push(c),
            }
        }
        text
    }

    /// After an opening backtick: the text, and the code of each `${...}`.
    fn template(&mut self) {
        while let Some(c) = self.bump() {
            match c {
                '`' => return,
                '$' if self.peek() == Some('{') => {
                    self.bump();
                    self.code(true);
                }
                _ => {}
            }
        }
    }
}

fn tokens(source: &str) -> Vec<(Token, usize, usize)> {
    let mut lexer = Lexer {
        chars: source.chars().peekable(),
        line: 1,
        col: 1,
        tokens: Vec::new(),
    };
    lexer.code(false);
    lexer.tokens
}

/// Every `module::function(` call in the source, in order. Longer paths
/// (`a::b::f(`) are reported with their first module and last name.
pub fn namespaced_calls(source: &str) -> Vec<Call> {
    let tokens = tokens(source);
    let mut calls = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = matches!(tokens[i].0, Token::Ident(_))
            && matches!(tokens.get(i + 1), Some((Token::Path, ..)))
            && (i == 0 || !matches!(tokens[i - 1].0, Token::Path));
        if !starts_path {
            i += 1;
            continue;
        }
        let (line, col) = (tokens[i].1, tokens[i].2);
        let mut j = i;
        let mut names = Vec::new();
        while let Some((Token::Ident(name), ..)) = tokens.get(j) {
            names.push(name.clone());
            if matches!(tokens.get(j + 1), Some((Token::Path, ..))) {
                j += 2;
            } else {
                break;
            }
        }
        if names.len() >= 2 && matches!(tokens.get(j + 1), Some((Token::Punct('('), ..))) {
            calls.push(Call {
                module: names[0].clone(),
                function: names[names.len() - 1].clone(),
                line,
                col,
            });
        }
        i = j + 1;
    }
    calls
}

/// Every `import NAME as ALIAS` in the source. A name that is not a plain string (a template
/// such as `` `engine_${name}` ``, chosen at run time) gives an empty `module`: its calls cannot
/// be checked before the run.
pub fn imports(source: &str) -> Vec<Import> {
    let tokens = tokens(source);
    let mut found = Vec::new();
    for (i, (token, ..)) in tokens.iter().enumerate() {
        if *token != Token::Ident("import".into()) {
            continue;
        }
        let rest = &tokens[i + 1..];
        let end = rest
            .iter()
            .position(|(t, ..)| *t == Token::Punct(';'))
            .unwrap_or(rest.len());
        let statement = &rest[..end];
        let Some(at) = statement
            .iter()
            .rposition(|(t, ..)| *t == Token::Ident("as".into()))
        else {
            continue;
        };
        let Some((Token::Ident(alias), ..)) = statement.get(at + 1) else {
            continue;
        };
        let module = match &statement[..at] {
            [(Token::Str(module), ..)] => module.clone(),
            _ => String::new(),
        };
        found.push(Import {
            module,
            alias: alias.clone(),
        });
    }
    found
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_outside_comments_and_strings_with_their_positions() {
        let src =
            "import \"audit\" as audit;\n// docker::nope()\nlet x = docker::contaners(#{});\n\
                   let s = \"fs::nope()\";\nlet t = `${ fs::exists(\"a\") } and crypto::x()`;\n\
                   /* a /* nested */ log::nope() */ audit::ports(c, []);\nlet k = global::X;\n";
        let calls = namespaced_calls(src);
        let found: Vec<(String, usize, usize)> = calls
            .iter()
            .map(|c| (format!("{}::{}", c.module, c.function), c.line, c.col))
            .collect();
        assert_eq!(
            found,
            vec![
                ("docker::contaners".to_string(), 3, 9),
                ("fs::exists".to_string(), 5, 13),
                ("audit::ports".to_string(), 6, 34),
            ]
        );
        assert_eq!(
            imports(src),
            vec![Import {
                module: "audit".into(),
                alias: "audit".into()
            }]
        );
    }

    #[test]
    fn a_typo_finds_its_name() {
        let names = ["containers", "inspect", "stop"];
        assert_eq!(closest("contaners", names), Some("containers"));
        assert_eq!(closest("frobnicate", names), None);
    }

    #[test]
    fn an_import_by_a_name_chosen_at_run_time_has_no_module() {
        let src = "for n in names() {\n    import `engine_${n}` as engine;\n    engine::kinds();\n}\nimport \"audit\" as audit;\n";
        assert_eq!(
            imports(src),
            [
                Import {
                    module: String::new(),
                    alias: "engine".into()
                },
                Import {
                    module: "audit".into(),
                    alias: "audit".into()
                }
            ]
        );
    }
}
