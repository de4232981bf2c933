//! Loading CA material: accessors, trust anchors and every refusal.

use crate::fixtures::ca::*;
use podcert_core::ca::{generate_self_signed, Ca, CaError, CaKeyType};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now() - Duration::hours(1);
    p.not_after = now() + Duration::days(10);
    p
}

fn self_signed(p: &CertificateParams) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn accessors_describe_the_loaded_ca() {
    for ca_type in CA_TYPES {
        let g = generated(ca_type);
        let ca = load(g);
        let der = pem_certs(&g.cert_pem).remove(0);
        assert_eq!(ca.key_type(), ca_type);
        assert_eq!(ca.signing_cert_der(), der.as_slice());
        assert_eq!(ca.trust_anchors_der(), std::slice::from_ref(&der));
        assert_eq!(pem_certs(&ca.trust_anchors_pem()), vec![der.clone()]);
        assert_eq!(ca.intermediates_pem(), "");
        let hex: String = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ca.fingerprint_sha256(), hex);
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(ca.not_before(), c.validity().not_before.to_datetime());
        assert_eq!(ca.not_after(), c.validity().not_after.to_datetime());
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}

#[test]
fn explicit_trust_anchors_are_published() {
    let g = generated(CaKeyType::EcdsaP256);
    let other = generated(CaKeyType::Ed25519);
    let ca = Ca::from_pem(&g.cert_pem, &g.key_pem, Some(&other.cert_pem), now()).unwrap();
    assert_eq!(ca.trust_anchors_der().to_vec(), pem_certs(&other.cert_pem));
    let err = Ca::from_pem(&g.cert_pem, &g.key_pem, Some("nothing here"), now()).unwrap_err();
    assert!(matches!(err, CaError::NoCertificate(_)), "{err}");
}

#[test]
fn a_key_of_another_ca_is_refused() {
    let a = generated(CaKeyType::EcdsaP256);
    let b = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::days(1), now()).unwrap();
    let err = Ca::from_pem(&a.cert_pem, &b.key_pem, None, now()).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
    // A key of another type too.
    let ed = generated(CaKeyType::Ed25519);
    let err = Ca::from_pem(&a.cert_pem, &ed.key_pem, None, now()).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "the CA key does not match the CA certificate's public key"
    );
}

#[test]
fn a_certificate_without_ca_true_is_refused() {
    let mut p = ca_params("leaf");
    p.is_ca = IsCa::ExplicitNoCa;
    let (cert, key) = self_signed(&p);
    let err = Ca::from_pem(&cert, &key, None, now()).unwrap_err();
    assert!(matches!(err, CaError::NotCa(_)), "{err}");
    assert!(err.to_string().contains("CA:TRUE"), "{err}");

    p.is_ca = IsCa::NoCa;
    let (cert, key) = self_signed(&p);
    let err = Ca::from_pem(&cert, &key, None, now()).unwrap_err();
    assert!(matches!(err, CaError::NotCa(_)), "{err}");
}

#[test]
fn a_ca_whose_key_usage_lacks_key_cert_sign_is_refused() {
    let mut p = ca_params("no keyCertSign");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let (cert, key) = self_signed(&p);
    let err = Ca::from_pem(&cert, &key, None, now()).unwrap_err();
    assert!(matches!(err, CaError::NotCa(_)), "{err}");
    assert!(err.to_string().contains("keyCertSign"), "{err}");
}

#[test]
fn a_ca_without_key_usage_is_accepted() {
    let mut p = ca_params("no KU");
    p.key_usages = vec![];
    let (cert, key) = self_signed(&p);
    Ca::from_pem(&cert, &key, None, now()).unwrap();
}

#[test]
fn expired_not_yet_valid_and_short_lived_cas_are_refused() {
    let t0 = now();
    let g = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::hours(2), t0).unwrap();
    let load_at = |t: OffsetDateTime| Ca::from_pem(&g.cert_pem, &g.key_pem, None, t);

    let err = load_at(t0 + Duration::hours(3)).unwrap_err();
    assert!(matches!(err, CaError::Expired { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("the CA certificate expired at "),
        "{err}"
    );

    let err = load_at(t0 + Duration::minutes(90)).unwrap_err();
    let CaError::ExpiresTooSoon { not_after } = err else {
        panic!("expected ExpiresTooSoon, got {err}")
    };
    let rendered = CaError::ExpiresTooSoon { not_after }.to_string();
    let rfc = not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(rendered.contains(&rfc), "{rendered}");
    assert!(rendered.contains("less than one hour"), "{rendered}");

    let err = load_at(t0 - Duration::days(1)).unwrap_err();
    assert!(matches!(err, CaError::NotYetValid { .. }), "{err}");

    // Still just over an hour left: accepted.
    load_at(t0 + Duration::minutes(55)).unwrap();
}

#[test]
fn garbage_input_is_refused_with_its_own_error() {
    let g = generated(CaKeyType::EcdsaP256);
    let err = Ca::from_pem("not a pem at all", &g.key_pem, None, now()).unwrap_err();
    assert!(matches!(err, CaError::NoCertificate(_)), "{err}");
    let bad_body = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let err = Ca::from_pem(bad_body, &g.key_pem, None, now()).unwrap_err();
    assert!(matches!(err, CaError::BadCertificate(_)), "{err}");
    let err = Ca::from_pem(&g.key_pem, &g.key_pem, None, now()).unwrap_err();
    assert!(matches!(err, CaError::BadCertificate(_)), "{err}");

    let err = Ca::from_pem(&g.cert_pem, "garbage", None, now()).unwrap_err();
    assert!(matches!(err, CaError::NoKey), "{err}");
    let bad_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n";
    let err = Ca::from_pem(&g.cert_pem, bad_key, None, now()).unwrap_err();
    assert!(matches!(err, CaError::BadKey(_)), "{err}");
}

#[test]
fn an_encrypted_pkcs8_key_is_refused() {
    let g = generated(CaKeyType::EcdsaP256);
    // Structure does not matter: the label alone says the key is encrypted.
    let enc =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = Ca::from_pem(&g.cert_pem, enc, None, now()).unwrap_err();
    assert!(matches!(err, CaError::EncryptedKey), "{err}");
}

#[test]
fn a_self_signed_root_after_the_signing_ca_is_the_anchor_and_stays_out_of_chains() {
    // root -> intermediate, cert file = intermediate + root.
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("root");
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).unwrap();
    let int_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut int_params = ca_params("intermediate");
    int_params.use_authority_key_identifier_extension = true;
    let int_cert = int_params.signed_by(&int_key, &*root).unwrap();
    let cert_pem = format!("{}{}", int_cert.pem(), root.pem());
    let ca = Ca::from_pem(&cert_pem, &int_key.serialize_pem(), None, now()).unwrap();
    assert_eq!(ca.key_type(), CaKeyType::Ed25519);
    assert_eq!(ca.trust_anchors_der().to_vec(), vec![root.der().to_vec()]);
    assert_eq!(ca.intermediates_pem(), "");

    let issued = podcert_core::issue::issue_leaf(
        &ca,
        &subject_key(podcert_core::key_type::KeyType::EcdsaP256),
        &profile(),
        now(),
    )
    .unwrap();
    let chain = pem_certs(&issued.chain_pem);
    assert_eq!(
        chain,
        vec![issued.leaf_der.clone(), int_cert.der().to_vec()]
    );
    webpki_verify(
        &chain,
        ca.trust_anchors_der(),
        webpki::KeyUsage::client_auth(),
        now(),
    )
    .unwrap();

    // Without the root in the file, the signing certificate is the anchor.
    let ca = Ca::from_pem(&int_cert.pem(), &int_key.serialize_pem(), None, now()).unwrap();
    assert_eq!(
        ca.trust_anchors_der().to_vec(),
        vec![int_cert.der().to_vec()]
    );
}
