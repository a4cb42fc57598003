//! Environment variables, with secrets arriving as `Secret`.

use rhai::plugin::*;

#[export_module]
pub mod api {
    use crate::secrets::Secret;

    /// The value of an environment variable, or `()` when it is not set.
    pub fn get(name: &str) -> Dynamic {
        std::env::var(name)
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// The value of an environment variable, or `default` when it is not set.
    pub fn get_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    }

    /// True when the environment variable is set.
    pub fn has(name: &str) -> bool {
        std::env::var_os(name).is_some()
    }

    /// An environment variable as a Secret (masked everywhere); an error when it is not set.
    #[rhai_fn(return_raw)]
    pub fn secret(name: &str) -> Result<Secret, Box<EvalAltResult>> {
        std::env::var(name)
            .map(Secret::new)
            .map_err(|_| super::super::error(format!("environment variable {name} is not set")))
    }
}
