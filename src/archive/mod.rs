//! The data plane every backup rides on: one streaming pass from data (a directory or any byte
//! stream) to a tar → zstd/gzip/none → age file whose SHA-256 is computed on the way, and the
//! way back with the checksum verified and the extraction kept inside its target.
//!
//! Pure Rust, no engine: the primitives in `prims::archive`, `prims::crypto` and
//! `prims::manifest` are thin wrappers, and other modules (Docker volumes, database dumps)
//! call [`seal`] and [`unseal`] directly with their own readers.
//!
//! The files are standard: `age -d FILE | zstd -d | tar -x` opens what [`seal_dir`] writes,
//! and what `tar -c | zstd | age -r KEY` writes opens here.

mod checksum;
mod entry_rules;
mod error;
mod extract;
mod keys;
mod manifest;
mod options;
mod seal;
mod set_key;
mod tar_writer;
mod unpack;
mod unseal;

pub use checksum::{sha256_file, HashingWriter};
pub use entry_rules::{EntryRules, SpecialFiles};
pub use error::{Error, Problem};
pub use extract::{check_stream, extract, list, EntryInfo, ExtractOptions, Extracted};
pub use keys::{generate_identity, parse_recipient, read_identity_file, GeneratedIdentity};
pub use manifest::{Artifact, Manifest, AUTHENTICATED_FORMAT, MANIFEST_FORMAT};
pub use options::{
    Compression, Encryption, Key, SealOptions, Stop, DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR,
    MIN_WORK_FACTOR,
};
pub use seal::{seal, seal_dir, Sealed};
pub use set_key::{SetKey, SET_KEY_FILE};
pub use unpack::unpack;
pub use unseal::{unseal, verify, UnsealOptions, Unsealed, Verified};
