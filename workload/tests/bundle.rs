//! Parsing the projected files: exactly the kubelet's credential bundle format is accepted.

mod common;

use common::*;
use podcert_core::ca::CaKeyType;
use podcert_workload::bundle::{parse_credential_bundle, parse_trust_bundle, BundleError};
use podcert_workload::identity::IdentityError;
use podcert_workload::tls::provider;
use rcgen::{CertificateParams, KeyPair, SanType};

const ID: &str = "spiffe://example.org/ns/a/sa/b";

#[test]
fn accepts_a_signed_bundle_of_each_key_type() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    for kind in [
        SubjectKind::EcdsaP256,
        SubjectKind::Ed25519,
        SubjectKind::Rsa3072,
    ] {
        let issued = ca.issue(ID, kind);
        let cred = parse_credential_bundle(issued.bundle_pem.as_bytes(), &provider()).unwrap();
        assert_eq!(cred.spiffe_id, id(ID), "{kind:?}");
        assert_eq!(cred.serial_hex, issued.serial_hex, "{kind:?}");
        assert_eq!(cred.certified_key.cert.len(), 1, "{kind:?}");
    }
}

#[test]
fn a_bundle_cut_anywhere_inside_a_block_is_refused() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let full = ca.issue(ID, SubjectKind::EcdsaP256).bundle_pem;
    let last_end = full.trim_end().len();
    for cut in (1..last_end).step_by(5) {
        let result = parse_credential_bundle(&full.as_bytes()[..cut], &provider());
        assert!(result.is_err(), "accepted a bundle cut at byte {cut}");
    }
}

#[test]
fn refuses_bundles_not_in_the_kubelet_format() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let issued = ca.issue(ID, SubjectKind::EcdsaP256);
    let other_key = ca.issue(ID, SubjectKind::EcdsaP256).key_pem;
    let cases = [
        (
            String::new(),
            "must start with a PRIVATE KEY block, found nothing",
        ),
        (
            issued.chain_pem.clone(),
            "must start with a PRIVATE KEY block, found CERTIFICATE",
        ),
        (
            format!("{}{}{}", issued.key_pem, other_key, issued.chain_pem),
            "second private key block (block 1)",
        ),
        (
            format!(
                "{}{}",
                issued.bundle_pem, "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
            ),
            "block 2 is X509 CRL, expected CERTIFICATE",
        ),
        (
            format!("{}garbage\n", issued.bundle_pem),
            "outside any block",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_credential_bundle(text.as_bytes(), &provider()).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err} (wanted {expected})"
        );
    }
}

/// A self-signed leaf with the given SANs, as a bundle.
fn bundle_with_sans(sans: Vec<SanType>) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", key.serialize_pem(), cert.pem())
}

#[test]
fn the_leaf_must_carry_exactly_one_spiffe_uri_san() {
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    let dns = SanType::DnsName("web.example.org".try_into().unwrap());
    let cases = [
        (vec![dns.clone()], IdentityError::UriSanCount(0)),
        (
            vec![uri(ID), uri("spiffe://example.org/x")],
            IdentityError::UriSanCount(2),
        ),
        (
            vec![uri("https://example.org/x"), dns],
            IdentityError::NotSpiffe("https://example.org/x".into()),
        ),
    ];
    for (sans, expected) in cases {
        let err =
            parse_credential_bundle(bundle_with_sans(sans).as_bytes(), &provider()).unwrap_err();
        match err {
            BundleError::Identity(got) => assert_eq!(got, expected),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn trust_bundle_needs_certificates_only() {
    let a = TestCa::new(CaKeyType::EcdsaP256);
    let b = TestCa::new(CaKeyType::Ed25519);
    let both = parse_trust_bundle(format!("{}{}", a.root_pem, b.root_pem).as_bytes()).unwrap();
    assert_eq!(both.anchors.len(), 2);
    assert!(matches!(
        parse_trust_bundle(b"").unwrap_err(),
        BundleError::NoCertificate
    ));
    let issued = a.issue(ID, SubjectKind::EcdsaP256);
    let err = parse_trust_bundle(issued.bundle_pem.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("block 0 is PRIVATE KEY"), "{err}");
}
