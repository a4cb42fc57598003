//! One declared playbook parameter: its type, default and constraint, and how a value given
//! for it (`-p key=value`, or the default as written in the header) is read and checked.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The type of a playbook parameter; `-p` values are parsed and checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    /// A filesystem path; relative values are resolved against the working directory and the
    /// directory is added to the run's allowed roots.
    Path,
    /// `90`, `90s`, `5m`, `1h30m`; scripts see whole seconds.
    Duration,
    /// Comma-separated values or a JSON array; scripts see a list of strings.
    List,
    /// A reference to a secret: `env:NAME` or `file:PATH`, never the value itself (it would
    /// show in `ps`). Scripts see a `Secret`.
    Secret,
}

impl ParamType {
    /// The type named in a header (`string`, `int`, ...).
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "bool" => ParamType::Bool,
            "path" => ParamType::Path,
            "duration" => ParamType::Duration,
            "list" => ParamType::List,
            "secret" => ParamType::Secret,
            _ => return None,
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).ok();
        f.write_str(name.as_ref().and_then(Value::as_str).unwrap_or("?"))
    }
}

/// What a value must be beyond its type, written after the default in the header:
/// `(1..19)`, `(1..)`, `(zstd|gzip|none)`, `(non-empty)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Constraint {
    /// An int between `min` and `max`, both included (either may be open).
    Range { min: Option<i64>, max: Option<i64> },
    /// A string (or every item of a list) among these words.
    OneOf { values: Vec<String> },
    /// A string or list with something in it; a path to a file with something in it.
    NonEmpty,
}

impl Constraint {
    /// Reads the text between the parentheses, for a parameter of `kind`.
    pub fn parse(text: &str, kind: ParamType) -> Result<Constraint, String> {
        let text = text.trim();
        if text == "non-empty" {
            return match kind {
                ParamType::String | ParamType::List | ParamType::Path => Ok(Constraint::NonEmpty),
                _ => Err(format!(
                    "(non-empty) applies to string, list and path, not {kind}"
                )),
            };
        }
        if let Some((min, max)) = text.split_once("..") {
            if kind != ParamType::Int {
                return Err(format!("a range ({text}) applies to int, not {kind}"));
            }
            let bound = |s: &str| -> Result<Option<i64>, String> {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("range bound `{s}` is not an integer"))
            };
            let (min, max) = (bound(min)?, bound(max)?);
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(format!("range ({text}) is empty"));
                }
            }
            return Ok(Constraint::Range { min, max });
        }
        if kind != ParamType::String && kind != ParamType::List {
            return Err(format!(
                "a choice ({text}) applies to string and list, not {kind}; \
                 ints take a range like (1..19)"
            ));
        }
        let values: Vec<String> = text.split('|').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!(
                "expected (a|b|c), (1..19) or (non-empty), found ({text})"
            ));
        }
        Ok(Constraint::OneOf { values })
    }

    /// The constraint as the header writes it.
    pub fn describe(&self) -> String {
        match self {
            Constraint::Range { min, max } => format!(
                "{}..{}",
                min.map(|m| m.to_string()).unwrap_or_default(),
                max.map(|m| m.to_string()).unwrap_or_default()
            ),
            Constraint::OneOf { values } => values.join("|"),
            Constraint::NonEmpty => "non-empty".into(),
        }
    }

    /// Checks a parsed value; the error is one sentence naming the parameter.
    fn check(&self, name: &str, value: &Value) -> Result<(), String> {
        match self {
            Constraint::Range { min, max } => {
                let Some(n) = value.as_i64() else {
                    return Ok(());
                };
                let (lo, hi) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
                if n < lo || n > hi {
                    let expected = match (min, max) {
                        (Some(a), Some(b)) => format!("between {a} and {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => unreachable!("a range has a bound"),
                    };
                    return Err(format!("parameter `{name}` must be {expected}, got {n}"));
                }
            }
            Constraint::OneOf { values } => {
                let given: Vec<&str> = match value {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if let Some(bad) = given.iter().find(|g| !values.iter().any(|v| v == *g)) {
                    return Err(format!(
                        "parameter `{name}` must be one of {}, got `{bad}`",
                        values.join(", ")
                    ));
                }
            }
            Constraint::NonEmpty => match value {
                Value::String(s) if s.trim().is_empty() => {
                    return Err(format!("parameter `{name}` must not be empty"))
                }
                Value::Array(items) if items.is_empty() => {
                    return Err(format!("parameter `{name}` must list at least one value"))
                }
                _ => {}
            },
        }
        Ok(())
    }
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub required: bool,
    /// The default as written in the header (a JSON literal or a bare word).
    pub default: Option<String>,
    /// What a value must be beyond its type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    pub help: String,
}

impl Param {
    /// Parses and checks one value (a `-p` value or the default). JSON string literals (as
    /// defaults are written) are unquoted first. Secret parameters keep their reference.
    pub fn parse_value(&self, raw: &str) -> Result<Value, String> {
        if self.kind == ParamType::Secret {
            return parse_secret_ref(&self.name, raw).map(Value::String);
        }
        let value = self.parse_typed(raw)?;
        if let Some(constraint) = &self.constraint {
            constraint.check(&self.name, &value)?;
            if constraint == &Constraint::NonEmpty && self.kind == ParamType::Path {
                if let Value::String(path) = &value {
                    non_empty_file(&self.name, path)?;
                }
            }
        }
        Ok(value)
    }

    /// Checks a default as the header writes it: its type and constraint, not the files it
    /// names (they may appear by the time the playbook runs).
    pub fn check_default(&self, raw: &str) -> Result<(), String> {
        if self.kind == ParamType::Secret {
            return parse_secret_ref(&self.name, raw).map(drop);
        }
        let value = self.parse_typed(raw)?;
        match &self.constraint {
            Some(constraint) => constraint.check(&self.name, &value),
            None => Ok(()),
        }
    }

    fn parse_typed(&self, raw: &str) -> Result<Value, String> {
        let text = unquote(raw);
        let bad =
            |expected: &str| format!("parameter `{}` must be {expected}, got `{raw}`", self.name);
        Ok(match self.kind {
            ParamType::String => Value::String(text),
            ParamType::Int => {
                Value::from(text.trim().parse::<i64>().map_err(|_| bad("an integer"))?)
            }
            ParamType::Bool => Value::Bool(match text.trim() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return Err(bad("true or false")),
            }),
            ParamType::Path => {
                if text.is_empty() {
                    return Err(bad("a path"));
                }
                let path = Path::new(&text);
                let absolute = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    std::env::current_dir()
                        .map_err(|e| e.to_string())?
                        .join(path)
                };
                Value::String(clean(&absolute))
            }
            ParamType::Duration => Value::from(
                parse_duration(&text).ok_or_else(|| bad("a duration like 90s, 5m or 1h30m"))?,
            ),
            ParamType::List => {
                let trimmed = text.trim();
                if trimmed.starts_with('[') {
                    let items: Vec<Value> = serde_json::from_str(trimmed)
                        .map_err(|_| bad("a list (a,b,c or a JSON array)"))?;
                    Value::Array(items)
                } else if trimmed.is_empty() {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(
                        trimmed
                            .split(',')
                            .map(|s| Value::String(s.trim().to_string()))
                            .collect(),
                    )
                }
            }
            ParamType::Secret => unreachable!("secret references are read by parse_secret_ref"),
        })
    }
}

/// A `(non-empty)` path: a file with something in it (an empty passphrase file is a mistake
/// that would otherwise show only after the first change).
fn non_empty_file(name: &str, path: &str) -> Result<(), String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
            Err(format!("parameter `{name}`: file {path} is empty"))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("parameter `{name}`: cannot read {path}: {e}")),
    }
}

/// Checks a secret reference. Literal values are refused: they would be visible in `ps`.
pub fn parse_secret_ref(name: &str, raw: &str) -> Result<String, String> {
    let text = unquote(raw);
    match text.split_once(':') {
        Some(("env", var)) if !var.is_empty() => Ok(text),
        Some(("file", path)) if !path.is_empty() => Ok(text),
        _ => Err(format!(
            "parameter `{name}` is a secret: pass env:VARIABLE or file:PATH, never the value itself \
             (command lines are visible to every user in `ps`)"
        )),
    }
}

/// `90`, `90s`, `5m`, `1h30m`, `2d` → whole seconds (rounded up).
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return (secs >= 0).then_some(secs);
    }
    let d = humantime::parse_duration(text).ok()?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).ok()
}

fn unquote(raw: &str) -> String {
    if raw.starts_with('"') {
        if let Ok(Value::String(s)) = serde_json::from_str(raw) {
            return s;
        }
    }
    raw.to_string()
}

/// Removes `.` and resolves `..` lexically, for display and the journal.
fn clean(path: &Path) -> String {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: ParamType, constraint: &str) -> Param {
        Param {
            name: "p".into(),
            kind,
            required: false,
            default: None,
            constraint: Some(Constraint::parse(constraint, kind).unwrap()),
            help: String::new(),
        }
    }

    #[test]
    fn ranges_choices_and_non_empty() {
        let level = param(ParamType::Int, "1..19");
        assert_eq!(level.parse_value("3").unwrap(), 3);
        assert_eq!(
            level.parse_value("25").unwrap_err(),
            "parameter `p` must be between 1 and 19, got 25"
        );
        let parallel = param(ParamType::Int, "1..");
        assert_eq!(
            parallel.parse_value("0").unwrap_err(),
            "parameter `p` must be at least 1, got 0"
        );
        let compression = param(ParamType::String, "zstd|gzip|none");
        assert_eq!(compression.parse_value("gzip").unwrap(), "gzip");
        assert_eq!(
            compression.parse_value("lz4").unwrap_err(),
            "parameter `p` must be one of zstd, gzip, none, got `lz4`"
        );
        let only = param(ParamType::List, "a|b");
        assert!(only.parse_value("a,b").is_ok());
        assert!(only.parse_value("a,c").is_err());
        let name = param(ParamType::String, "non-empty");
        assert_eq!(
            name.parse_value("").unwrap_err(),
            "parameter `p` must not be empty"
        );
    }

    #[test]
    fn a_non_empty_path_is_a_file_with_something_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "\n").unwrap();
        let p = param(ParamType::Path, "non-empty");
        let err = p.parse_value(file.to_str().unwrap()).unwrap_err();
        assert!(err.ends_with("is empty"), "{err}");
        std::fs::write(&file, "hunter2\n").unwrap();
        assert!(p.parse_value(file.to_str().unwrap()).is_ok());
    }

    #[test]
    fn constraints_that_do_not_fit_the_type_are_refused() {
        assert!(Constraint::parse("1..3", ParamType::String).is_err());
        assert!(Constraint::parse("a|b", ParamType::Int).is_err());
        assert!(Constraint::parse("5..1", ParamType::Int).is_err());
        assert!(Constraint::parse("non-empty", ParamType::Bool).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1500ms"), Some(2));
        assert_eq!(parse_duration("soon"), None);
    }
}
