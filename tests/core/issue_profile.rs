//! Every subject key type x every CA key type: the leaf profile, times, SVID parsing and
//! rustls-webpki verification for server and client use.

use crate::fixtures::ca::*;
use podcert_core::ca::CaKeyType;
use podcert_core::issue::{issue_leaf, IssuedLeaf};
use podcert_core::key_type::KeyType;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::*;
use x509_parser::parse_x509_certificate;
use x509_parser::x509::X509Version;

fn expected_sig_alg(ca: CaKeyType) -> Oid<'static> {
    match ca {
        CaKeyType::EcdsaP256 => OID_SIG_ECDSA_WITH_SHA256,
        CaKeyType::EcdsaP384 => OID_SIG_ECDSA_WITH_SHA384,
        CaKeyType::Ed25519 => OID_SIG_ED25519,
        CaKeyType::Rsa3072 => OID_PKCS1_SHA256WITHRSA,
        CaKeyType::MlDsa44 | CaKeyType::MlDsa65 | CaKeyType::MlDsa87 => {
            unreachable!("ML-DSA CAs are checked in ml_dsa.rs")
        }
    }
}

fn check_leaf(ca_type: CaKeyType, kt: KeyType, issued: &IssuedLeaf, now: OffsetDateTime) {
    let ctx = format!("CA {ca_type:?}, subject {kt}");
    let g = generated(ca_type);
    let ca_der = pem_certs(&g.cert_pem).remove(0);
    let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
    let (rest, leaf) = parse_x509_certificate(&issued.leaf_der).unwrap();
    assert!(rest.is_empty(), "{ctx}");

    // The chain of a self-signed CA is the leaf alone.
    assert_eq!(
        pem_certs(&issued.chain_pem),
        vec![issued.leaf_der.clone()],
        "{ctx}"
    );

    // Subject key verbatim; empty subject; issuer is the CA.
    let subject = subject_key(kt);
    assert_eq!(leaf.public_key().raw, subject.spki_der.as_slice(), "{ctx}");
    assert!(
        leaf.subject().as_raw().len() <= 2,
        "{ctx}: subject not empty"
    );
    assert_eq!(leaf.subject().iter().count(), 0, "{ctx}");
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw(), "{ctx}");
    assert_eq!(
        leaf.signature_algorithm.algorithm,
        expected_sig_alg(ca_type),
        "{ctx}"
    );
    assert_eq!(leaf.version(), X509Version::V3, "{ctx}");

    // Serial: 128 random bits, positive, as reported.
    let serial = leaf.tbs_certificate.raw_serial();
    let magnitude: &[u8] = if serial[0] == 0 { &serial[1..] } else { serial };
    assert_eq!(magnitude.len(), 16, "{ctx}");
    assert_eq!(
        issued.serial_hex,
        magnitude
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "{ctx}"
    );

    // Times: whole seconds, as computed, within the contract's bounds.
    let nb = leaf.validity().not_before.to_datetime();
    let na = leaf.validity().not_after.to_datetime();
    assert_eq!(nb, issued.not_before, "{ctx}");
    assert_eq!(na, issued.not_after, "{ctx}");
    for t in [issued.not_before, issued.not_after, issued.begin_refresh_at] {
        assert_eq!(t.nanosecond(), 0, "{ctx}: not whole seconds");
    }
    let now_s = now.replace_nanosecond(0).unwrap();
    assert_eq!(issued.not_before, now_s - Duration::seconds(60), "{ctx}");
    assert_eq!(
        issued.not_after - issued.not_before,
        Duration::hours(24),
        "{ctx}"
    );
    assert!(
        issued.begin_refresh_at >= issued.not_before + Duration::minutes(10)
            && issued.begin_refresh_at <= issued.not_after - Duration::minutes(10),
        "{ctx}: refresh outside the window"
    );
    // Half the lifetime +- 5 % jitter.
    let middle = issued.not_before + Duration::hours(12);
    assert!(
        (issued.begin_refresh_at - middle).abs() <= Duration::seconds(4320),
        "{ctx}"
    );

    // Extensions: exactly these, with these critical flags.
    let mut seen = Vec::new();
    for ext in leaf.extensions() {
        seen.push(ext.oid.to_id_string());
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                assert!(ext.critical, "{ctx}: SAN must be critical");
                let uris: Vec<_> = san
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(*u),
                        _ => None,
                    })
                    .collect();
                assert_eq!(uris, vec![SPIFFE_ID], "{ctx}");
                assert_eq!(san.general_names.len(), 1, "{ctx}");
            }
            ParsedExtension::BasicConstraints(bc) => {
                assert!(!bc.ca, "{ctx}");
                assert!(bc.path_len_constraint.is_none(), "{ctx}");
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical, "{ctx}: KU must be critical");
                assert!(ku.digital_signature(), "{ctx}");
                assert_eq!(ku.key_encipherment(), kt.is_rsa(), "{ctx}");
                let expected_bits = if kt.is_rsa() { 0b101 } else { 0b1 };
                assert_eq!(ku.flags, expected_bits, "{ctx}: unexpected key usages");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(!ext.critical, "{ctx}");
                assert!(eku.server_auth && eku.client_auth, "{ctx}");
                assert!(
                    !eku.any && !eku.code_signing && !eku.email_protection,
                    "{ctx}"
                );
                assert!(eku.other.is_empty(), "{ctx}");
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => {
                assert!(!ext.critical, "{ctx}");
                let digest = Sha256::digest(&subject.spki_der);
                assert_eq!(ski.0, &digest[..20], "{ctx}: SKI not from the subject key");
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                assert!(!ext.critical, "{ctx}");
                let ca_ski = ca_cert
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(
                    aki.key_identifier.as_ref().unwrap().0,
                    ca_ski.as_slice(),
                    "{ctx}"
                );
            }
            other => panic!("{ctx}: unexpected extension {other:?}"),
        }
    }
    seen.sort();
    let mut expected: Vec<String> = [
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .iter()
    .map(|o| o.to_id_string())
    .collect();
    expected.sort();
    assert_eq!(seen, expected, "{ctx}");

    // An independent SPIFFE library accepts it as an X509-SVID with the right ID (it cannot
    // read ML-DSA private keys; ml_dsa.rs checks those leaves with RustCrypto's ml-dsa).
    if !kt.is_ml_dsa() {
        let svid =
            spiffe::X509Svid::parse_from_der(&issued.leaf_der, &private_key_der(kt)).unwrap();
        assert_eq!(svid.spiffe_id().to_string(), SPIFFE_ID, "{ctx}");
    }

    // rustls-webpki: valid for both server and client authentication.
    let chain = pem_certs(&issued.chain_pem);
    let anchors = vec![ca_der];
    let at = now + Duration::minutes(5);
    webpki_verify(&chain, &anchors, webpki::KeyUsage::server_auth(), at)
        .unwrap_or_else(|e| panic!("{ctx}: server auth: {e:?}"));
    webpki_verify(&chain, &anchors, webpki::KeyUsage::client_auth(), at)
        .unwrap_or_else(|e| panic!("{ctx}: client auth: {e:?}"));
}

fn matrix_for(ca_type: CaKeyType) {
    let ca = load(generated(ca_type));
    assert_eq!(ca.key_type(), ca_type);
    for kt in KeyType::ALL {
        let now = now();
        let issued = issue_leaf(&ca, &subject_key(kt), &profile(), now).unwrap();
        check_leaf(ca_type, kt, &issued, now);
    }
}

#[test]
fn p256_ca_issues_valid_svids_for_every_subject_key_type() {
    matrix_for(CaKeyType::EcdsaP256);
}

#[test]
fn p384_ca_issues_valid_svids_for_every_subject_key_type() {
    matrix_for(CaKeyType::EcdsaP384);
}

#[test]
fn ed25519_ca_issues_valid_svids_for_every_subject_key_type() {
    matrix_for(CaKeyType::Ed25519);
}

#[test]
fn rsa_ca_issues_valid_svids_for_every_subject_key_type() {
    matrix_for(CaKeyType::Rsa3072);
}

#[test]
fn dns_names_follow_the_single_spiffe_uri() {
    let ca = load(generated(CaKeyType::EcdsaP256));
    let mut p = profile();
    p.dns_names = vec!["web.team-a.svc".into(), "web.example.org".into()];
    let issued = issue_leaf(&ca, &subject_key(KeyType::EcdsaP256), &p, now()).unwrap();
    let (_, leaf) = parse_x509_certificate(&issued.leaf_der).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical);
    assert_eq!(
        san.value.general_names,
        vec![
            GeneralName::URI(SPIFFE_ID),
            GeneralName::DNSName("web.team-a.svc"),
            GeneralName::DNSName("web.example.org"),
        ]
    );
}

#[test]
fn serials_differ_between_leaves() {
    let ca = load(generated(CaKeyType::EcdsaP256));
    let key = subject_key(KeyType::Ed25519);
    let a = issue_leaf(&ca, &key, &profile(), now()).unwrap();
    let b = issue_leaf(&ca, &key, &profile(), now()).unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
}

#[test]
fn subject_key_type_must_match_its_spki() {
    let ca = load(generated(CaKeyType::EcdsaP256));
    let mut key = subject_key(KeyType::EcdsaP384);
    key.key_type = KeyType::EcdsaP256;
    assert!(issue_leaf(&ca, &key, &profile(), now()).is_err());
    let garbage = podcert_core::proof::SubjectKey {
        key_type: KeyType::Ed25519,
        spki_der: vec![0x30, 0x03, 0x02, 0x01, 0x00],
    };
    assert!(issue_leaf(&ca, &garbage, &profile(), now()).is_err());
}
