//! The CA's notAfter caps the leaf lifetime; a CA too close to expiry refuses to issue.

use crate::fixtures::ca::*;
use podcert_core::ca::{generate_self_signed, Ca, CaKeyType};
use podcert_core::issue::{issue_leaf, IssueError};
use podcert_core::key_type::KeyType;
use time::Duration;

#[test]
fn ca_not_after_caps_the_leaf_lifetime() {
    let t0 = now();
    let g = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::hours(3), t0).unwrap();
    let ca = Ca::from_pem(&g.cert_pem, &g.key_pem, None, t0).unwrap();
    let issued = issue_leaf(&ca, &subject_key(KeyType::EcdsaP256), &profile(), t0).unwrap();
    assert_eq!(issued.not_after, ca.not_after());
    assert!(issued.not_after - issued.not_before < Duration::hours(24));
    assert!(issued.not_after - issued.not_before >= Duration::hours(1));
    assert!(issued.begin_refresh_at <= issued.not_after - Duration::minutes(10));
    let chain = pem_certs(&issued.chain_pem);
    let anchors = pem_certs(&g.cert_pem);
    webpki_verify(&chain, &anchors, webpki::KeyUsage::server_auth(), t0).unwrap();
}

#[test]
fn max_lifetime_caps_when_the_ca_lives_longer() {
    let t0 = now();
    let ca = load(generated(CaKeyType::EcdsaP256));
    let mut p = profile();
    p.max_lifetime = Duration::seconds(3600);
    let issued = issue_leaf(&ca, &subject_key(KeyType::Ed25519), &p, t0).unwrap();
    assert_eq!(issued.not_after - issued.not_before, Duration::hours(1));
}

#[test]
fn a_ca_with_under_an_hour_left_at_issuance_is_ca_expires_too_soon() {
    let t0 = now();
    let g = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::minutes(90), t0).unwrap();
    let ca = Ca::from_pem(&g.cert_pem, &g.key_pem, None, t0).unwrap();
    let later = t0 + Duration::minutes(40);
    match issue_leaf(&ca, &subject_key(KeyType::EcdsaP256), &profile(), later) {
        Err(IssueError::CaExpiresTooSoon { ca_not_after }) => {
            assert_eq!(ca_not_after, ca.not_after())
        }
        other => panic!("expected CaExpiresTooSoon, got {other:?}"),
    }
}
