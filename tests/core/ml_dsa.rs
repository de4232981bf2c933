//! ML-DSA (FIPS 204, Kubernetes 1.38's `MLDSA44`/`MLDSA65`/`MLDSA87`): ML-DSA CAs, checked
//! with RustCrypto's ml-dsa (the signer signs with aws-lc-rs), and the policy's key types.

use crate::fixtures::ca::*;
use crate::fixtures::keys::ml_dsa_verify;
use crate::fixtures::vectors::object;
use podcert_core::ca::CaKeyType;
use podcert_core::issue::issue_leaf;
use podcert_core::key_type::KeyType;
use podcert_core::pipeline;
use podcert_core::policy::SignerConfig;
use podcert_core::request::{wire, ConditionType};
use podcert_core::spiffe_id::TrustDomain;
use x509_parser::extensions::ParsedExtension;
use x509_parser::parse_x509_certificate;

fn oid_of(ca: CaKeyType) -> &'static str {
    match ca {
        CaKeyType::MlDsa44 => "2.16.840.1.101.3.4.3.17",
        CaKeyType::MlDsa65 => "2.16.840.1.101.3.4.3.18",
        _ => "2.16.840.1.101.3.4.3.19",
    }
}

#[test]
fn ml_dsa_cas_sign_what_an_independent_implementation_verifies() {
    for ca_type in ML_DSA_CA_TYPES {
        let g = generated(ca_type);
        let ca = load(g);
        assert_eq!(ca.key_type(), ca_type);
        let ca_der = pem_certs(&g.cert_pem).remove(0);
        let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
        let ca_spki = ca_cert.public_key().raw;
        // The root's self-signature, then every leaf's signature, by RustCrypto.
        assert_eq!(
            ca_cert.signature_algorithm.algorithm.to_id_string(),
            oid_of(ca_type)
        );
        assert!(ca_cert.signature_algorithm.parameters.is_none());
        assert!(ml_dsa_verify(
            ca_spki,
            ca_cert.tbs_certificate.as_ref(),
            &ca_cert.signature_value.data
        ));
        for kt in KeyType::ALL {
            let ctx = format!("CA {ca_type:?}, subject {kt}");
            let issued = issue_leaf(&ca, &subject_key(kt), &profile(), now()).unwrap();
            let (_, leaf) = parse_x509_certificate(&issued.leaf_der).unwrap();
            assert_eq!(
                leaf.signature_algorithm.algorithm.to_id_string(),
                oid_of(ca_type),
                "{ctx}"
            );
            // RFC 9881: the AlgorithmIdentifier has no parameters, in both places.
            assert!(leaf.signature_algorithm.parameters.is_none(), "{ctx}");
            assert!(leaf.tbs_certificate.signature.parameters.is_none(), "{ctx}");
            let tbs = leaf.tbs_certificate.as_ref();
            let sig = &leaf.signature_value.data;
            assert!(ml_dsa_verify(ca_spki, tbs, sig), "{ctx}: signature refused");
            let mut tampered = tbs.to_vec();
            let at = tampered.len() / 2;
            tampered[at] ^= 1;
            assert!(!ml_dsa_verify(ca_spki, &tampered, sig), "{ctx}");
            assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw(), "{ctx}");
            assert_eq!(
                leaf.public_key().raw,
                subject_key(kt).spki_der.as_slice(),
                "{ctx}"
            );
        }
    }
}

#[test]
fn ml_dsa_leaves_carry_the_key_verbatim_and_only_digital_signature() {
    // Under a classical CA (the common case: ML-DSA subject keys, an ECDSA root).
    let ca = load(generated(CaKeyType::EcdsaP256));
    for kt in [KeyType::MlDsa44, KeyType::MlDsa65, KeyType::MlDsa87] {
        let subject = subject_key(kt);
        let issued = issue_leaf(&ca, &subject, &profile(), now()).unwrap();
        let (_, leaf) = parse_x509_certificate(&issued.leaf_der).unwrap();
        assert_eq!(leaf.public_key().raw, subject.spki_der.as_slice(), "{kt}");
        assert!(leaf.public_key().algorithm.parameters.is_none(), "{kt}");
        let ku = leaf
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => Some(ku.flags),
                _ => None,
            })
            .unwrap();
        // ML-DSA signs; it cannot encipher or agree keys.
        assert_eq!(ku, 0b1, "{kt}");
    }
}

#[test]
fn a_signer_whose_key_types_exclude_ml_dsa_denies_it() {
    let now = now();
    let ca = load(generated(CaKeyType::EcdsaP256));
    let mut cfg = SignerConfig::new(
        "acceptance.podcert.test/spiffe",
        TrustDomain::new("cluster.local").unwrap(),
    )
    .unwrap();
    let obj = wire::from_value(object("MLDSA65-stub-v1")).unwrap();
    // Allowed by default (every type the API has).
    let out = pipeline::process(&obj.request, &cfg, &ca, now).unwrap();
    assert_eq!(out.status.condition, ConditionType::Issued);
    // Not when keyTypes leaves it out.
    cfg.allowed_key_types = [KeyType::EcdsaP256, KeyType::Ed25519].into_iter().collect();
    let out = pipeline::process(&obj.request, &cfg, &ca, now).unwrap();
    assert_eq!(out.status.condition, ConditionType::Denied);
    assert_eq!(out.status.reason, "UnsupportedKeyType");
    assert!(
        out.status
            .message
            .contains("does not issue for MLDSA65 keys"),
        "{}",
        out.status.message
    );
    assert!(out.status.certificate_chain.is_none());
    // And the other way round: an ML-DSA-only signer refuses a classical key.
    cfg.allowed_key_types = [KeyType::MlDsa65].into_iter().collect();
    let out = pipeline::process(&obj.request, &cfg, &ca, now).unwrap();
    assert_eq!(out.status.condition, ConditionType::Issued);
    let ec = wire::from_value(object("ECDSAP256-stub-v1")).unwrap();
    let out = pipeline::process(&ec.request, &cfg, &ca, now).unwrap();
    assert_eq!(out.status.reason, "UnsupportedKeyType");
}
