//! Playbooks: finding them, reading their header without running them, binding parameters,
//! the journal that records every run, and the stack lock that keeps mutating runs apart.

pub mod catalog;
pub mod flags;
pub mod header;
pub mod journal;
pub mod lock;
pub mod param;
pub mod params;
pub mod runner;

pub use catalog::{Origin, SourceFile};
pub use header::Header;
pub use param::{Constraint, Param, ParamType};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A playbook found and its header read (not compiled, not run).
#[derive(Debug, Clone)]
pub struct Playbook {
    pub source: SourceFile,
    pub header: Header,
    /// SHA-256 of the file's text; the journal records it and `--resume` compares it.
    pub sha256: String,
}

impl Playbook {
    /// Finds a playbook by name or path and reads its header.
    pub fn load(name_or_path: &str) -> Result<Playbook> {
        Playbook::from_source(catalog::playbook(name_or_path)?)
    }

    /// Reads the header of a source already in hand; a script without one is ad hoc (named
    /// after its file, no parameters).
    pub fn from_source(source: SourceFile) -> Result<Playbook> {
        let parsed = if Header::is_absent(&source.text) {
            Ok(Header::ad_hoc(&source.name))
        } else {
            Header::parse(&source.text)
        };
        let header = parsed.map_err(|e| {
            let file = source.display_name("playbooks");
            Error::Compile(crate::engine::diagnostics::render_at(
                &file,
                &source.text,
                e.line,
                1,
                &e.message,
            ))
        })?;
        let sha256 = hex::encode(Sha256::digest(source.text.as_bytes()));
        Ok(Playbook {
            source,
            header,
            sha256,
        })
    }

    /// The name errors and journals use for the file.
    pub fn file_name(&self) -> String {
        self.source.display_name("playbooks")
    }
}
