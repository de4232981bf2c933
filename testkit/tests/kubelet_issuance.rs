//! The emulator's check of an Issued status before it projects the credential.

mod kubelet_support;

use kubelet_support::{issued_status, status_with, whole_seconds, TestCa};
use podcert_testkit::kubelet::issuance::{check_issued, terminal_condition, IssuanceError};
use podcert_testkit::kubelet::keys::{KeyType, KubeletKey};
use serde_json::json;
use time::{Duration, OffsetDateTime};

#[test]
fn accepts_a_consistent_issuance_for_its_key() {
    let ca = TestCa::new();
    let key = KubeletKey::generate(KeyType::EcdsaP256).unwrap();
    let mut status = issued_status(&ca, key.spki_der(), OffsetDateTime::now_utc());
    // The chain may carry intermediates; only CERTIFICATE blocks are kept.
    let chain = format!(
        "{}{}",
        status["certificateChain"].as_str().unwrap(),
        ca.cert_pem
    );
    status["certificateChain"] = json!(chain);
    let iss = check_issued(&status, key.spki_der()).unwrap();
    assert_eq!(pem::parse_many(&iss.chain_pem).unwrap().len(), 2);
    assert_eq!(iss.not_after - iss.not_before, Duration::hours(2));
    assert_eq!(terminal_condition(&status).unwrap().0, "Issued");
}

#[test]
fn projected_chain_is_bare_lf_certificate_blocks() {
    let ca = TestCa::new();
    let key = KubeletKey::generate(KeyType::EcdsaP384).unwrap();
    let mut status = issued_status(&ca, key.spki_der(), OffsetDateTime::now_utc());
    // A CRLF chain with text between blocks still projects as Go would re-encode it.
    let crlf = status["certificateChain"]
        .as_str()
        .unwrap()
        .replace('\n', "\r\n");
    let chain = format!("{crlf}between\r\n{}", ca.cert_pem.replace('\n', "\r\n"));
    status["certificateChain"] = json!(chain);
    let iss = check_issued(&status, key.spki_der()).unwrap();
    assert!(!iss.chain_pem.contains('\r'));
    let blocks = pem::parse_many(&iss.chain_pem).unwrap();
    assert_eq!(blocks.len(), 2);
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let bare: String = blocks
        .iter()
        .map(|b| pem::encode_config(&pem::Pem::new("CERTIFICATE", b.contents().to_vec()), lf))
        .collect();
    assert_eq!(iss.chain_pem, bare);
    // The key block the kubelet writes first uses LF too.
    let key_pem = key.private_key_pem();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(!key_pem.contains('\r'));
}

#[test]
fn refuses_a_leaf_for_another_key() {
    let ca = TestCa::new();
    let mine = KubeletKey::generate(KeyType::Ed25519).unwrap();
    let other = KubeletKey::generate(KeyType::Ed25519).unwrap();
    let status = issued_status(&ca, other.spki_der(), OffsetDateTime::now_utc());
    assert_eq!(
        check_issued(&status, mine.spki_der()).unwrap_err(),
        IssuanceError::WrongKey
    );
}

#[test]
fn refuses_times_that_disagree_with_the_leaf_or_each_other() {
    let ca = TestCa::new();
    let key = KubeletKey::generate(KeyType::EcdsaP384).unwrap();
    let nb = whole_seconds(OffsetDateTime::now_utc()) - Duration::minutes(1);
    let na = nb + Duration::hours(2);
    let leaf = ca.leaf(key.spki_der(), nb, na);

    let shifted = status_with(
        leaf.clone(),
        nb + Duration::seconds(1),
        na,
        nb + Duration::hours(1),
    );
    assert!(matches!(
        check_issued(&shifted, key.spki_der()),
        Err(IssuanceError::TimeMismatch {
            field: "notBefore",
            ..
        })
    ));
    let late_refresh = status_with(leaf.clone(), nb, na, na + Duration::minutes(1));
    assert!(matches!(
        check_issued(&late_refresh, key.spki_der()),
        Err(IssuanceError::RefreshOutsideLifetime(_))
    ));
    let mut no_time = status_with(leaf, nb, na, nb + Duration::hours(1));
    no_time.as_object_mut().unwrap().remove("notAfter");
    assert_eq!(
        check_issued(&no_time, key.spki_der()).unwrap_err(),
        IssuanceError::BadTime("notAfter")
    );
}

#[test]
fn refuses_non_certificate_blocks() {
    let ca = TestCa::new();
    let key = KubeletKey::generate(KeyType::EcdsaP256).unwrap();
    let mut status = issued_status(&ca, key.spki_der(), OffsetDateTime::now_utc());
    let chain = format!(
        "{}{}",
        status["certificateChain"].as_str().unwrap(),
        key.private_key_pem()
    );
    status["certificateChain"] = json!(chain);
    assert_eq!(
        check_issued(&status, key.spki_der()).unwrap_err(),
        IssuanceError::NotACertificate("PRIVATE KEY".into())
    );
    status["certificateChain"] = json!("");
    assert_eq!(
        check_issued(&status, key.spki_der()).unwrap_err(),
        IssuanceError::NoChain
    );
}

#[test]
fn only_the_three_terminal_conditions_count() {
    assert_eq!(
        terminal_condition(&json!({ "conditions": [{ "type": "Pending" }] })),
        None
    );
    assert_eq!(terminal_condition(&json!({})), None);
    let d = kubelet_support::denied_status("UnsupportedKeyType", "use ED25519");
    assert_eq!(
        terminal_condition(&d),
        Some((
            "Denied".into(),
            "UnsupportedKeyType".into(),
            "use ED25519".into()
        ))
    );
}
