//! runbook: operational playbooks for Docker stacks, scripted in Rhai.
//!
//! Data flows one way: CLI → playbook loader → engine → primitives → the world.
//! The journal observes steps; it never drives them.

pub mod archive;
pub mod atomic_file;
pub mod cli;
pub mod docker;
pub mod engine;
pub mod error;
pub mod locations;
pub mod migrations;
pub mod playbook;
pub mod prims;
pub mod repl;
pub mod retention;
pub mod run;
pub mod sandbox;
pub mod secrets;
pub mod value;
pub mod vault;

pub use error::{Error, ExitCode};
