//! Every kubelet vector (built by Go's crypto exactly as a kubelet builds it) through the
//! signing pipeline, each `expect` honoured; every written status is then checked by the API
//! emulator's independent implementation of kube-apiserver's status validation.

use std::collections::BTreeSet;

use podcert_core::ca::{generate_self_signed, Ca, CaKeyType};
use podcert_core::pipeline;
use podcert_core::policy::SignerConfig;
use podcert_core::request::{wire, ConditionType};
use podcert_core::spiffe_id::TrustDomain;
use podcert_testkit::rules::pcr;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::fixtures::keys::spki_via_rcgen;
use crate::fixtures::vectors::vectors;

const SIGNER: &str = "acceptance.podcert.test/spiffe";

fn ca(kind: CaKeyType, now: OffsetDateTime) -> Ca {
    let g = generate_self_signed(kind, Some("cluster.local"), Duration::days(30), now).unwrap();
    Ca::from_pem(&g.cert_pem, &g.key_pem, None, now).unwrap()
}

fn config() -> SignerConfig {
    SignerConfig::new(SIGNER, TrustDomain::new("cluster.local").unwrap()).unwrap()
}

fn version_of(obj: &Value) -> String {
    obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// The apiserver's verdict on writing `new` over `old` (both wire objects of one version).
fn apiserver_accepts(old: &Value, new: &Value, now: OffsetDateTime) -> Result<(), String> {
    let v = version_of(old);
    let old_i = pcr::to_internal(old.clone(), &v);
    let mut new_i = pcr::to_internal(new.clone(), &v);
    pcr::validate_status_update(&old_i, &mut new_i, now).map_err(|errs| {
        errs.iter()
            .map(|e| e.message())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn check_leaf(name: &str, v: &Value, status: &Value, now: OffsetDateTime, spiffe: &str) {
    let chain = status["certificateChain"].as_str().unwrap();
    let blocks = pem::parse_many(chain).unwrap();
    assert_eq!(
        blocks.len(),
        1,
        "{name}: a self-signed root must not be in the chain"
    );
    assert!(blocks.iter().all(|b| b.tag() == "CERTIFICATE"));
    let (_, leaf) = X509Certificate::from_der(blocks[0].contents()).unwrap();
    if let Some(key_file) = v["keyFile"].as_str() {
        assert_eq!(
            leaf.public_key().raw,
            spki_via_rcgen(key_file).as_slice(),
            "{name}: leaf key is not the requester's"
        );
    }
    assert!(
        leaf.subject().iter_attributes().next().is_none(),
        "{name}: subject must be empty"
    );
    let san = leaf.subject_alternative_name().unwrap().expect("SAN");
    assert!(
        san.critical,
        "{name}: SAN must be critical with an empty subject"
    );
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| format!("{g:?}"))
        .collect();
    assert_eq!(
        names,
        vec![format!("URI({spiffe:?})")],
        "{name}: exactly the SPIFFE ID, nothing from the request"
    );
    let nb = leaf.validity().not_before.to_datetime();
    let na = leaf.validity().not_after.to_datetime();
    assert_eq!(wire::format_time(nb), status["notBefore"].as_str().unwrap());
    assert_eq!(wire::format_time(na), status["notAfter"].as_str().unwrap());
    assert!((nb - now).abs() <= Duration::minutes(5));
    let max = v["object"]["spec"]["maxExpirationSeconds"]
        .as_i64()
        .unwrap();
    let life = (na - nb).whole_seconds();
    assert!((3600..=max).contains(&life), "{name}: lifetime {life}");
    let refresh = wire::parse_time(status["beginRefreshAt"].as_str().unwrap()).unwrap();
    assert!(refresh >= nb + Duration::minutes(10) && refresh <= na - Duration::minutes(10));
}

#[test]
fn every_vector_gets_the_decision_its_expect_names() {
    let now = OffsetDateTime::now_utc();
    let cfg = config();
    let mut seen = BTreeSet::new();
    for (i, v) in vectors().iter().enumerate() {
        // Rotate CA key types so each kind of CA signs several subject key types.
        let ca_kind = [
            CaKeyType::EcdsaP256,
            CaKeyType::EcdsaP384,
            CaKeyType::Ed25519,
            CaKeyType::Rsa3072,
            CaKeyType::MlDsa65,
        ][i % 5];
        let ca = ca(ca_kind, now);
        let name = v["name"].as_str().unwrap();
        let expect = v["expect"].as_str().unwrap();
        seen.insert(expect.to_string());
        let obj = wire::from_value(v["object"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = pipeline::process(&obj.request, &cfg, &ca, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = wire::with_status(&obj.raw, &outcome.status, now);
        let status = &written["status"];
        let cond = outcome.status.condition;
        match expect {
            "Issued" | "NoForgedNames" => {
                assert_eq!(
                    cond,
                    ConditionType::Issued,
                    "{name}: {}",
                    outcome.status.message
                );
                let spec = &v["object"]["spec"];
                let ns = v["object"]["metadata"]["namespace"].as_str().unwrap();
                let spiffe = format!(
                    "spiffe://cluster.local/ns/{ns}/sa/{}",
                    spec["serviceAccountName"].as_str().unwrap()
                );
                check_leaf(name, v, status, now, &spiffe);
            }
            "Denied" => assert_eq!(cond, ConditionType::Denied, "{name}"),
            "Rejected" => assert_eq!(
                cond,
                ConditionType::Denied,
                "{name}: a request the apiserver refuses must never be issued"
            ),
            other => panic!("{name}: unknown expectation {other}"),
        }
        assert_ne!(cond, ConditionType::Failed);
        if expect != "Rejected" {
            apiserver_accepts(&v["object"], &written, now)
                .unwrap_or_else(|e| panic!("{name}: apiserver would refuse our status: {e}"));
        }
    }
    assert_eq!(
        seen.len(),
        4,
        "vectors cover Issued, Denied, Rejected and NoForgedNames"
    );
}

#[test]
fn denial_reasons_are_specific() {
    let now = OffsetDateTime::now_utc();
    let ca = ca(CaKeyType::EcdsaP256, now);
    let cfg = config();
    let want = [
        ("RSA2048-pop", "UnsupportedKeyType"),
        ("ECDSAP224-pop", "UnsupportedKeyType"),
        ("ED25519-pop-wrong-uid", "InvalidProof"),
        ("RSA4096-stub-bad-signature", "InvalidProof"),
        ("pop-from-other-key", "InvalidProof"),
        ("MLDSA65-stub-signed-by-other-key", "InvalidProof"),
        ("MLDSA44-stub-claims-mldsa65", "InvalidProof"),
        ("ECDSAP256-stub-claims-mldsa65", "InvalidProof"),
        ("MLDSA87-stub-bad-signature", "InvalidProof"),
        ("MLDSA65-pop-v1beta1", "UnsupportedKeyType"),
        ("unknown-user-annotation", "UnknownUserAnnotation"),
    ];
    let all = vectors();
    for (vname, reason) in want {
        let v = all.iter().find(|v| v["name"] == vname).unwrap();
        let obj = wire::from_value(v["object"].clone()).unwrap();
        let out = pipeline::process(&obj.request, &cfg, &ca, now).unwrap();
        assert_eq!(out.status.reason, reason, "{vname}: {}", out.status.message);
        assert!(!out.status.message.is_empty());
        assert!(out.status.certificate_chain.is_none() && out.status.not_after.is_none());
    }
}

#[test]
fn a_request_for_another_signer_is_denied_not_issued() {
    let now = OffsetDateTime::now_utc();
    let ca = ca(CaKeyType::EcdsaP256, now);
    let cfg = SignerConfig::new("other.example/spiffe", TrustDomain::new("td").unwrap()).unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-pop-v1beta1")
        .unwrap();
    let obj = wire::from_value(v["object"].clone()).unwrap();
    let out = pipeline::process(&obj.request, &cfg, &ca, now).unwrap();
    assert_eq!(out.status.reason, "SignerNameMismatch");
}

#[test]
fn the_lifetime_follows_max_expiration_and_the_ca() {
    let now = OffsetDateTime::now_utc();
    let cfg = config();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "max-expiration-3600")
        .unwrap();
    let obj = wire::from_value(v["object"].clone()).unwrap();
    let out = pipeline::process(&obj.request, &cfg, &ca(CaKeyType::EcdsaP256, now), now).unwrap();
    let life = out.status.not_after.unwrap() - out.status.not_before.unwrap();
    assert_eq!(
        life,
        Duration::hours(1),
        "the backdate counts inside maxExpirationSeconds"
    );

    // A CA with 2 h left caps a 24 h request at its own notAfter.
    let g = generate_self_signed(CaKeyType::EcdsaP256, None, Duration::hours(2), now).unwrap();
    let short = Ca::from_pem(&g.cert_pem, &g.key_pem, None, now).unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-pop-v1beta1")
        .unwrap();
    let obj = wire::from_value(v["object"].clone()).unwrap();
    let out = pipeline::process(&obj.request, &cfg, &short, now).unwrap();
    assert!(out.status.not_after.unwrap() <= short.not_after());

    // A CA with less than an hour left at signing time is a transient error, never Failed.
    let later = now + Duration::minutes(65);
    let err = pipeline::process(&obj.request, &cfg, &short, later).unwrap_err();
    assert!(err.to_string().contains("too soon"), "{err}");
}

#[test]
fn an_already_decided_request_is_left_alone() {
    let now = OffsetDateTime::now_utc();
    let ca = ca(CaKeyType::EcdsaP256, now);
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-pop-v1beta1")
        .unwrap();
    let obj = wire::from_value(v["object"].clone()).unwrap();
    let out = pipeline::process(&obj.request, &config(), &ca, now).unwrap();
    let decided = wire::with_status(&obj.raw, &out.status, now);
    let again = wire::from_value(decided).unwrap();
    assert!(matches!(
        pipeline::process(&again.request, &config(), &ca, now),
        Err(pipeline::NotDecided::AlreadyTerminal { .. })
    ));
}
