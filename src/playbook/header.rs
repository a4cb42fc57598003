//! The playbook header: the leading `//!` lines of a playbook, readable without running it.
//!
//! ```text
//! //! name: backup
//! //! version: 1.2.0
//! //! description: Back up every volume, database and container spec of a stack.
//! //! destructive: false
//! //! locks: stack
//! //! param stack: string required        -- compose project or runbook.stack label
//! //! param backup_dir: path = "./backups" -- where backup sets are written
//! //! param level: int = 3 (1..19)          -- a constraint after the default: (1..19), (a|b|c), (non-empty)
//! //!
//! //! Free text after a blank `//!` line is the playbook's longer description.
//! ```

use serde::Serialize;

use super::param::{Constraint, Param, ParamType};

/// Everything `runbook list` and `runbook show` know about a playbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    pub destructive: bool,
    /// `locks: stack`: a real run holds the lock of the stack its `stack` parameter names,
    /// so no other locking run acts on that stack at the same time.
    pub locks_stack: bool,
    pub params: Vec<Param>,
    /// The longer description after the fields.
    pub details: String,
}

/// A header problem, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderError {
    pub line: usize,
    pub message: String,
}

impl Header {
    /// Reads the header of a playbook's source text.
    pub fn parse(source: &str) -> Result<Header, HeaderError> {
        let mut fields = Fields::default();
        let mut details = Vec::new();
        let mut in_details = false;
        let mut last_line = 0;
        for (index, raw) in source.lines().enumerate() {
            let line_no = index + 1;
            let Some(text) = raw.trim_start().strip_prefix("//!") else {
                if raw.trim().is_empty() && !fields.any() {
                    continue;
                }
                break;
            };
            last_line = line_no;
            let text = text.trim();
            if in_details {
                details.push(text);
            } else if text.is_empty() {
                in_details = fields.any();
            } else {
                fields.take(text, line_no).map_err(|message| HeaderError {
                    line: line_no,
                    message,
                })?;
            }
        }
        let missing = |what: &str| HeaderError {
            line: last_line.max(1),
            message: format!("the header has no `{what}:` line"),
        };
        let name = fields.name.ok_or_else(|| missing("name"))?;
        let version = fields.version.ok_or_else(|| missing("version"))?;
        let description = fields.description.ok_or_else(|| missing("description"))?;
        if let Some(line) = fields.locks_stack {
            match fields.params.iter().find(|p| p.name == "stack") {
                Some(p) if p.kind == ParamType::String => {}
                _ => {
                    return Err(HeaderError {
                        line,
                        message: "`locks: stack` needs a `param stack: string` naming the stack"
                            .into(),
                    })
                }
            }
        }
        Ok(Header {
            name,
            version,
            description,
            destructive: fields.destructive.unwrap_or(false),
            locks_stack: fields.locks_stack.is_some(),
            params: fields.params,
            details: details.join("\n").trim().to_string(),
        })
    }

    /// Whether a source has no header at all: its first line that is not blank is not `//!`.
    pub fn is_absent(source: &str) -> bool {
        source
            .lines()
            .find(|line| !line.trim().is_empty())
            .is_none_or(|line| !line.trim_start().starts_with("//!"))
    }

    /// The header of an ad-hoc script (`runbook run fix.rhai` without a header): named after
    /// its file, version 0.0.0, no parameters.
    pub fn ad_hoc(file_stem: &str) -> Header {
        let mut name = String::new();
        for c in file_stem.chars() {
            match c.to_ascii_lowercase() {
                c if c.is_ascii_lowercase() || c.is_ascii_digit() => name.push(c),
                _ if !name.is_empty() && !name.ends_with('-') => name.push('-'),
                _ => {}
            }
        }
        let name = name.trim_end_matches('-');
        Header {
            name: if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                format!("script-{name}").trim_end_matches('-').to_string()
            } else {
                name.to_string()
            },
            version: semver::Version::new(0, 0, 0),
            description: "ad-hoc script (no header)".into(),
            destructive: false,
            locks_stack: false,
            params: Vec::new(),
            details: String::new(),
        }
    }

    /// The declared parameter of that name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[derive(Default)]
struct Fields {
    name: Option<String>,
    version: Option<semver::Version>,
    description: Option<String>,
    destructive: Option<bool>,
    /// The line of `locks: stack`.
    locks_stack: Option<usize>,
    params: Vec<Param>,
}

impl Fields {
    fn any(&self) -> bool {
        self.name.is_some() || self.version.is_some() || self.description.is_some()
    }

    fn take(&mut self, text: &str, line: usize) -> Result<(), String> {
        if let Some(rest) = text.strip_prefix("param ") {
            let param = parse_param(rest.trim())?;
            if self.params.iter().any(|p| p.name == param.name) {
                return Err(format!("parameter `{}` is declared twice", param.name));
            }
            self.params.push(param);
            return Ok(());
        }
        let (key, value) = text
            .split_once(':')
            .ok_or_else(|| format!("expected `key: value` in the header, found `{text}`"))?;
        let value = value.trim();
        match key.trim() {
            "name" => {
                if !is_identifier(value, true) {
                    return Err(format!(
                        "playbook name `{value}` must be lowercase letters, digits and dashes"
                    ));
                }
                self.name = Some(value.to_string());
            }
            "version" => {
                let v = semver::Version::parse(value)
                    .map_err(|e| format!("version `{value}` is not semver (like 1.2.0): {e}"))?;
                self.version = Some(v);
            }
            "description" => self.description = Some(value.to_string()),
            "destructive" => {
                self.destructive = Some(match value {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => {
                        return Err(format!(
                            "destructive must be true or false, found `{value}`"
                        ))
                    }
                })
            }
            "locks" => {
                if value != "stack" {
                    return Err(format!(
                        "locks must be `stack` (the stack its `stack` parameter names), found `{value}`"
                    ));
                }
                self.locks_stack = Some(line);
            }
            other => {
                return Err(format!(
                    "unknown header field `{other}` (known: name, version, description, \
                     destructive, locks, param; free text goes after a blank `//!` line)"
                ))
            }
        }
        Ok(())
    }
}

fn is_identifier(word: &str, dashes: bool) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dashes && c == '-')
        })
}

/// `NAME: TYPE [required] [= DEFAULT] [(CONSTRAINT)] [-- help]`
fn parse_param(text: &str) -> Result<Param, String> {
    let (spec, help) = match text.split_once("--") {
        Some((spec, help)) => (spec.trim(), help.trim()),
        None => (text, ""),
    };
    let (name, spec) = spec
        .split_once(':')
        .ok_or_else(|| format!("expected `param NAME: TYPE`, found `param {text}`"))?;
    let name = name.trim();
    if !is_identifier(name, false) {
        return Err(format!(
            "parameter name `{name}` must be lowercase letters, digits and underscores"
        ));
    }
    let (spec, constraint) = match spec.trim_end().strip_suffix(')') {
        Some(open) => match open.rfind('(') {
            Some(at) => (&open[..at], Some(&open[at + 1..])),
            None => (spec, None),
        },
        None => (spec, None),
    };
    let (spec, default) = match spec.split_once('=') {
        Some((spec, default)) => (spec.trim(), Some(default.trim().to_string())),
        None => (spec.trim(), None),
    };
    let mut words = spec.split_whitespace();
    let type_word = words
        .next()
        .ok_or_else(|| format!("parameter `{name}` has no type"))?;
    let kind = ParamType::parse(type_word).ok_or_else(|| {
        format!("parameter `{name}`: unknown type `{type_word}` (string, int, bool, path, duration, list, secret)")
    })?;
    let mut required = false;
    for word in words {
        match word {
            "required" => required = true,
            other => {
                return Err(format!(
                    "parameter `{name}`: unexpected `{other}` after the type"
                ))
            }
        }
    }
    if required && default.is_some() {
        return Err(format!(
            "parameter `{name}` is required and has a default; choose one"
        ));
    }
    let constraint = constraint
        .map(|c| Constraint::parse(c, kind).map_err(|e| format!("parameter `{name}`: {e}")))
        .transpose()?;
    let param = Param {
        name: name.to_string(),
        kind,
        required,
        default,
        constraint,
        help: help.to_string(),
    };
    if let Some(default) = &param.default {
        param
            .check_default(default)
            .map_err(|e| format!("default of {e}"))?;
    }
    Ok(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "//! name: backup\n//! version: 1.2.0\n//! description: Back up a stack.\n\
        //! destructive: false\n//! param stack: string required -- the stack\n\
        //! param backup_dir: path = \"./backups\" -- where sets go\n//! param keep: int = 7\n\
        //!\n//! Longer text: with a colon.\n\nlet x = 1;\n";

    #[test]
    fn parses_fields_params_and_details() {
        let h = Header::parse(GOOD).unwrap();
        assert_eq!(h.name, "backup");
        assert_eq!(h.version, semver::Version::new(1, 2, 0));
        assert!(!h.destructive);
        assert!(!h.locks_stack);
        assert_eq!(h.params.len(), 3);
        assert!(h.params[0].required);
        assert_eq!(h.params[1].kind, ParamType::Path);
        assert_eq!(h.params[1].default.as_deref(), Some("\"./backups\""));
        assert_eq!(h.params[1].help, "where sets go");
        assert_eq!(h.details, "Longer text: with a colon.");
    }

    #[test]
    fn constraints_follow_the_default_and_check_it() {
        let src = "//! name: x\n//! version: 1.0.0\n//! description: d\n\
            //! param level: int = 3 (1..19) -- level\n\
            //! param compression: string = \"zstd\" (zstd|gzip|none)\n";
        let h = Header::parse(src).unwrap();
        assert_eq!(
            h.params[0].constraint,
            Some(Constraint::Range {
                min: Some(1),
                max: Some(19)
            })
        );
        assert_eq!(h.params[0].default.as_deref(), Some("3"));
        assert_eq!(h.params[0].help, "level");
        assert_eq!(h.params[1].default.as_deref(), Some("\"zstd\""));
        let src = "//! name: x\n//! version: 1.0.0\n//! description: d\n\
            //! param level: int = 30 (1..19)\n";
        let err = Header::parse(src).unwrap_err();
        assert!(
            err.message.contains("must be between 1 and 19"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_script_without_a_header_is_ad_hoc() {
        let h = Header::ad_hoc("Fix_DNS now");
        assert_eq!(h.name, "fix-dns-now");
        assert!(h.params.is_empty());
        assert!(Header::is_absent("// fix the thing\nlet x = 1;\n"));
        assert!(!Header::is_absent("//! name: x\n"));
    }

    #[test]
    fn errors_name_the_line() {
        let src = "//! name: x\n//! version: 1.0\n//! description: d\n";
        let err = Header::parse(src).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("semver"));

        let src = "//! name: x\n//! version: 1.0.0\n//! description: d\n//! param n: strin\n";
        let err = Header::parse(src).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.message.contains("unknown type `strin`"));
    }

    #[test]
    fn missing_fields_and_bad_defaults_are_refused() {
        assert!(Header::parse("let x = 1;")
            .unwrap_err()
            .message
            .contains("`name:`"));
        let src = "//! name: x\n//! version: 1.0.0\n//! description: d\n//! param n: int = abc\n";
        assert!(Header::parse(src)
            .unwrap_err()
            .message
            .contains("default of"));
        let src =
            "//! name: x\n//! version: 1.0.0\n//! description: d\n//! param n: int required = 3\n";
        assert!(Header::parse(src).is_err());
    }

    #[test]
    fn locks_stack_needs_a_stack_parameter() {
        let base = "//! name: x\n//! version: 1.0.0\n//! description: d\n//! locks: stack\n";
        let h = Header::parse(&format!("{base}//! param stack: string required\n")).unwrap();
        assert!(h.locks_stack);
        let err = Header::parse(base).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(
            err.message.contains("param stack: string"),
            "{}",
            err.message
        );
        let err = Header::parse(&format!("{base}//! param stack: int\n")).unwrap_err();
        assert_eq!(err.line, 4);
        let src = "//! name: x\n//! version: 1.0.0\n//! description: d\n//! locks: host\n";
        let err = Header::parse(src).unwrap_err();
        assert!(
            err.message.contains("locks must be `stack`"),
            "{}",
            err.message
        );
    }
}
