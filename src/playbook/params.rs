//! Binding `-p key=value` arguments to a playbook's declared parameters, before any step runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::header::{Header, Param, ParamType};
use crate::secrets::Secret;

/// Parameter values after validation, as recorded in the journal. Secret parameters hold
/// their reference (`env:NAME`, `file:PATH`), never the value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bound {
    pub values: BTreeMap<String, Value>,
}

/// Parses `key=value` as given on the command line.
pub fn split_assignment(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`-p {arg}`: expected key=value"))
}

/// Checks every given value against the header and fills in defaults. Each problem is one
/// sentence naming the parameter.
pub fn bind(header: &Header, given: &[(String, String)]) -> Result<Bound, String> {
    let mut values = BTreeMap::new();
    for (name, raw) in given {
        let param = header.param(name).ok_or_else(|| {
            let known: Vec<&str> = header.params.iter().map(|p| p.name.as_str()).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            format!(
                "unknown parameter `{name}` for playbook `{}` (it takes: {known})",
                header.name
            )
        })?;
        let value = if param.kind == ParamType::Secret {
            Value::String(parse_secret_ref(name, raw)?)
        } else {
            parse_value(param, raw)?
        };
        values.insert(name.clone(), value);
    }
    for param in &header.params {
        if values.contains_key(&param.name) {
            continue;
        }
        match &param.default {
            Some(default) if param.kind == ParamType::Secret => {
                values.insert(
                    param.name.clone(),
                    Value::String(parse_secret_ref(&param.name, default)?),
                );
            }
            Some(default) => {
                values.insert(param.name.clone(), parse_value(param, default)?);
            }
            None if param.required => {
                return Err(format!(
                    "missing required parameter `{}` of playbook `{}`: pass -p {}=<{}>",
                    param.name, header.name, param.name, param.kind
                ))
            }
            None => {
                values.insert(param.name.clone(), Value::Null);
            }
        }
    }
    Ok(Bound { values })
}

/// Parses one value of a non-secret parameter. JSON string literals (as defaults are written)
/// are unquoted first.
pub fn parse_value(param: &Param, raw: &str) -> Result<Value, String> {
    let text = unquote(raw);
    let bad =
        |expected: &str| format!("parameter `{}` must be {expected}, got `{raw}`", param.name);
    Ok(match param.kind {
        ParamType::String => Value::String(text),
        ParamType::Int => Value::from(text.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
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
        ParamType::Secret => {
            return Err(format!("parameter `{}` is a secret reference", param.name))
        }
    })
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

/// Reads the secret a reference points to.
pub fn resolve_secret(name: &str, reference: &str) -> Result<Secret, String> {
    match reference.split_once(':') {
        Some(("env", var)) => std::env::var(var).map(Secret::new).map_err(|_| {
            format!("secret parameter `{name}`: environment variable {var} is not set")
        }),
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| format!("secret parameter `{name}`: cannot read {path}: {e}")),
        _ => Err(format!(
            "secret parameter `{name}`: `{reference}` is not env:NAME or file:PATH"
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

    fn header() -> Header {
        Header::parse(
            "//! name: demo\n//! version: 1.0.0\n//! description: d\n\
             //! param stack: string required\n//! param keep: int = 7\n\
             //! param deep: bool = false\n//! param wait: duration = \"30s\"\n\
             //! param only: list = []\n//! param dir: path = \"./backups\"\n\
             //! param key: secret = \"env:DEMO_KEY\"\n",
        )
        .unwrap()
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_fill_in_and_types_convert() {
        let b = bind(
            &header(),
            &given(&[("stack", "shop"), ("only", "a, b"), ("wait", "1m30s")]),
        )
        .unwrap();
        assert_eq!(b.values["stack"], "shop");
        assert_eq!(b.values["keep"], 7);
        assert_eq!(b.values["deep"], false);
        assert_eq!(b.values["wait"], 90);
        assert_eq!(b.values["only"], serde_json::json!(["a", "b"]));
        assert!(b.values["dir"].as_str().unwrap().ends_with("/backups"));
        assert_eq!(b.values["key"], "env:DEMO_KEY");
    }

    #[test]
    fn each_mistake_is_one_sentence_naming_the_parameter() {
        let h = header();
        let err = bind(&h, &given(&[])).unwrap_err();
        assert!(err.contains("missing required parameter `stack`"), "{err}");
        let err = bind(&h, &given(&[("stack", "s"), ("kep", "3")])).unwrap_err();
        assert!(
            err.contains("unknown parameter `kep`") && err.contains("keep"),
            "{err}"
        );
        let err = bind(&h, &given(&[("stack", "s"), ("keep", "seven")])).unwrap_err();
        assert!(err.contains("`keep` must be an integer"), "{err}");
        let err = bind(&h, &given(&[("stack", "s"), ("deep", "maybe")])).unwrap_err();
        assert!(err.contains("`deep` must be true or false"), "{err}");
    }

    #[test]
    fn secret_literals_are_refused() {
        let err = bind(&header(), &given(&[("stack", "s"), ("key", "hunter2")])).unwrap_err();
        assert!(err.contains("never the value itself"), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1500ms"), Some(2));
        assert_eq!(parse_duration("soon"), None);
    }
}
