//! A sealed archive opened and extracted in one pass: [`unseal`] feeding [`extract`], the
//! checksum verified to the end. Kept apart so extraction knows nothing of sealing and the
//! unsealing side (which lists entries to verify) does not loop back into it.

use std::path::Path;

use super::{extract, unseal, Error, ExtractOptions, Extracted, UnsealOptions};

/// Opens a sealed archive, extracts it into `dir`, and verifies its checksum to the end.
pub fn unpack(
    path: &Path,
    dir: &Path,
    unseal_options: &UnsealOptions,
    options: &ExtractOptions,
) -> Result<Extracted, Error> {
    let mut reader = unseal(path, unseal_options)?;
    let options = ExtractOptions {
        source: Some(path.to_path_buf()),
        artifact: options
            .artifact
            .clone()
            .or_else(|| unseal_options.artifact.clone()),
        ..options.clone()
    };
    let mut done = extract(&mut reader, dir, &options)?;
    done.sha256 = Some(reader.finish()?);
    Ok(done)
}
