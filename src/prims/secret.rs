//! The `Secret` type as scripts see it: it prints as `***`, compares in constant time, and
//! can be handed to primitives that deliver it safely.

use rhai::plugin::*;
use rhai::{Engine, INT};

use crate::secrets::{Secret, MASK};

/// Registers the Secret type and its methods.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Secret>("Secret")
        .register_fn("to_string", |_: &mut Secret| MASK.to_string())
        .register_fn("to_debug", |_: &mut Secret| format!("Secret({MASK})"))
        .register_fn("len", |s: &mut Secret| {
            INT::try_from(s.len()).unwrap_or(INT::MAX)
        })
        .register_fn("is_empty", |s: &mut Secret| s.is_empty())
        .register_fn("==", |a: &mut Secret, b: Secret| a.matches(&b))
        .register_fn("!=", |a: &mut Secret, b: Secret| !a.matches(&b));
}

#[export_module]
pub mod api {
    use crate::secrets::Secret;

    /// Wraps text as a Secret: from then on it is masked in every output, and a value equal
    /// to it is masked wherever it appears (a password read from a container's environment
    /// or a file inside it).
    pub fn secret(text: &str) -> Secret {
        Secret::new(text)
    }

    /// A Secret already (e.g. from `docker::inspect`'s `Config.EnvSecrets`) stays as it is.
    #[rhai_fn(name = "secret")]
    pub fn secret_already(value: Secret) -> Secret {
        value
    }
}
