//! CA files on disk (files mode): writing a generated CA to a directory, and reading CA
//! material and command input through a bounded reader that also checks a key file's mode.
//! I/O only; the decision path never calls it.

use podcert_core::ca::{CaError, GeneratedCa};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest CA file read (certificate, key, trust anchors): 1 MiB. A CA bundle of a few
/// hundred certificates fits; anything larger is a wrong path, not CA material.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// Largest `sign` / `inspect` input read (stdin or a file): 4 MiB.
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Set once by `run`/`sign` from `--allow-insecure-key-permissions`. A process-wide switch so
/// that the CA sources read keys through [`read_ca_file`] without the flag threaded through.
static ALLOW_INSECURE_KEY_PERMISSIONS: AtomicBool = AtomicBool::new(false);

/// Lets [`read_ca_file`] load a key file that group or others may read (with a warning left
/// to the caller), as `--allow-insecure-key-permissions` asks.
pub fn allow_insecure_key_permissions(allow: bool) {
    ALLOW_INSECURE_KEY_PERMISSIONS.store(allow, Ordering::Relaxed);
}

fn human_size(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / 1024 / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn too_large(cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "larger than the {} limit; refusing to read it",
            human_size(cap)
        ),
    )
}

/// Reads at most `cap` bytes from `reader`; more is an error, found after reading `cap + 1`
/// bytes, never the whole input.
pub fn read_bounded(reader: impl Read, cap: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(data)
}

/// Reads the file at `path` (symlinks followed), at most `cap` bytes. A regular file larger
/// than that is refused from its size, unread.
pub fn read_file_bounded(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > cap {
        return Err(too_large(cap));
    }
    read_bounded(file, cap)
}

/// Reads a CA file as UTF-8 PEM, at most [`MAX_CA_FILE_BYTES`]. With `is_key`, the file
/// (the symlink's target: a mounted Secret's files are symlinks) must not be readable or
/// writable by others, nor writable by its group; group read is allowed only when the group
/// is one of this process's own groups (a Kubernetes Secret volume with `fsGroup` and
/// `defaultMode: 0440`, the only way a non-root container reads a root-owned file). Else the
/// read is refused unless [`allow_insecure_key_permissions`] was set, as ssh refuses a key
/// file others can read.
pub fn read_ca_file(path: &Path, is_key: bool) -> io::Result<String> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if is_key && !ALLOW_INSECURE_KEY_PERMISSIONS.load(Ordering::Relaxed) {
        check_key_mode(meta.mode(), meta.gid())?;
    }
    if meta.is_file() && meta.len() > MAX_CA_FILE_BYTES {
        return Err(too_large(MAX_CA_FILE_BYTES));
    }
    let data = read_bounded(file, MAX_CA_FILE_BYTES)?;
    String::from_utf8(data).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 PEM"))
}

fn check_key_mode(mode: u32, gid: u32) -> io::Result<()> {
    let mode = mode & 0o777;
    let others = mode & 0o007 != 0;
    let group_write = mode & 0o020 != 0;
    let foreign_group_read = mode & 0o050 != 0 && !own_groups().contains(&gid);
    if !(others || group_write || foreign_group_read) {
        return Ok(());
    }
    let who = if others {
        "others"
    } else if group_write {
        "its group (write)"
    } else {
        "a group this process is not in"
    };
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the CA key file has mode {mode:04o}, which lets {who} access it; make it 0600 \
             (or 0440 with the pod's fsGroup), or pass --allow-insecure-key-permissions"
        ),
    ))
}

/// The effective and supplementary group IDs of this process, from /proc (std has no
/// getegid, and this needs no unsafe). Empty where /proc is absent: group read is refused.
fn own_groups() -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Gid:") {
            // real, effective, saved, filesystem: the effective one decides access.
            groups.extend(
                rest.split_whitespace()
                    .nth(1)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    groups
}

/// A warning for an existing CA directory that others, or its group, may list or write.
pub fn dir_access_warning(dir: &Path) -> Option<String> {
    let meta = std::fs::metadata(dir).ok()?;
    let mode = meta.mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "warning: {} has mode {mode:04o}: group or others can list it (or write to it); \
             consider chmod 700",
            dir.display()
        )
    })
}

/// Creates `dir` if needed (0700, and any missing parents too, whatever the umask allows at
/// most) and writes `ca.crt` (0644) and `ca.key` (0600 from its creation, so the key is never
/// readable by others even briefly). Refuses to overwrite either file. An existing directory is
/// left as it is (see [`dir_access_warning`]).
pub fn write_ca_dir(dir: &Path, ca: &GeneratedCa) -> Result<(PathBuf, PathBuf), CaError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Io {
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

/// Writes only `dir/ca.crt` (the key stays in a PKCS#11 token): created 0700 like
/// [`write_ca_dir`], an existing ca.crt kept.
pub fn write_ca_cert(dir: &Path, cert_pem: &str) -> Result<PathBuf, CaError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let cert_path = dir.join("ca.crt");
    write_new(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok(cert_path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_modes() {
        let own = own_groups().first().copied().unwrap_or(u32::MAX);
        for ok in [0o600, 0o400, 0o700] {
            assert!(check_key_mode(ok, 12345).is_ok(), "{ok:o}");
        }
        for bad in [0o644, 0o604, 0o666, 0o620, 0o601] {
            let e = check_key_mode(bad, own).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:04o}")), "{e}");
        }
        if own != u32::MAX {
            assert!(check_key_mode(0o440, own).is_ok());
            assert!(check_key_mode(0o640, own).is_ok());
        }
        assert!(check_key_mode(0o440, u32::MAX - 1).is_err());
    }

    #[test]
    fn bounded_reads_stop_at_the_cap() {
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), b"abc");
        let e = read_bounded(io::repeat(0), 1024 * 1024).unwrap_err();
        assert!(e.to_string().contains("1 MiB limit"), "{e}");
    }
}
