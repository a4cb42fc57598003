//! Binding `-p key=value` arguments to a playbook's declared parameters, before any step runs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::header::Header;
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

/// Checks every given value against the header (type, constraint, not given twice) and fills
/// in defaults. Each problem is one sentence naming the parameter.
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
        let value = param.parse_value(raw)?;
        match (values.get_mut(name), value) {
            (None, value) => {
                values.insert(name.clone(), value);
            }
            // A list may be given in parts: `-p only=a -p only=b`.
            (Some(Value::Array(items)), Value::Array(more)) => items.extend(more),
            (Some(_), _) => {
                return Err(format!(
                    "parameter `{name}` is given twice (-p {name}=...); it takes one value"
                ))
            }
        }
    }
    for param in &header.params {
        if values.contains_key(&param.name) {
            continue;
        }
        match &param.default {
            Some(default) => {
                values.insert(param.name.clone(), param.parse_value(default)?);
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

/// Reads the secret a reference points to.
/// An empty secret is refused: it is a mistake (an empty file, an unset variable exported
/// empty) that would otherwise show only after the first change.
pub fn resolve_secret(name: &str, reference: &str) -> Result<Secret, String> {
    let value = match reference.split_once(':') {
        Some(("env", var)) => std::env::var(var).map_err(|_| {
            format!("secret parameter `{name}`: environment variable {var} is not set")
        })?,
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("secret parameter `{name}`: cannot read {path}: {e}"))?,
        _ => {
            return Err(format!(
                "secret parameter `{name}`: `{reference}` is not env:NAME or file:PATH"
            ))
        }
    };
    if value.is_empty() {
        let source = match reference.split_once(':') {
            Some(("env", var)) => format!("environment variable {var}"),
            _ => format!("file {}", &reference[5..]),
        };
        return Err(format!("secret parameter `{name}`: {source} is empty"));
    }
    Ok(Secret::new(value))
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
    fn a_scalar_given_twice_is_refused_and_a_list_adds_up() {
        let h = header();
        let err = bind(&h, &given(&[("stack", "a"), ("stack", "b")])).unwrap_err();
        assert_eq!(
            err,
            "parameter `stack` is given twice (-p stack=...); it takes one value"
        );
        let b = bind(
            &h,
            &given(&[("stack", "a"), ("only", "x"), ("only", "y,z")]),
        )
        .unwrap();
        assert_eq!(b.values["only"], serde_json::json!(["x", "y", "z"]));
    }
}
