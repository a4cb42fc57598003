//! Small text helpers Rhai's standard library lacks.

use rhai::plugin::*;

/// Lays rows out in aligned columns under a header: numbers right-aligned, text left-aligned,
/// two spaces between columns, each line indented by two.
fn table(header: &[String], rows: &[Vec<Dynamic>]) -> String {
    let cells: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| (v.to_string(), v.is_int() || v.is_float()))
                .collect()
        })
        .collect();
    let columns = header
        .len()
        .max(cells.iter().map(Vec::len).max().unwrap_or(0));
    let width = |i: usize| {
        cells
            .iter()
            .filter_map(|row| row.get(i).map(|(text, _)| text.chars().count()))
            .chain(header.get(i).map(|h| h.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let line = |row: Vec<(String, bool)>| {
        let text = row
            .iter()
            .enumerate()
            .map(|(i, (text, number))| {
                if *number {
                    format!("{text:>w$}", w = widths[i])
                } else {
                    format!("{text:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        format!("  {}", text.trim_end())
    };
    let mut out = vec![line(header.iter().map(|h| (h.clone(), false)).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

#[export_module]
pub mod api {
    use rhai::Array;

    /// Joins the items of a list into one string: `["a", "b"].join(", ")` is `"a, b"`.
    #[rhai_fn(global)]
    pub fn join(list: Array, separator: &str) -> String {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(separator)
    }

    /// A copy of a string without leading and trailing whitespace: `out.stderr.trimmed()`.
    /// (Rhai's own `trim` changes a string variable in place and returns nothing.)
    #[rhai_fn(global)]
    pub fn trimmed(text: &str) -> String {
        text.trim().to_string()
    }

    /// Rows (lists) as a text table under a header, columns aligned (numbers to the right),
    /// ready to `print`: `table(["step", "seconds"], [["backup", 12.5]])`.
    #[rhai_fn(global)]
    pub fn table(header: Array, rows: Array) -> String {
        let header: Vec<String> = header.iter().map(ToString::to_string).collect();
        let rows: Vec<Vec<Dynamic>> = rows
            .iter()
            .map(|row| match row.read_lock::<Array>() {
                Some(cells) => cells.clone(),
                None => vec![row.clone()],
            })
            .collect();
        super::table(&header, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let header = vec!["step".to_string(), "seconds".to_string()];
        let rows = vec![
            vec![Dynamic::from("load volumes"), Dynamic::from(1.5_f64)],
            vec![Dynamic::from("start"), Dynamic::from(12_i64)],
        ];
        assert_eq!(
            table(&header, &rows),
            "  step          seconds\n  load volumes      1.5\n  start              12"
        );
    }

    #[test]
    fn short_rows_leave_their_cells_empty() {
        let header = vec!["a".to_string(), "b".to_string()];
        let rows = vec![vec![Dynamic::from("x")]];
        assert_eq!(table(&header, &rows), "  a  b\n  x");
    }
}
