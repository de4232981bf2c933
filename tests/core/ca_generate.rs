//! `generate_self_signed`: a proper CA for every key type.

use crate::fixtures::ca::*;
use podcert_core::ca::{generate_self_signed, CaKeyType};
use time::Duration;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::*;
use x509_parser::parse_x509_certificate;
use x509_parser::public_key::PublicKey;

#[test]
fn generated_cas_are_proper_cas() {
    for ca_type in CA_TYPES.into_iter().chain(ML_DSA_CA_TYPES) {
        let g = generated(ca_type);
        let der = pem_certs(&g.cert_pem).remove(0);
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        let ctx = format!("{ca_type:?}");

        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw(), "{ctx}");
        let org: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(org, vec!["podcert-signer"], "{ctx}");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(cn.len(), 1, "{ctx}");
        let suffix = cn[0]
            .strip_prefix("podcert-signer CA example.org ")
            .unwrap_or_else(|| panic!("{ctx}: {cn:?}"));
        // The per-CA suffix is the serial's first 32 bits, in hex.
        let raw = cert.tbs_certificate.raw_serial();
        let raw = raw.strip_prefix(&[0u8]).unwrap_or(raw); // DER sign byte
        let serial_hex: String = raw[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(suffix, serial_hex, "{ctx}");

        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca, "{ctx}");
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical, "{ctx}");
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign(), "{ctx}");
        assert!(!ku.value.digital_signature(), "{ctx}");
        assert!(
            cert.extensions().iter().any(|e| matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectKeyIdentifier(_)
            )),
            "{ctx}: no SKI"
        );
        assert!(cert.name_constraints().unwrap().is_none(), "{ctx}");
        assert!(cert.tbs_certificate.raw_serial().len() >= 16, "{ctx}");

        let key = pem::parse(&g.key_pem).unwrap();
        assert_eq!(key.tag(), "PRIVATE KEY", "{ctx}");
        let info = pkcs8::PrivateKeyInfo::try_from(key.contents()).unwrap();
        let expected_alg = match ca_type {
            CaKeyType::EcdsaP256 | CaKeyType::EcdsaP384 => "1.2.840.10045.2.1",
            CaKeyType::Ed25519 => "1.3.101.112",
            CaKeyType::Rsa3072 => "1.2.840.113549.1.1.1",
            CaKeyType::MlDsa44 => "2.16.840.1.101.3.4.3.17",
            CaKeyType::MlDsa65 => "2.16.840.1.101.3.4.3.18",
            CaKeyType::MlDsa87 => "2.16.840.1.101.3.4.3.19",
        };
        assert_eq!(info.algorithm.oid.to_string(), expected_alg, "{ctx}");
        assert_eq!(load(g).key_type(), ca_type, "{ctx}");
    }
}

#[test]
fn rsa_cas_are_3072_bits() {
    let g = generated(CaKeyType::Rsa3072);
    let der = pem_certs(&g.cert_pem).remove(0);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        OID_PKCS1_RSAENCRYPTION
    );
    let PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
        panic!("not RSA")
    };
    assert_eq!(rsa.key_size(), 3072);
}

#[test]
fn validity_is_backdated_a_minute_and_serials_are_random() {
    let t0 = now();
    let a = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::days(2), t0).unwrap();
    let b = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::days(2), t0).unwrap();
    let da = pem_certs(&a.cert_pem).remove(0);
    let db = pem_certs(&b.cert_pem).remove(0);
    let (_, ca) = parse_x509_certificate(&da).unwrap();
    let (_, cb) = parse_x509_certificate(&db).unwrap();
    let t0s = t0.replace_nanosecond(0).unwrap();
    assert_eq!(
        ca.validity().not_before.to_datetime(),
        t0s - Duration::seconds(60)
    );
    assert_eq!(
        ca.validity().not_after.to_datetime(),
        t0s + Duration::days(2)
    );
    assert_ne!(
        ca.tbs_certificate.raw_serial(),
        cb.tbs_certificate.raw_serial()
    );
    let cn: Vec<_> = ca
        .subject()
        .iter_common_name()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(cn.len(), 1);
    assert!(cn[0].starts_with("podcert-signer CA "), "{cn:?}");
    // Two CAs are told apart by name, not only by key (both are published during a rotation).
    assert_ne!(ca.subject().as_raw(), cb.subject().as_raw());
}
