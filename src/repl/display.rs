//! Results at the prompt as a person reads them: lists of records as tables, records as
//! aligned `key: value` lines, everything else as compact JSON. Secrets are already masked
//! by the conversion to JSON.

use serde_json::Value;

/// Widest a table cell may be before it is cut.
const MAX_CELL: usize = 48;

/// Renders a result for the terminal.
pub fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(rows) if !rows.is_empty() && rows.iter().all(Value::is_object) => table(rows),
        Value::Object(fields) if !fields.is_empty() => {
            let width = fields.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            fields
                .iter()
                .map(|(k, v)| format!("{k:width$}  {}", cell(v, usize::MAX)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        other => other.to_string(),
    }
}

/// One value on one line, cut to `max` characters.
fn cell(value: &Value, max: usize) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.replace('\n', "\\n"),
        other => other.to_string(),
    };
    if text.chars().count() > max {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A table with a column per key, in first-seen order.
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for key in row.as_object().into_iter().flat_map(|m| m.keys()) {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| cell(row.get(*c).unwrap_or(&Value::Null), MAX_CELL))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(columns.clone())];
    out.extend(
        cells
            .iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.push(format!("({} rows)", rows.len()));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_a_table_with_every_column() {
        let out =
            render(&json!([{"name": "db", "state": "running"}, {"name": "cache", "health": "ok"}]));
        assert_eq!(
            out,
            "name   state    health\ndb     running\ncache           ok\n(2 rows)"
        );
    }

    #[test]
    fn a_record_is_aligned_and_scalars_are_plain() {
        assert_eq!(render(&json!({"a": 1, "long": "x"})), "a     1\nlong  x");
        assert_eq!(render(&json!("text")), "text");
        assert_eq!(render(&json!([1, 2])), "[1,2]");
        assert_eq!(render(&Value::Null), "");
    }
}
