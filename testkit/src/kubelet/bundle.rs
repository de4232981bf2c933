//! Writes credential bundles the way the kubelet projects them: one PKCS#8 `PRIVATE KEY` block
//! then the chain, replaced atomically so a reader never sees half a bundle.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file name inside `<dir>/<namespace>/<pod>/`.
pub const BUNDLE_FILE: &str = "credentialbundle.pem";

#[derive(Debug, thiserror::Error)]
#[error("writing the credential bundle {path} failed: {source}")]
pub struct BundleError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `<dir>/<namespace>/<pod>/credentialbundle.pem`.
pub fn bundle_path(dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    dir.join(namespace).join(pod).join(BUNDLE_FILE)
}

/// Writes `key_pem` + `chain_pem` to the pod's bundle path: a 0600 temporary file in the same
/// directory, synced, then renamed over the old bundle.
pub fn write_bundle(
    dir: &Path,
    namespace: &str,
    pod: &str,
    key_pem: &str,
    chain_pem: &str,
) -> Result<PathBuf, BundleError> {
    let path = bundle_path(dir, namespace, pod);
    let wrap = |source| BundleError {
        path: path.clone(),
        source,
    };
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(wrap)?;
    let tmp = parent.join(format!(".{BUNDLE_FILE}.{}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key_pem.as_bytes())?;
        f.write_all(chain_pem.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(wrap)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bundle_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_bundle(dir.path(), "ns", "pod", "KEY\n", "CHAIN1\n").unwrap();
        assert_eq!(p, dir.path().join("ns/pod/credentialbundle.pem"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_bundle(dir.path(), "ns", "pod", "KEY2\n", "CHAIN2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "KEY2\nCHAIN2\n");
        let leftovers = std::fs::read_dir(p.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }
}
