//! Builds the Rhai engine every playbook, `check`, `doc` and the REPL run on: the sandbox
//! limits, the stdlib module resolver, and the registration of every primitive.

pub mod calls;
pub mod diagnostics;
pub mod reference;
pub mod resolver;

use std::sync::Arc;

use rhai::{Dynamic, Engine};

use crate::prims;
use crate::run::Run;
use crate::secrets;

/// How often (in operations) the engine checks for Ctrl-C and the timeout.
const STOP_CHECK_INTERVAL: u64 = 512;

/// The engine for one run.
pub fn build(run: &Arc<Run>, print_to_stderr: bool) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_strict_variables(true)
        .set_max_call_levels(64)
        .set_max_expr_depths(128, 64)
        .set_max_string_size(256 << 20)
        .set_max_array_size(1_000_000)
        .set_max_map_size(100_000)
        .set_max_modules(256);
    engine.disable_symbol("eval");
    engine.set_module_resolver(resolver::StdlibResolver::new(run.clone()));
    engine.set_default_tag(Dynamic::from(run.clone()));

    let watched = run.clone();
    engine.on_progress(move |ops| {
        if ops % STOP_CHECK_INTERVAL == 0 {
            watched.stop_reason().map(Dynamic::from)
        } else {
            None
        }
    });
    engine.on_print(move |text| {
        let text = secrets::redact(text);
        if print_to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    });
    engine.on_debug(|text, source, pos| {
        let at = source
            .map(|s| format!("{s}:{pos}"))
            .unwrap_or_else(|| pos.to_string());
        eprintln!("debug {at}: {}", secrets::redact(text));
    });
    prims::register(&mut engine);
    engine
}
