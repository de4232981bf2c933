//! `write_ca_dir`: key file 0600, certificate 0644, never overwrites.

use crate::fixtures::ca::*;
use podcert_core::ca::{Ca, CaError, CaKeyType};
use podcert_runtime::ca_files::write_ca_dir;
use std::os::unix::fs::PermissionsExt;

#[test]
fn writes_a_loadable_ca_with_a_private_key_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/ca");
    let g = generated(CaKeyType::EcdsaP256);
    let (cert, key) = write_ca_dir(&dir, g).unwrap();
    assert_eq!(cert, dir.join("ca.crt"));
    assert_eq!(key, dir.join("ca.key"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    // 0644 minus whatever the umask removes, never more than that.
    assert_eq!(mode(&cert) & !0o644, 0);
    assert_eq!(mode(&cert) & 0o600, 0o600);
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert_eq!(cert_pem, g.cert_pem);
    assert_eq!(key_pem, g.key_pem);
    Ca::from_pem(&cert_pem, &key_pem, None, now()).unwrap();
}

#[test]
fn refuses_to_overwrite_either_file() {
    let tmp = tempfile::tempdir().unwrap();
    let g = generated(CaKeyType::EcdsaP256);
    let other = generated(CaKeyType::Ed25519);
    write_ca_dir(tmp.path(), g).unwrap();
    let err = write_ca_dir(tmp.path(), other).unwrap_err();
    assert!(matches!(err, CaError::Exists(_)), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ca.key")).unwrap(),
        g.key_pem
    );

    // Only the key present: still refused, and no certificate is written.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ca.key"), "old").unwrap();
    let err = write_ca_dir(tmp.path(), g).unwrap_err();
    assert!(matches!(err, CaError::Exists(p) if p.ends_with("ca.key")));
    assert!(!tmp.path().join("ca.crt").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ca.key")).unwrap(),
        "old"
    );
}
