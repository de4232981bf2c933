//! ClusterTrustBundle rules: naming, trust bundle content, immutability, the attest check.

use podcert_testkit::api_status::FieldError;
use podcert_testkit::rules::{ctb, Attributes, UserInfo};
use rcgen::{CertificateParams, IsCa, KeyPair};
use serde_json::{json, Value};

fn ca_pem() -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

fn leaf_pem() -> String {
    let p = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

fn bundle(name: &str, signer: Option<&str>, pem: &str) -> Value {
    let mut spec = json!({ "trustBundle": pem });
    if let Some(s) = signer {
        spec["signerName"] = json!(s);
    }
    ctb::to_internal(
        json!({ "apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle", "metadata": { "name": name }, "spec": spec }),
        "v1beta1",
    )
}

fn errs(mut o: Value) -> Vec<FieldError> {
    ctb::validate_create(&mut o).err().unwrap_or_default()
}

#[test]
fn names_follow_the_signer() {
    let ca = ca_pem();
    assert!(errs(bundle(
        "example.com:spiffe:live",
        Some("example.com/spiffe"),
        &ca
    ))
    .is_empty());
    let e = errs(bundle("live", Some("example.com/spiffe"), &ca));
    assert_eq!(
        e[0].message(),
        "metadata.name: Invalid value: \"live\": ClusterTrustBundle for signerName example.com/spiffe must be named with prefix example.com:spiffe:"
    );
    assert!(errs(bundle("plain-bundle", None, &ca)).is_empty());
    let e = errs(bundle("example.com:spiffe:live", None, &ca));
    assert_eq!(
        e[0].detail,
        "ClusterTrustBundle without signer name must not have \":\" in its name"
    );
    let e = errs(bundle("bad:x", Some("bad"), &ca));
    assert!(e.iter().any(|e| e.field == "spec.signerName"), "{e:?}");
}

#[test]
fn trust_bundle_content() {
    let ca = ca_pem();
    let other = ca_pem();
    let name = "example.com:s:a";
    let signer = Some("example.com/s");
    assert!(errs(bundle(name, signer, &format!("{ca}{other}"))).is_empty());

    let e = errs(bundle(name, signer, &leaf_pem()));
    assert_eq!(
        e[0].message(),
        "spec.trustBundle: Invalid value: \"<value omitted>\": entry 0 does not have the CA bit set"
    );
    let e = errs(bundle(
        name,
        signer,
        &format!("{ca}-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"),
    ));
    assert_eq!(e[0].detail, "entry 1 has bad block type: PRIVATE KEY");
    let with_header = ca.replacen("-----\n", "-----\nX-Note: hi\n\n", 1);
    let e = errs(bundle(name, signer, &with_header));
    assert_eq!(e[0].detail, "entry 0 has PEM block headers");
    let e = errs(bundle(
        name,
        signer,
        "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
    ));
    assert_eq!(e[0].detail, "entry 0 does not parse as X.509");
    let e = errs(bundle(name, signer, &format!("{ca}{other}{ca}")));
    assert_eq!(e[0].detail, "duplicate trust anchor (indices [0 2])");
    let e = errs(bundle(name, signer, "no pem at all"));
    assert_eq!(e[0].detail, "at least one trust anchor must be provided");
    let e = errs(bundle(name, signer, &"x".repeat(1024 * 1024 + 1)));
    assert_eq!(
        e[0].message(),
        "spec.trustBundle: Too long: may not be more than 1048576 bytes"
    );
}

#[test]
fn signer_name_is_immutable_and_unchanged_bundles_are_not_reparsed() {
    let old = bundle("example.com:s:a", Some("example.com/s"), &ca_pem());
    let mut new = old.clone();
    new["spec"]["signerName"] = json!("example.com/t");
    let e = ctb::validate_update(&old, &mut new).unwrap_err();
    assert!(
        e.iter().any(|e| e.message()
            == "spec.signerName: Invalid value: \"example.com/t\": field is immutable"),
        "{e:?}"
    );

    // A stored bundle that today's rules would refuse is not re-parsed on a label change.
    let mut stored = bundle("legacy", None, "no pem at all");
    stored["metadata"]["labels"] = json!({});
    let mut relabel = stored.clone();
    relabel["metadata"]["labels"] = json!({ "a": "b" });
    ctb::validate_update(&stored, &mut relabel).unwrap();
}

#[test]
fn writing_a_signer_bundle_needs_attest() {
    let o = bundle("example.com:s:a", Some("example.com/s"), &ca_pem());
    let user = UserInfo::service_account("ns", "sa");
    let allow = |names: &'static [&'static str]| {
        move |a: &Attributes| {
            a.verb == "attest" && a.resource == "signers" && names.contains(&a.name.as_str())
        }
    };
    ctb::authorize_write(&user, &o, &allow(&["example.com/s"])).unwrap();
    ctb::authorize_write(&user, &o, &allow(&["example.com/*"])).unwrap();
    let e = ctb::authorize_write(&user, &o, &allow(&[])).unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "clustertrustbundles.certificates.k8s.io \"example.com:s:a\" is forbidden: user not permitted to attest for signerName \"example.com/s\""
    );
    // No signer, no check; GC-only updates skip it.
    ctb::authorize_write(&user, &bundle("plain", None, &ca_pem()), &allow(&[])).unwrap();
    let mut gc = o.clone();
    gc["metadata"]["finalizers"] = json!(["x"]);
    ctb::authorize_update(&user, &o, &gc, &allow(&[])).unwrap();
    assert!(ctb::authorize_update(
        &user,
        &o,
        &bundle("example.com:s:a", Some("example.com/s"), &ca_pem()),
        &allow(&[])
    )
    .is_err());
}

#[test]
fn conversion_and_field_selectors() {
    let o = bundle("example.com:s:a", Some("example.com/s"), "x");
    let v1 = ctb::from_internal(&o, "v1");
    assert_eq!(v1["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(
        ctb::field_value(&o, "spec.signerName").as_deref(),
        Some("example.com/s")
    );
    let mut extra = o.clone();
    extra["spec"]["bogus"] = json!(1);
    assert!(ctb::to_internal(extra, "v1")["spec"].get("bogus").is_none());
}
