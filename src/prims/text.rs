//! Small text helpers Rhai's standard library lacks.

use rhai::plugin::*;

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
}
