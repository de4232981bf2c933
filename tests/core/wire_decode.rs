//! Decoding every served version, YAML input, status write-back and each bad input's message.

use crate::fixtures::vectors::{object_of, vector};
use base64::Engine;
use podcert_core::request::wire::{self, DecodeError};
use podcert_core::request::{ApiVersion, ConditionType, Status};
use serde_json::{json, Value};
use time::macros::datetime;

fn b64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

fn decode_json(v: &Value) -> Result<wire::RequestObject, DecodeError> {
    wire::decode(serde_json::to_string(v).unwrap().as_bytes())
}

#[test]
fn each_version_decodes_into_the_internal_request() {
    let cases = [
        ("ED25519-pop-v1alpha1", ApiVersion::V1alpha1, false),
        ("ED25519-pop-v1beta1", ApiVersion::V1beta1, false),
        ("ED25519-stub-v1beta1", ApiVersion::V1beta1, true),
        ("ED25519-stub-v1", ApiVersion::V1, true),
    ];
    for (name, version, stub) in cases {
        let obj = object_of(&vector(name));
        let r = decode_json(&obj).unwrap().request;
        let spec = &obj["spec"];
        assert_eq!(r.api_version, version, "{name}");
        assert_eq!(r.name, obj["metadata"]["name"], "{name}");
        assert_eq!(r.namespace, "team-1");
        assert_eq!(r.uid, obj["metadata"]["uid"]);
        assert_eq!(r.resource_version.as_deref(), Some("100"));
        assert_eq!(
            r.creation_timestamp,
            Some(datetime!(2026-11-25 10:00:00 UTC))
        );
        assert_eq!(r.signer_name, spec["signerName"]);
        assert_eq!(r.pod_name, spec["podName"]);
        assert_eq!(r.pod_uid, spec["podUID"]);
        assert_eq!(r.service_account_name, spec["serviceAccountName"]);
        assert_eq!(r.service_account_uid, spec["serviceAccountUID"]);
        assert_eq!(r.node_name, spec["nodeName"]);
        assert_eq!(r.node_uid, spec["nodeUID"]);
        assert_eq!(r.max_expiration_seconds, 86400);
        assert_eq!(r.terminal, None);
        if stub {
            assert_eq!(r.stub_pkcs10_request, Some(b64(&spec["stubPKCS10Request"])));
            assert_eq!(r.pkix_public_key, None);
        } else {
            assert_eq!(r.pkix_public_key, Some(b64(&spec["pkixPublicKey"])));
            assert_eq!(r.proof_of_possession, Some(b64(&spec["proofOfPossession"])));
            assert_eq!(r.stub_pkcs10_request, None);
        }
    }
}

#[test]
fn user_annotations_are_read_from_v1beta1() {
    let r = decode_json(&object_of(&vector("unknown-user-annotation")))
        .unwrap()
        .request;
    assert_eq!(
        r.unverified_user_annotations
            .get("evil.example.com/grant-admin")
            .map(String::as_str),
        Some("true")
    );
}

#[test]
fn fields_a_version_does_not_define_are_ignored() {
    // v1 has no pkix carrier; v1alpha1 has neither the stub nor user annotations.
    let mut v1 = object_of(&vector("ED25519-stub-v1"));
    v1["spec"]["pkixPublicKey"] = json!("AAAA");
    assert_eq!(decode_json(&v1).unwrap().request.pkix_public_key, None);

    let mut alpha = object_of(&vector("ED25519-pop-v1alpha1"));
    alpha["spec"]["stubPKCS10Request"] = json!("AAAA");
    alpha["spec"]["unverifiedUserAnnotations"] = json!({"a.example/b": "c"});
    let r = decode_json(&alpha).unwrap().request;
    assert_eq!(r.stub_pkcs10_request, None);
    assert!(r.unverified_user_annotations.is_empty());
}

#[test]
fn max_expiration_defaults_to_a_day_and_is_kept_when_set() {
    let mut obj = object_of(&vector("ED25519-pop-v1beta1"));
    obj["spec"]
        .as_object_mut()
        .unwrap()
        .remove("maxExpirationSeconds");
    assert_eq!(
        decode_json(&obj).unwrap().request.max_expiration_seconds,
        86400
    );
    let short = object_of(&vector("max-expiration-3600"));
    assert_eq!(
        decode_json(&short).unwrap().request.max_expiration_seconds,
        3600
    );
}

#[test]
fn yaml_input_decodes_like_json() {
    for name in ["RSA4096-pop-v1beta1", "ECDSAP521-stub-v1"] {
        let obj = object_of(&vector(name));
        let yaml = serde_saphyr::to_string(&obj).unwrap();
        let from_yaml = wire::decode(yaml.as_bytes()).unwrap();
        let from_json = decode_json(&obj).unwrap();
        assert_eq!(from_yaml, from_json, "{name}");
    }
}

#[test]
fn yaml_block_scalars_with_line_breaks_in_base64_decode() {
    let obj = object_of(&vector("ED25519-pop-v1beta1"));
    let pkix = obj["spec"]["pkixPublicKey"].as_str().unwrap();
    let (a, b) = pkix.split_at(20);
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1beta1\nkind: PodCertificateRequest\n\
         metadata: {{name: r, namespace: ns}}\n\
         spec:\n  signerName: s.example/x\n  podName: p\n  podUID: u\n  serviceAccountName: sa\n  \
         serviceAccountUID: sau\n  nodeName: n\n  nodeUID: nu\n  pkixPublicKey: |\n    {a}\n    {b}\n"
    );
    let r = wire::decode(yaml.as_bytes()).unwrap().request;
    assert_eq!(r.pkix_public_key, Some(b64(&json!(pkix))));
}

#[test]
fn terminal_comes_from_an_existing_true_condition() {
    let obj = object_of(&vector("ED25519-pop-v1beta1"));
    for (ty, status, want) in [
        ("Issued", "True", Some(ConditionType::Issued)),
        ("Denied", "True", Some(ConditionType::Denied)),
        ("Failed", "True", Some(ConditionType::Failed)),
        ("Denied", "False", None),
        ("SomethingElse", "True", None),
    ] {
        let mut o = obj.clone();
        o["status"] = json!({"conditions": [{"type": ty, "status": status, "reason": "R",
            "message": "", "lastTransitionTime": "2026-11-25T10:00:00Z"}]});
        assert_eq!(
            decode_json(&o).unwrap().request.terminal,
            want,
            "{ty}/{status}"
        );
    }
}

fn issued_status() -> Status {
    Status {
        condition: ConditionType::Issued,
        reason: "Issued".into(),
        message: "issued by test".into(),
        certificate_chain: Some(
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        ),
        not_before: Some(datetime!(2026-11-25 09:59:00 UTC)),
        not_after: Some(datetime!(2026-11-26 09:59:00.999 UTC)),
        begin_refresh_at: Some(datetime!(2026-11-25 21:59:00 UTC)),
    }
}

#[test]
fn with_status_keeps_unknown_fields_and_sets_the_wire_status() {
    let mut obj = object_of(&vector("ED25519-pop-v1beta1"));
    obj["metadata"]["generation"] = json!(3);
    obj["metadata"]["labels"] = json!({"app": "x"});
    obj["spec"]["someFutureField"] = json!({"nested": [1, 2, 3]});
    obj["topLevelExtension"] = json!("kept");
    obj["status"] = json!({"conditions": [], "unknownStatusField": 1});
    let decoded = decode_json(&obj).unwrap();
    assert_eq!(decoded.generation(), Some(3));
    let now = datetime!(2026-11-25 10:00:05.5 +02:00);
    let out = wire::with_status(&decoded.raw, &issued_status(), now);

    let mut without_status = out.clone();
    without_status.as_object_mut().unwrap().remove("status");
    let mut expected = obj.clone();
    expected.as_object_mut().unwrap().remove("status");
    assert_eq!(
        without_status, expected,
        "everything but status is untouched"
    );

    assert_eq!(
        out["status"],
        json!({
            "conditions": [{
                "type": "Issued", "status": "True", "observedGeneration": 3,
                "lastTransitionTime": "2026-11-25T08:00:05Z",
                "reason": "Issued", "message": "issued by test"
            }],
            "certificateChain": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
            "notBefore": "2026-11-25T09:59:00Z",
            "beginRefreshAt": "2026-11-25T21:59:00Z",
            "notAfter": "2026-11-26T09:59:00Z"
        })
    );
    assert_eq!(
        out["status"],
        wire::status_json(&issued_status(), Some(3), now)
    );
    // The written object decodes again, now terminal.
    assert_eq!(
        wire::from_value(out).unwrap().request.terminal,
        Some(ConditionType::Issued)
    );
}

#[test]
fn denied_and_failed_carry_no_chain_or_times_and_no_generation_when_absent() {
    for cond in [ConditionType::Denied, ConditionType::Failed] {
        let status = Status {
            condition: cond,
            reason: "UnsupportedKeyType".into(),
            ..issued_status()
        };
        let v = wire::status_json(&status, None, datetime!(2026-11-25 10:00:00 UTC));
        assert_eq!(
            v,
            json!({"conditions": [{"type": cond.as_str(), "status": "True",
                "lastTransitionTime": "2026-11-25T10:00:00Z",
                "reason": "UnsupportedKeyType", "message": "issued by test"}]})
        );
    }
}

#[test]
fn overlong_messages_are_cut_to_the_apiserver_limit_on_a_char_boundary() {
    let status = Status {
        message: "é".repeat(20_000),
        ..issued_status()
    };
    let v = wire::status_json(&status, None, datetime!(2026-11-25 10:00:00 UTC));
    let msg = v["conditions"][0]["message"].as_str().unwrap();
    assert_eq!(msg.len(), wire::MAX_CONDITION_MESSAGE_BYTES);
}

#[test]
fn times_are_rfc3339_utc_whole_seconds() {
    assert_eq!(
        wire::format_time(datetime!(2026-11-25 10:00:00.999999 UTC)),
        "2026-11-25T10:00:00Z"
    );
    assert_eq!(
        wire::format_time(datetime!(2026-11-25 01:00:00 +05:00)),
        "2026-11-24T20:00:00Z"
    );
    assert_eq!(
        wire::parse_time("2026-11-25T10:00:00+01:00").unwrap(),
        datetime!(2026-11-25 09:00:00 UTC)
    );
    assert!(wire::parse_time("yesterday").is_err());
}

// --- bad input -----------------------------------------------------------------------------------

fn err_of(input: &[u8]) -> DecodeError {
    let e = wire::decode(input).unwrap_err();
    assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    e
}

fn err_of_value(v: &Value) -> String {
    let e = decode_json(v).unwrap_err();
    assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    e.to_string()
}

#[test]
fn not_json_or_yaml_is_reported() {
    for input in [
        &b"{\"kind\": "[..],
        b"a: b: c",
        b"\xff\xfe\x00garbage: [",
        b"[1, 2",
    ] {
        let e = err_of(input);
        assert!(
            matches!(e, DecodeError::NotJsonOrYaml(_)),
            "{input:?}: {e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("input is neither JSON nor YAML: "));
    }
}

#[test]
fn non_objects_are_reported() {
    assert_eq!(
        err_of(b"[]").to_string(),
        "expected a PodCertificateRequest object, got a list"
    );
    assert_eq!(
        err_of(b"just a sentence").to_string(),
        "expected a PodCertificateRequest object, got a string"
    );
    assert!(matches!(err_of(b""), DecodeError::NotAnObject(_)));
    assert!(matches!(
        err_of(b"---\na: 1\n---\nb: 2\n"),
        DecodeError::NotJsonOrYaml(_)
    ));
}

#[test]
fn wrong_kind_and_version_are_reported() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(
        err_of_value(&cm),
        "expected kind PodCertificateRequest, got ConfigMap"
    );

    let mut obj = object_of(&vector("ED25519-pop-v1beta1"));
    for bad in ["certificates.k8s.io/v2", "v1", "example.com/v1beta1"] {
        obj["apiVersion"] = json!(bad);
        assert_eq!(
            err_of_value(&obj),
            format!(
                "unsupported apiVersion \"{bad}\"; supported: certificates.k8s.io/v1alpha1, \
                 certificates.k8s.io/v1beta1, certificates.k8s.io/v1"
            )
        );
    }
    obj.as_object_mut().unwrap().remove("kind");
    assert_eq!(err_of_value(&obj), "missing required field kind");
}

#[test]
fn missing_required_fields_are_named() {
    let base = object_of(&vector("ED25519-pop-v1beta1"));
    for (section, field, path) in [
        ("spec", "podUID", "spec.podUID"),
        ("spec", "signerName", "spec.signerName"),
        ("spec", "serviceAccountName", "spec.serviceAccountName"),
        ("spec", "nodeUID", "spec.nodeUID"),
        ("metadata", "namespace", "metadata.namespace"),
        ("metadata", "name", "metadata.name"),
    ] {
        let mut o = base.clone();
        o[section].as_object_mut().unwrap().remove(field);
        assert_eq!(err_of_value(&o), format!("missing required field {path}"));
        // An empty string is as good as missing.
        let mut o = base.clone();
        o[section][field] = json!("");
        assert_eq!(err_of_value(&o), format!("missing required field {path}"));
    }
    let mut o = base.clone();
    o.as_object_mut().unwrap().remove("spec");
    assert_eq!(err_of_value(&o), "missing required field spec");
}

#[test]
fn invalid_base64_names_the_field() {
    let base = object_of(&vector("ED25519-stub-v1"));
    let stub = base["spec"]["stubPKCS10Request"]
        .as_str()
        .unwrap()
        .to_string();
    let mut o = base.clone();
    o["spec"]["stubPKCS10Request"] = json!(&stub[..stub.len() - 3]);
    let msg = err_of_value(&o);
    assert!(
        msg.starts_with("spec.stubPKCS10Request is not valid base64: "),
        "{msg}"
    );

    let base = object_of(&vector("ED25519-pop-v1beta1"));
    let mut o = base.clone();
    o["spec"]["pkixPublicKey"] = json!("MCowBQYDK2VwAyEA*LIls94Y");
    assert!(err_of_value(&o).starts_with("spec.pkixPublicKey is not valid base64: "));
    let mut o = base.clone();
    o["spec"]["proofOfPossession"] = json!("AQID=");
    assert!(err_of_value(&o).starts_with("spec.proofOfPossession is not valid base64: "));
    // Go's StdEncoding requires padding.
    let mut o = base;
    o["spec"]["proofOfPossession"] = json!("AQI");
    assert!(err_of_value(&o).starts_with("spec.proofOfPossession is not valid base64: "));
}

#[test]
fn wrong_types_and_times_name_their_section() {
    let base = object_of(&vector("ED25519-pop-v1beta1"));
    let mut o = base.clone();
    o["spec"]["podName"] = json!(5);
    let msg = err_of_value(&o);
    assert!(
        msg.starts_with("spec is invalid: invalid type: integer `5`"),
        "{msg}"
    );

    let mut o = base;
    o["metadata"]["creationTimestamp"] = json!("last tuesday");
    let msg = err_of_value(&o);
    assert!(
        msg.starts_with("metadata.creationTimestamp is invalid: "),
        "{msg}"
    );
}

#[test]
fn yaml_plain_scalars_resolve_as_yaml_1_2_core() {
    // As with serde_yaml 0.9: YAML 1.1 booleans, leading-zero and underscored numbers stay
    // strings (what a user meant in metadata or an unknown field).
    let mut yaml = serde_saphyr::to_string(&object_of(&vector("ED25519-pop-v1beta1"))).unwrap();
    yaml.push_str("extra: {a: yes, b: 0755, c: 1_000, d: true, e: 12, f: null, g: ~}\n");
    let got = wire::decode(yaml.as_bytes()).unwrap();
    assert_eq!(
        got.raw["extra"],
        json!({"a": "yes", "b": "0755", "c": "1_000", "d": true, "e": 12, "f": null, "g": null})
    );
}

#[test]
fn duplicate_keys_in_yaml_are_refused() {
    let e = err_of(b"kind: PodCertificateRequest\nkind: ConfigMap\n");
    assert!(matches!(e, DecodeError::NotJsonOrYaml(_)), "{e:?}");
}

#[test]
fn oversize_and_adversarial_yaml_is_refused() {
    const N: usize = 4 * 1024 * 1024;
    let e = err_of(&vec![b' '; N + 1]);
    assert_eq!(
        e.to_string(),
        format!("input is {} bytes; at most 4194304 (4 MiB) are read", N + 1)
    );
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let mut aliases = String::from("a: &a [x, y]\nb: [");
    while aliases.len() < N - 8 {
        aliases.push_str("*a,");
    }
    aliases.push_str("*a]\n");
    for (name, input) in [
        ("unmatched brackets", vec![b'['; N]),
        ("unmatched braces", b"{a: ".repeat(N / 4)),
        (
            "deep nesting",
            [&b"[".repeat(N / 2)[..], &b"]".repeat(N / 2)[..]].concat(),
        ),
        ("deep block nesting", {
            let mut s = Vec::new();
            for i in 0..2000 {
                s.extend(std::iter::repeat_n(b' ', i));
                s.extend_from_slice(b"- \n");
            }
            s
        }),
        ("billion laughs", laughs.into_bytes()),
        ("many aliases", aliases.into_bytes()),
    ] {
        let started = std::time::Instant::now();
        let e = err_of(&input);
        eprintln!("{name}: {:?}: {e}", started.elapsed());
    }
    // A long scalar is simply decided (here: not an object).
    let long = [b"\"".as_slice(), &vec![b'a'; N - 2], b"\""].concat();
    assert!(matches!(err_of(&long), DecodeError::NotAnObject(_)));
}
