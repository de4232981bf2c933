//! The PodCertificateRequest status strategy (ValidatePodCertificateRequestStatusUpdate and the
//! `sign` check), with real leaves made by a test CA for the vectors' request keys.

use podcert_testkit::api_status::{FieldError, FieldErrorKind};
use podcert_testkit::rules::{pcr, Attributes, UserInfo};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/kubelet-vectors");

fn vector(name: &str) -> Value {
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/vectors.json")).unwrap())
            .unwrap();
    all.into_iter().find(|v| v["name"] == name).unwrap()
}

/// A stored, pending request built from a vector (lower-cased name, as a generated one).
fn pending(name: &str) -> Value {
    let v = vector(name);
    let ver = v["object"]["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let mut o = v["object"].clone();
    o["metadata"]["name"] = json!(o["metadata"]["name"].as_str().unwrap().to_lowercase());
    let mut obj = pcr::to_internal(o, &ver);
    pcr::validate_create(&mut obj, 38).unwrap();
    obj
}

fn key(file: &str) -> KeyPair {
    KeyPair::from_pem(&std::fs::read_to_string(format!("{DIR}/keys/{file}")).unwrap()).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_600_800).unwrap()
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    let k = KeyPair::generate().unwrap();
    let pem = p.self_signed(&k).unwrap().pem();
    Ca {
        issuer: Issuer::new(p, k),
        pem,
    }
}

fn leaf(
    ca: &Ca,
    subject: &KeyPair,
    nb: OffsetDateTime,
    na: OffsetDateTime,
    dns: &[&str],
) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.not_before = nb;
    p.not_after = na;
    p.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().unwrap()))
        .collect();
    p.signed_by(subject, &ca.issuer).unwrap().pem()
}

fn condition(kind: &str) -> Value {
    json!({ "type": kind, "status": "True", "reason": kind, "message": "m", "lastTransitionTime": ts(now()) })
}

fn issued(chain: &str, nb: OffsetDateTime, na: OffsetDateTime, refresh: OffsetDateTime) -> Value {
    json!({
        "conditions": [condition("Issued")],
        "certificateChain": chain,
        "notBefore": ts(nb), "notAfter": ts(na), "beginRefreshAt": ts(refresh),
    })
}

fn with_status(obj: &Value, status: Value) -> Value {
    let mut n = obj.clone();
    n["status"] = status;
    n
}

fn update(old: &Value, status: Value) -> Result<(), Vec<FieldError>> {
    let mut new = with_status(old, status);
    pcr::validate_status_update(old, &mut new, now())
}

/// A well-formed issuance for `vector`, signed for `key_file`.
fn good_issuance(ca: &Ca, key_file: &str) -> Value {
    let nb = now() - Duration::minutes(1);
    let na = nb + Duration::hours(24);
    issued(
        &leaf(ca, &key(key_file), nb, na, &["a.example"]),
        nb,
        na,
        nb + Duration::hours(12),
    )
}

fn only(errs: Result<(), Vec<FieldError>>) -> FieldError {
    let errs = errs.unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn issuance_for_every_key_type_and_carrier_is_accepted() {
    let ca = ca();
    for kt in [
        "ED25519",
        "ECDSAP256",
        "ECDSAP384",
        "ECDSAP521",
        "RSA3072",
        "RSA4096",
    ] {
        for carrier in ["pop-v1beta1", "stub-v1"] {
            let old = pending(&format!("{kt}-{carrier}"));
            let status = good_issuance(&ca, &format!("{kt}.key.pem"));
            update(&old, status).unwrap_or_else(|e| panic!("{kt}-{carrier}: {e:#?}"));
        }
    }
}

#[test]
fn leaf_must_carry_the_requested_key() {
    let ca = ca();
    let old = pending("ED25519-stub-v1");
    let e = only(update(&old, good_issuance(&ca, "ECDSAP256.key.pem")));
    assert_eq!(e.field, "status.certificateChain");
    assert_eq!(
        e.detail,
        "leaf certificate was not issued to the requested public key"
    );
}

#[test]
fn times_must_match_the_leaf_and_the_clock() {
    let ca = ca();
    let old = pending("ECDSAP256-pop-v1beta1");
    let k = key("ECDSAP256.key.pem");
    let nb = now() - Duration::minutes(1);
    let na = nb + Duration::hours(24);
    let chain = leaf(&ca, &k, nb, na, &[]);

    let e = only(update(
        &old,
        issued(
            &chain,
            nb + Duration::seconds(1),
            na,
            nb + Duration::hours(1),
        ),
    ));
    assert_eq!(
        e.message(),
        "status.notBefore: Invalid value: 2026-11-25 09:59:01 +0000 UTC: must be set to the NotBefore time encoded in the leaf certificate"
    );
    let e = only(update(
        &old,
        issued(
            &chain,
            nb,
            na - Duration::seconds(1),
            nb + Duration::hours(1),
        ),
    ));
    assert_eq!(
        e.detail,
        "must be set to the NotAfter time encoded in the leaf certificate"
    );

    // Exactly 5 minutes off is outside (timeNear is strict); 4m59s is inside.
    let early = now() - Duration::minutes(5);
    let chain = leaf(&ca, &k, early, early + Duration::hours(24), &[]);
    let e = only(update(
        &old,
        issued(
            &chain,
            early,
            early + Duration::hours(24),
            early + Duration::hours(1),
        ),
    ));
    assert_eq!(e.field, "status.notBefore");
    assert_eq!(
        e.detail,
        "must be set to within 5 minutes of kube-apiserver's current time"
    );
    let late = now() + Duration::minutes(5) - Duration::seconds(1);
    let chain = leaf(&ca, &k, late, late + Duration::hours(24), &[]);
    update(
        &old,
        issued(
            &chain,
            late,
            late + Duration::hours(24),
            late + Duration::hours(1),
        ),
    )
    .unwrap();
}

#[test]
fn lifetime_bounds() {
    let ca = ca();
    let k = key("ECDSAP256.key.pem");
    let nb = now() - Duration::minutes(1);
    let old = pending("ECDSAP256-pop-v1beta1");
    let na = nb + Duration::minutes(59);
    let chain = leaf(&ca, &k, nb, na, &[]);
    let e = only(update(
        &old,
        issued(&chain, nb, na, nb + Duration::minutes(20)),
    ));
    assert_eq!(e.message(), "status.certificateChain: Invalid value: 59m0s: leaf certificate lifetime must be >= 1 hour");

    let na = nb + Duration::hours(1);
    let chain = leaf(&ca, &k, nb, na, &[]);
    update(&old, issued(&chain, nb, na, nb + Duration::minutes(30))).unwrap();

    let na = nb + Duration::hours(24) + Duration::seconds(1);
    let chain = leaf(&ca, &k, nb, na, &[]);
    let e = only(update(
        &old,
        issued(&chain, nb, na, nb + Duration::hours(1)),
    ));
    assert_eq!(
        e.message(),
        "status.certificateChain: Invalid value: 24h0m1s: leaf certificate lifetime must be <= spec.maxExpirationSeconds (86400)"
    );

    let short = pending("max-expiration-3600");
    let k = key("short.key.pem");
    let na = nb + Duration::hours(2);
    let chain = leaf(&ca, &k, nb, na, &[]);
    let e = only(update(
        &short,
        issued(&chain, nb, na, nb + Duration::hours(1)),
    ));
    assert_eq!(
        e.detail,
        "leaf certificate lifetime must be <= spec.maxExpirationSeconds (3600)"
    );
}

#[test]
fn refresh_window() {
    let ca = ca();
    let k = key("ED25519.key.pem");
    let old = pending("ED25519-pop-v1beta1");
    let nb = now() - Duration::minutes(1);
    let na = nb + Duration::hours(2);
    let chain = leaf(&ca, &k, nb, na, &[]);
    let e = only(update(
        &old,
        issued(
            &chain,
            nb,
            na,
            nb + Duration::minutes(10) - Duration::seconds(1),
        ),
    ));
    assert_eq!(e.field, "status.beginRefreshAt");
    assert_eq!(
        e.detail,
        "must be at least 10 minutes after status.notBefore"
    );
    let e = only(update(
        &old,
        issued(
            &chain,
            nb,
            na,
            na - Duration::minutes(10) + Duration::seconds(1),
        ),
    ));
    assert_eq!(
        e.detail,
        "must be at least 10 minutes before status.notAfter"
    );
    update(&old, issued(&chain, nb, na, nb + Duration::minutes(10))).unwrap();
    update(&old, issued(&chain, nb, na, na - Duration::minutes(10))).unwrap();
}

#[test]
fn issued_needs_all_three_times() {
    let ca = ca();
    let old = pending("ED25519-pop-v1beta1");
    let mut status = good_issuance(&ca, "ED25519.key.pem");
    for k in ["notBefore", "notAfter", "beginRefreshAt"] {
        status.as_object_mut().unwrap().remove(k);
    }
    let errs = update(&old, status).unwrap_err();
    let got: Vec<(FieldErrorKind, &str, &str)> = errs
        .iter()
        .map(|e| (e.kind, e.field.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                FieldErrorKind::Required,
                "status.notBefore",
                "must be present and consistent with the issued certificate"
            ),
            (
                FieldErrorKind::Required,
                "status.notAfter",
                "must be present and consistent with the issued certificate"
            ),
            (
                FieldErrorKind::Required,
                "status.beginRefreshAt",
                "must be present and in the range [notbefore+10min, notafter-10min]"
            ),
        ]
    );
}

#[test]
fn chain_shape() {
    let ca = ca();
    let old = pending("ED25519-pop-v1beta1");
    let good = good_issuance(&ca, "ED25519.key.pem");
    let with_chain = |chain: &str| {
        let mut s = good.clone();
        s["certificateChain"] = json!(chain);
        s
    };
    let e = only(update(&old, with_chain("")));
    assert_eq!(
        e.detail,
        "issued certificate chain must contain at least one certificate"
    );
    let e = only(update(
        &old,
        with_chain("-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"),
    ));
    assert_eq!(
        e.detail,
        "issued certificate chain must consist entirely of CERTIFICATE PEM blocks"
    );
    let e = only(update(
        &old,
        with_chain("-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"),
    ));
    assert_eq!(e.detail, "leaf certificate does not parse as valid X.509");
    let leaf_pem = good["certificateChain"].as_str().unwrap().to_string();
    let e = only(update(
        &old,
        with_chain(&format!(
            "{leaf_pem}-----BEGIN OTHER-----\nAQID\n-----END OTHER-----\n"
        )),
    ));
    assert_eq!(
        e.detail,
        "issued certificate chain must consist entirely of CERTFICATE PEM blocks"
    );
    let e = only(update(
        &old,
        with_chain(&format!(
            "{leaf_pem}-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"
        )),
    ));
    assert_eq!(
        e.detail,
        "intermediate certificate does not parse as valid X.509"
    );
    // Leaf plus an intermediate (the CA) is fine; the chain itself is not verified.
    update(&old, with_chain(&format!("{leaf_pem}{}", ca.pem))).unwrap();
    let e = only(update(&old, with_chain(&"x".repeat(100 * 1024 + 1))));
    assert_eq!(
        e.message(),
        "status.certificateChain: Too long: may not be more than 102400 bytes"
    );
}

#[test]
fn leaf_dns_names_must_be_well_formed() {
    let ca = ca();
    let old = pending("ED25519-pop-v1beta1");
    let nb = now() - Duration::minutes(1);
    let na = nb + Duration::hours(2);
    let chain = leaf(&ca, &key("ED25519.key.pem"), nb, na, &["a..b", ".lead"]);
    let errs = update(&old, issued(&chain, nb, na, nb + Duration::hours(1))).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
    assert_eq!(
        msgs,
        vec![
            "status.certificateChain: Invalid value: \"a..b\": leaf certificate's DNSName should not contain '..'",
            "status.certificateChain: Invalid value: \".lead\": leaf certificate's DNSName should not start or end with '.'",
        ]
    );
}

#[test]
fn denied_and_failed_carry_only_the_condition() {
    let ca = ca();
    let old = pending("ED25519-pop-v1beta1");
    for kind in ["Denied", "Failed"] {
        update(&old, json!({ "conditions": [condition(kind)] })).unwrap();
        let mut s = good_issuance(&ca, "ED25519.key.pem");
        s["conditions"] = json!([condition(kind)]);
        let e = only(update(&old, s));
        assert_eq!(
            e.message(),
            "status: Invalid value: non-condition status fields must be empty when denying or failing the PodCertificateRequest"
        );
    }
}

#[test]
fn condition_rules() {
    let old = pending("ED25519-pop-v1beta1");
    let two = json!({ "conditions": [condition("Denied"), condition("Failed")] });
    let e = only(update(&old, two));
    assert_eq!(
        e.message(),
        "status.conditions.[1].type: Invalid value: \"Failed\": There may be at most one condition with type \"Issued\", \"Denied\", or \"Failed\""
    );

    let e = only(update(
        &old,
        json!({ "conditions": [condition("Approved")] }),
    ));
    assert_eq!(
        e.message(),
        "status.conditions.[0].type: Unsupported value: \"Approved\": supported values: \"Issued\", \"Denied\", \"Failed\""
    );

    let mut c = condition("Denied");
    c["status"] = json!("False");
    let e = only(update(&old, json!({ "conditions": [c] })));
    assert_eq!(
        e.message(),
        "status.conditions.[0].status: Unsupported value: \"False\": supported values: \"True\""
    );

    let mut c = condition("Denied");
    c["reason"] = json!("Bad%Reason");
    let e = only(update(&old, json!({ "conditions": [c] })));
    assert_eq!(e.field, "status.conditions[0].reason");
    assert!(
        e.detail
            .starts_with("a condition reason must start with alphabetic character"),
        "{}",
        e.detail
    );
    for good in ["A", "UnsupportedKeyType", "a_b:c,d_"] {
        let mut c = condition("Denied");
        c["reason"] = json!(good);
        update(&old, json!({ "conditions": [c] })).unwrap();
    }
    for bad in ["1abc", "abc,", "ab-c"] {
        let mut c = condition("Denied");
        c["reason"] = json!(bad);
        assert!(update(&old, json!({ "conditions": [c] })).is_err(), "{bad}");
    }

    let mut c = condition("Denied");
    c.as_object_mut().unwrap().remove("reason");
    let e = only(update(&old, json!({ "conditions": [c] })));
    assert_eq!(
        e.message(),
        "status.conditions[0].reason: Required value: must be set"
    );

    let mut c = condition("Failed");
    c["message"] = json!("m".repeat(32769));
    let e = only(update(&old, json!({ "conditions": [c] })));
    assert_eq!(
        e.message(),
        "status.conditions[0].message: Too long: may not be more than 32768 bytes"
    );
    let mut c = condition("Failed");
    c["message"] = json!("m".repeat(32768));
    update(&old, json!({ "conditions": [c] })).unwrap();

    let mut c = condition("Failed");
    c.as_object_mut().unwrap().remove("lastTransitionTime");
    let e = only(update(&old, json!({ "conditions": [c] })));
    assert_eq!(
        e.message(),
        "status.conditions[0].lastTransitionTime: Required value: must be set"
    );
}

#[test]
fn terminal_status_is_immutable() {
    let ca = ca();
    let pending_req = pending("ED25519-pop-v1beta1");
    let status = good_issuance(&ca, "ED25519.key.pem");
    let done = with_status(&pending_req, status.clone());
    update(&done, status.clone()).unwrap();
    let e = only(update(
        &done,
        json!({ "conditions": [condition("Denied")] }),
    ));
    assert_eq!(
        e.message(),
        "status: Invalid value: immutable after PodCertificateRequest is issued, denied, or failed"
    );
    let denied = with_status(&pending_req, json!({ "conditions": [condition("Denied")] }));
    assert!(update(&denied, status).is_err());
}

#[test]
fn non_terminal_status_changes_only_by_becoming_terminal() {
    let ca = ca();
    let old = pending("ED25519-pop-v1beta1");
    let mut s = good_issuance(&ca, "ED25519.key.pem");
    s["conditions"] = json!([]);
    let e = only(update(&old, s));
    assert_eq!(
        e.message(),
        "status: Invalid value: status is immutable unless transitioning to \"Issued\", \"Denied\", or \"Failed\""
    );
    // Nothing changed: fine.
    update(&old, json!({})).unwrap();
}

#[test]
fn status_writes_cannot_change_spec_or_metadata() {
    let old = pending("ED25519-pop-v1beta1");
    let mut new = with_status(&old, json!({ "conditions": [condition("Denied")] }));
    new["spec"]["signerName"] = json!("evil.example/other");
    new["metadata"]["labels"] = json!({ "x": "y" });
    new["metadata"]["resourceVersion"] = json!("7");
    pcr::validate_status_update(&old, &mut new, now()).unwrap();
    assert_eq!(new["spec"], old["spec"]);
    assert!(new["metadata"].get("labels").is_none());
    assert_eq!(new["metadata"]["resourceVersion"], "7");
}

fn allow_names(names: &'static [&'static str]) -> impl Fn(&Attributes) -> bool {
    move |a: &Attributes| {
        a.verb == "sign"
            && a.api_group == "certificates.k8s.io"
            && a.resource == "signers"
            && names.contains(&a.name.as_str())
    }
}

#[test]
fn writing_status_needs_sign_on_the_signer_or_its_domain() {
    let old = pending("ED25519-pop-v1beta1");
    let new = with_status(&old, json!({ "conditions": [condition("Denied")] }));
    let user = UserInfo::service_account("signer", "podcert");
    pcr::authorize_status_update(
        &user,
        &old,
        &new,
        &allow_names(&["acceptance.podcert.test/spiffe"]),
    )
    .unwrap();
    pcr::authorize_status_update(
        &user,
        &old,
        &new,
        &allow_names(&["acceptance.podcert.test/*"]),
    )
    .unwrap();
    let e = pcr::authorize_status_update(&user, &old, &new, &allow_names(&["other.test/*"]))
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "PodCertificateRequest.certificates.k8s.io \"req-ed25519-pop\" is invalid: spec.signerName: Forbidden: User \"system:serviceaccount:signer:podcert\" is not permitted to \"sign\" for signer \"acceptance.podcert.test/spiffe\""
    );
    // An unchanged status needs no sign permission.
    pcr::authorize_status_update(&user, &old, &old, &allow_names(&[])).unwrap();
}
