//! `.env` files as Docker Compose reads them: `NAME=value` lines, `export` prefixes, quotes,
//! comments. Values of credentials come back as Secrets; removing them rewrites the file
//! atomically, keeping its mode.

use std::os::unix::fs::PermissionsExt;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::{checked_path, error, PrimResult};
use crate::atomic_file;
use crate::run::Run;
use crate::secrets::Secret;

/// Words that mark a part of a variable name (between `_`s) as a credential anywhere in it.
const CREDENTIAL_WORDS: [&str; 3] = ["PASSWORD", "PASSWD", "SECRET"];
/// ... at its end (`APIKEY`, `GH_TOKEN`; not `GPG_KEYS`, `KEYCLOAK_URL`, `TOKENIZER`).
const CREDENTIAL_ENDINGS: [&str; 2] = ["TOKEN", "KEY"];

/// One `NAME=value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// Whether a variable name looks like it holds a credential (`*_FILE` names point at files).
pub fn looks_like_credential(name: &str) -> bool {
    let upper = name.to_uppercase();
    !upper.ends_with("_FILE")
        && upper
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| {
                part == "PASS"
                    || CREDENTIAL_WORDS.iter().any(|w| part.contains(w))
                    || CREDENTIAL_ENDINGS.iter().any(|w| part.ends_with(w))
            })
}

/// The name and raw value of an assignment line, or None for blanks and comments.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let assignment = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let (name, raw) = assignment.split_once('=')?;
    Some((name.trim(), raw))
}

fn unquote(raw: &str, line: usize) -> Result<String, String> {
    let raw = raw.trim();
    let unterminated = || format!("line {line}: the quoted value is not closed on its line");
    if let Some(rest) = raw.strip_prefix('\'') {
        let end = rest.find('\'').ok_or_else(unterminated)?;
        return Ok(rest[..end].to_string());
    }
    if let Some(rest) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err(unterminated());
    }
    // Unquoted: a ` #` starts a comment.
    let value = raw.split(" #").next().unwrap_or_default();
    Ok(value.trim_end().to_string())
}

/// Every assignment in a `.env` text, in order.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some((name, raw)) = split_line(line) else {
            continue;
        };
        let number = index + 1;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!("line {number}: `{name}` is not a variable name"));
        }
        entries.push(Entry {
            name: name.to_string(),
            value: unquote(raw, number)?,
            line: number,
        });
    }
    Ok(entries)
}

/// The text with each named variable's line replaced by `# NAME: comment`; line endings and
/// every other line kept as they were. Returns the new text and how many lines changed.
pub fn remove(text: &str, names: &[String], comment: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        match split_line(body) {
            Some((name, _)) if names.iter().any(|n| n == name) => {
                out.push_str(&format!("# {name}: {comment}"));
                out.push_str(&line[body.len()..]);
                removed += 1;
            }
            _ => out.push_str(line),
        }
    }
    (out, removed)
}

fn read_entries(ctx: &NativeCallContext, path: &str) -> PrimResult<Vec<Entry>> {
    let resolved = checked_path(&Run::of(ctx), path)?;
    let text = std::fs::read_to_string(&resolved)
        .map_err(|e| error(format!("cannot read {path}: {e}")))?;
    parse(&text).map_err(|e| error(format!("{path}: {e}")))
}

fn describe(entry: Entry, credential: bool) -> Dynamic {
    let mut map = Map::new();
    map.insert("name".into(), entry.name.into());
    map.insert(
        "value".into(),
        if credential {
            Dynamic::from(Secret::new(entry.value))
        } else {
            entry.value.into()
        },
    );
    map.insert("line".into(), (entry.line as INT).into());
    map.insert("credential".into(), credential.into());
    map.into()
}

#[export_module]
pub mod api {
    /// The variables of a `.env` file: `[#{name, value, line, credential}]`. Names that look
    /// like credentials (see `is_credential`) have `credential: true` and their value as a
    /// Secret.
    #[rhai_fn(name = "read", return_raw)]
    pub fn read_guessing(ctx: NativeCallContext, path: &str) -> Result<Array, Box<EvalAltResult>> {
        let entries = super::read_entries(&ctx, path)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let credential = super::looks_like_credential(&e.name) && !e.value.is_empty();
                super::describe(e, credential)
            })
            .collect())
    }

    /// True when a variable name looks like a credential: a part of it (between `_`s) holds
    /// PASSWORD, PASSWD or SECRET, ends in TOKEN or KEY, or is PASS; never `*_FILE`.
    pub fn is_credential(name: &str) -> bool {
        super::looks_like_credential(name)
    }

    /// The variables of a `.env` file, with exactly the `names` given treated as credentials
    /// (values as Secrets); a name the file lacks is an error.
    #[rhai_fn(name = "read", return_raw)]
    pub fn read_named(
        ctx: NativeCallContext,
        path: &str,
        names: Array,
    ) -> Result<Array, Box<EvalAltResult>> {
        let entries = super::read_entries(&ctx, path)?;
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        if let Some(missing) = names
            .iter()
            .find(|n| !entries.iter().any(|e| &e.name == *n))
        {
            return Err(super::error(format!("{path} has no variable `{missing}`")));
        }
        Ok(entries
            .into_iter()
            .map(|e| {
                let credential = names.contains(&e.name);
                super::describe(e, credential)
            })
            .collect())
    }

    /// Rewrites a `.env` file without the named variables: each of their lines becomes
    /// `# NAME: comment`. Atomic, keeps the file's mode; planned in a dry run. Returns how
    /// many lines were replaced.
    #[rhai_fn(return_raw)]
    pub fn remove(
        ctx: NativeCallContext,
        path: &str,
        names: Array,
        comment: &str,
    ) -> Result<INT, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let resolved = checked_path(&run, path)?;
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let text = std::fs::read_to_string(&resolved)
            .map_err(|e| super::error(format!("cannot read {path}: {e}")))?;
        let (rewritten, removed) = super::remove(&text, &names, comment.trim());
        if removed == 0 {
            return Ok(0);
        }
        if !run.mutate(
            "dotenv::remove",
            format!(
                "rewrite {} without the values of {}",
                resolved.display(),
                names.join(", ")
            ),
        ) {
            return Ok(removed as INT);
        }
        let mode = std::fs::metadata(&resolved)
            .map(|m| m.permissions().mode() & 0o7777)
            .map_err(|e| super::error(format!("cannot stat {path}: {e}")))?;
        atomic_file::write(&resolved, rewritten.as_bytes(), mode)
            .map_err(|e| super::error(format!("cannot rewrite {path}: {e}")))?;
        Ok(removed as INT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "# shop settings\nexport DB_PASSWORD='p@ss w#rd'\nAPI_TOKEN=\"tok\\\"en\" \nPORT=8080 # http\n\nDB_PASSWORD_FILE=/run/secrets/db\nEMPTY_SECRET=\r\n";

    #[test]
    fn parses_compose_style_assignments() {
        let entries = parse(ENV).unwrap();
        let pairs: Vec<(&str, &str, usize)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            pairs,
            [
                ("DB_PASSWORD", "p@ss w#rd", 2),
                ("API_TOKEN", "tok\"en", 3),
                ("PORT", "8080", 4),
                ("DB_PASSWORD_FILE", "/run/secrets/db", 6),
                ("EMPTY_SECRET", "", 7),
            ]
        );
    }

    #[test]
    fn unclosed_quotes_and_bad_names_are_refused_with_the_line() {
        assert_eq!(
            parse("A=1\nB=\"open\n").unwrap_err(),
            "line 2: the quoted value is not closed on its line"
        );
        assert_eq!(
            parse("BAD NAME=1\n").unwrap_err(),
            "line 1: `BAD NAME` is not a variable name"
        );
    }

    #[test]
    fn credentials_are_recognised_by_name() {
        assert!(looks_like_credential("DB_PASSWORD"));
        assert!(looks_like_credential("stripe_api_key"));
        assert!(looks_like_credential("PGPASSWORD"));
        assert!(looks_like_credential("SMTP_PASS"));
        assert!(looks_like_credential("AWS_SECRET_ACCESS_KEY"));
        assert!(looks_like_credential("GITHUB_TOKEN"));
        assert!(!looks_like_credential("DB_PASSWORD_FILE"));
        assert!(!looks_like_credential("PORT"));
        // Image defaults and ordinary settings that merely contain the letters.
        for name in [
            "GPG_KEYS",
            "KEYCLOAK_URL",
            "TOKENIZER_PATH",
            "PASSENGER_HOME",
        ] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }

    #[test]
    fn remove_replaces_only_the_named_lines() {
        let names = vec!["DB_PASSWORD".to_string(), "EMPTY_SECRET".to_string()];
        let (text, removed) = remove(ENV, &names, "moved to secret/shop/env");
        assert_eq!(removed, 2);
        assert_eq!(
            text,
            "# shop settings\n# DB_PASSWORD: moved to secret/shop/env\nAPI_TOKEN=\"tok\\\"en\" \nPORT=8080 # http\n\nDB_PASSWORD_FILE=/run/secrets/db\n# EMPTY_SECRET: moved to secret/shop/env\r\n"
        );
        assert!(!text.contains("p@ss"));
    }
}
