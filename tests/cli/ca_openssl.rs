//! CA material made by the `openssl` CLI: root + intermediate with a SEC1 key, PKCS#1 RSA,
//! encrypted PKCS#8 and URI name constraints.

use crate::fixtures::ca::*;
use podcert_core::ca::{Ca, CaError, CaKeyType};
use podcert_core::issue::issue_leaf;
use podcert_core::key_type::KeyType;
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed for this test");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

const EXTENSIONS: &str = "\
[req]
distinguished_name = dn
[dn]

[v3_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_uri_nc]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
nameConstraints = critical, permitted;URI:.example.org
";

/// A root (P-256) and an intermediate (P-384, SEC1 key as `openssl ecparam -genkey` writes it,
/// with its EC PARAMETERS block first) signed by it.
fn root_and_intermediate(dir: &Path) {
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "root.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/O=Test Org/CN=Test Root",
            "-days",
            "30",
            "-out",
            "root.crt",
            "-config",
            "ext.cnf",
            "-extensions",
            "v3_root",
        ],
    );
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-out",
            "int.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "int.key",
            "-subj",
            "/O=Test Org/OU=Signing/CN=Test Intermediate",
            "-out",
            "int.csr",
            "-config",
            "ext.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-set_serial",
            "4242",
            "-days",
            "10",
            "-out",
            "int.crt",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
}

#[test]
fn an_openssl_root_and_sec1_intermediate_load_and_issue_verifiable_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    root_and_intermediate(dir);
    let key_pem = read(dir, "int.key");
    assert!(key_pem.contains("BEGIN EC PARAMETERS"));
    assert!(key_pem.contains("BEGIN EC PRIVATE KEY"));
    let int_der = pem_certs(&read(dir, "int.crt")).remove(0);
    let root_der = pem_certs(&read(dir, "root.crt")).remove(0);

    // Cert file = signing intermediate + root: the root becomes the trust anchor.
    let cert_pem = format!("{}{}", read(dir, "int.crt"), read(dir, "root.crt"));
    let ca = Ca::from_pem(&cert_pem, &key_pem, None, now()).unwrap();
    assert_eq!(ca.key_type(), CaKeyType::EcdsaP384);
    assert_eq!(ca.signing_cert_der(), int_der.as_slice());
    assert_eq!(ca.trust_anchors_der().to_vec(), vec![root_der.clone()]);

    // Cert file = intermediate only, root given as the trust anchors.
    let ca2 = Ca::from_pem(
        &read(dir, "int.crt"),
        &key_pem,
        Some(&read(dir, "root.crt")),
        now(),
    )
    .unwrap();
    assert_eq!(ca2.trust_anchors_der().to_vec(), vec![root_der.clone()]);

    for ca in [&ca, &ca2] {
        for kt in KeyType::ALL {
            let issued = issue_leaf(ca, &subject_key(kt), &profile(), now()).unwrap();
            let chain = pem_certs(&issued.chain_pem);
            assert_eq!(
                chain,
                vec![issued.leaf_der.clone(), int_der.clone()],
                "{kt}"
            );
            let anchors = vec![root_der.clone()];
            webpki_verify(&chain, &anchors, webpki::KeyUsage::server_auth(), now()).unwrap();
            webpki_verify(&chain, &anchors, webpki::KeyUsage::client_auth(), now()).unwrap();
        }
    }

    // openssl itself agrees: leaf -> intermediate -> root.
    let issued = issue_leaf(&ca, &subject_key(KeyType::Rsa3072), &profile(), now()).unwrap();
    std::fs::write(dir.join("leaf.pem"), &issued.chain_pem).unwrap();
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "int.crt",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ],
    );
}

#[test]
fn an_openssl_pkcs1_rsa_ca_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    openssl(dir, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    assert!(read(dir, "rsa.key").contains("BEGIN RSA PRIVATE KEY"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "rsa.key",
            "-subj",
            "/CN=RSA Root",
            "-days",
            "5",
            "-out",
            "rsa.crt",
            "-config",
            "ext.cnf",
            "-extensions",
            "v3_ca",
        ],
    );
    let ca = Ca::from_pem(&read(dir, "rsa.crt"), &read(dir, "rsa.key"), None, now()).unwrap();
    assert_eq!(ca.key_type(), CaKeyType::Rsa3072);
    let issued = issue_leaf(&ca, &subject_key(KeyType::EcdsaP521), &profile(), now()).unwrap();
    let chain = pem_certs(&issued.chain_pem);
    assert_eq!(chain.len(), 1);
    webpki_verify(
        &chain,
        ca.trust_anchors_der(),
        webpki::KeyUsage::server_auth(),
        now(),
    )
    .unwrap();
}

#[test]
fn an_encrypted_pkcs8_key_from_openssl_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    root_and_intermediate(dir);
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "int.key",
            "-out",
            "int.enc.key",
            "-passout",
            "pass:secret",
            "-v2",
            "aes-256-cbc",
        ],
    );
    assert!(read(dir, "int.enc.key").contains("BEGIN ENCRYPTED PRIVATE KEY"));
    let err = Ca::from_pem(
        &read(dir, "int.crt"),
        &read(dir, "int.enc.key"),
        None,
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::EncryptedKey), "{err}");
}

#[test]
fn a_ca_with_uri_name_constraints_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    openssl(dir, &["genpkey", "-algorithm", "ED25519", "-out", "nc.key"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "nc.key",
            "-subj",
            "/CN=Constrained",
            "-days",
            "5",
            "-out",
            "nc.crt",
            "-config",
            "ext.cnf",
            "-extensions",
            "v3_uri_nc",
        ],
    );
    let err = Ca::from_pem(&read(dir, "nc.crt"), &read(dir, "nc.key"), None, now()).unwrap_err();
    assert!(matches!(err, CaError::UriNameConstraints(_)), "{err}");
    assert!(err.to_string().contains("URI name constraints"), "{err}");
}

#[test]
fn a_subject_rcgen_cannot_reproduce_is_refused_not_mis_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    openssl(dir, &["genpkey", "-algorithm", "ED25519", "-out", "dc.key"]);
    // Repeated attributes (DC=example, DC=org) and a multi-valued RDN.
    for (name, subj, extra) in [
        ("dc", "/DC=example/DC=org/CN=Repeated", None),
        ("mv", "/O=Org+OU=Unit/CN=Multi", Some("-multivalue-rdn")),
    ] {
        let out = format!("{name}.crt");
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-key",
            "dc.key",
            "-subj",
            subj,
            "-days",
            "5",
            "-out",
            &out,
            "-config",
            "ext.cnf",
            "-extensions",
            "v3_root",
        ];
        args.extend(extra);
        openssl(dir, &args);
        let err = Ca::from_pem(&read(dir, &out), &read(dir, "dc.key"), None, now()).unwrap_err();
        assert!(
            matches!(err, CaError::UnrepresentableSubject),
            "{name}: {err}"
        );
    }
}
