//! Writing a generated CA to a directory (files mode).

use super::{CaError, GeneratedCa};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates `dir` if needed and writes `ca.crt` (0644) and `ca.key` (0600 from its creation, so
/// the key is never readable by others even briefly). Refuses to overwrite either file.
pub fn write_ca_dir(dir: &Path, ca: &GeneratedCa) -> Result<(PathBuf, PathBuf), CaError> {
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    // Check both first so a refusal leaves nothing half written.
    for p in [&cert_path, &key_path] {
        if p.symlink_metadata().is_ok() {
            return Err(CaError::Exists(p.clone()));
        }
    }
    write_new(&key_path, ca.key_pem.as_bytes(), 0o600)?;
    write_new(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// `create_new` makes the open fail rather than follow or truncate anything already there.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let io_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CaError::Exists(path.to_path_buf())
        } else {
            CaError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}
