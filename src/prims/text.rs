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
}
