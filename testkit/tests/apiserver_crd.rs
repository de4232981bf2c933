//! CustomResourceDefinitions: creating one serves its resource, with status, discovery,
//! schema pruning, defaulting, OpenAPI and CEL validation; deleting it stops serving.

mod common;

use common::{api_err, server};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [size]
            properties: {size: {type: integer}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn widgets(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client, "default", &ar)
}

#[tokio::test]
async fn a_crd_serves_its_resource() {
    let srv = server().await;
    let api = widgets(srv.admin_client());
    assert_eq!(
        api_err(api.list(&Default::default()).await.unwrap_err()).0,
        404
    );
    srv.load_yaml(CRD).unwrap();
    let crd = srv
        .store()
        .get(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            "widgets.example.com",
        )
        .unwrap();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);

    let discovery = kube::Discovery::new(srv.admin_client())
        .run()
        .await
        .unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 3, "colour": "red"}, "status": {"ready": true}
    }))
    .unwrap();
    let made = api.create(&PostParams::default(), &w).await.unwrap();
    // Unknown fields are pruned; status is dropped on create when /status exists.
    assert_eq!(made.data["spec"], json!({"size": 3}));
    assert!(made.data.get("status").is_none());
    assert_eq!(made.metadata.generation, Some(1));

    let st = api
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["ready"], true);
    assert_eq!(st.data["spec"]["size"], 3);
    assert_eq!(st.metadata.generation, Some(1));
    let spec = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));

    // apiextensions-apiserver validation: a missing required field is 422 Invalid.
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {}
    }))
    .unwrap();
    let (code, reason, msg) = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(msg.contains("spec.size: Required value"), "{msg}");

    let crds: Api<DynamicObject> = Api::all_with(
        srv.admin_client(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    assert_eq!(api_err(api.get("w1").await.unwrap_err()).0, 404);
    assert!(srv.store().list("example.com", "widgets").is_empty());
}

/// A CRD exercising every schema check the emulator enforces.
const GADGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [name]
            x-kubernetes-validations:
            - rule: has(self.a) != has(self.b)
              message: exactly one of a or b
            properties:
              name: {type: string, minLength: 2, maxLength: 5, pattern: '^[a-z]+$'}
              mode: {type: string, enum: [Fast, Slow], default: Slow}
              count: {type: integer, minimum: 1, maximum: 10, default: 3}
              ratio: {type: number, exclusiveMaximum: true, maximum: 1}
              flag: {type: boolean}
              a: {type: string}
              b: {type: string, nullable: true}
              dropped: {type: string}
              tags:
                type: array
                maxItems: 2
                items: {type: string, enum: [x, "y"]}
                x-kubernetes-validations:
                - rule: size(self) > 0
              labels:
                type: object
                maxProperties: 2
                additionalProperties: {type: integer}
              nested:
                type: object
                default: {}
                properties:
                  on: {type: boolean, default: true}
                  level: {type: string, default: low}
          status:
            type: object
            properties:
              when: {type: string, format: date-time}
              phase: {type: string, enum: [Up, Down]}
"#;

fn gadgets(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    );
    Api::namespaced_with(client, "default", &ar)
}

fn gadget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// Code, reason, message and `(field, reason)` of each cause of an API error.
fn refusal(e: kube::Error) -> (u16, String, String, Vec<(String, String)>) {
    match e {
        kube::Error::Api(s) => {
            let causes = s
                .details
                .map(|d| d.causes.into_iter().map(|c| (c.field, c.reason)).collect())
                .unwrap_or_default();
            (s.code, s.reason, s.message, causes)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pair(field: &str, reason: &str) -> (String, String) {
    (field.to_string(), reason.to_string())
}

/// What upstream appends instead of running CEL rules after a blocking schema error.
const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The error list of an Invalid message: a type, enum, length, count or required failure
/// stops CEL evaluation, which upstream reports as one more error.
fn listed(first: &str, cause_reason: &str) -> String {
    let blocking = matches!(
        cause_reason,
        "FieldValueTypeInvalid"
            | "FieldValueNotSupported"
            | "FieldValueTooLong"
            | "FieldValueTooMany"
            | "FieldValueRequired"
    );
    if blocking {
        format!("[{first}, {NOT_CHECKED}]")
    } else {
        first.to_string()
    }
}

/// Creates `spec` and asserts a 422 whose message lists exactly `expected` and whose first
/// cause is `cause`.
async fn refused(
    api: &Api<DynamicObject>,
    spec: serde_json::Value,
    expected: &str,
    cause: (&str, &str),
) {
    let e = api
        .create(&PostParams::default(), &gadget("bad", spec))
        .await
        .unwrap_err();
    let (code, reason, msg, causes) = refusal(e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
    assert_eq!(
        msg,
        format!(
            "Gadget.example.com \"bad\" is invalid: {}",
            listed(expected, cause.1)
        ),
    );
    assert_eq!(causes[0], pair(cause.0, cause.1), "{msg}");
}

#[tokio::test]
async fn every_schema_rule_is_refused_with_upstream_messages() {
    let srv = server().await;
    srv.load_yaml(GADGETS).unwrap();
    let api = gadgets(srv.admin_client());
    let base = json!({"name": "ab", "a": "x"});
    let with = |k: &str, v: serde_json::Value| {
        let mut s = base.clone();
        s[k] = v;
        s
    };
    refused(&api, with("name", json!(7)),
        "spec.name: Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"",
        ("spec.name", "FieldValueTypeInvalid")).await;
    refused(
        &api,
        with("name", json!("a")),
        "spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long",
        ("spec.name", "FieldValueInvalid"),
    )
    .await;
    refused(
        &api,
        with("name", json!("abcdef")),
        "spec.name: Too long: may not be more than 5 bytes",
        ("spec.name", "FieldValueTooLong"),
    )
    .await;
    refused(
        &api,
        with("name", json!("AB")),
        "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'",
        ("spec.name", "FieldValueInvalid"),
    )
    .await;
    refused(
        &api,
        with("mode", json!("Medium")),
        "spec.mode: Unsupported value: \"Medium\": supported values: \"Fast\", \"Slow\"",
        ("spec.mode", "FieldValueNotSupported"),
    )
    .await;
    refused(
        &api,
        with("count", json!(11)),
        "spec.count: Invalid value: 11: spec.count in body should be less than or equal to 10",
        ("spec.count", "FieldValueInvalid"),
    )
    .await;
    refused(
        &api,
        with("count", json!(0)),
        "spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1",
        ("spec.count", "FieldValueInvalid"),
    )
    .await;
    refused(
        &api,
        with("ratio", json!(1.0)),
        "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        ("spec.ratio", "FieldValueInvalid"),
    )
    .await;
    refused(&api, with("flag", json!("yes")),
        "spec.flag: Invalid value: \"string\": spec.flag in body must be of type boolean: \"string\"",
        ("spec.flag", "FieldValueTypeInvalid")).await;
    refused(
        &api,
        with("tags", json!(["x", "y", "x"])),
        "spec.tags: Too many: 3: must have at most 2 items",
        ("spec.tags", "FieldValueTooMany"),
    )
    .await;
    refused(
        &api,
        with("tags", json!(["z"])),
        "spec.tags[0]: Unsupported value: \"z\": supported values: \"x\", \"y\"",
        ("spec.tags[0]", "FieldValueNotSupported"),
    )
    .await;
    refused(&api, with("labels", json!({"k": "v"})),
        "spec.labels.k: Invalid value: \"string\": spec.labels.k in body must be of type integer: \"string\"",
        ("spec.labels.k", "FieldValueTypeInvalid")).await;
    refused(
        &api,
        with("labels", json!({"a": 1, "b": 2, "c": 3})),
        "spec.labels: Too many: 3: must have at most 2 items",
        ("spec.labels", "FieldValueTooMany"),
    )
    .await;
    refused(
        &api,
        json!({"a": "x"}),
        "spec.name: Required value",
        ("spec.name", "FieldValueRequired"),
    )
    .await;
    // CEL: the rule's message at the rule's field; objects and arrays omit the value.
    refused(
        &api,
        json!({"name": "ab", "a": "x", "b": "y"}),
        "spec: Invalid value: exactly one of a or b",
        ("spec", "FieldValueInvalid"),
    )
    .await;
    refused(
        &api,
        with("tags", json!([])),
        "spec.tags: Invalid value: failed rule: size(self) > 0",
        ("spec.tags", "FieldValueInvalid"),
    )
    .await;
    // Null: dropped when not nullable (then has(self.a) is false), kept when nullable.
    refused(
        &api,
        json!({"name": "ab", "a": null}),
        "spec: Invalid value: exactly one of a or b",
        ("spec", "FieldValueInvalid"),
    )
    .await;
    let made = api
        .create(
            &PostParams::default(),
            &gadget(
                "g",
                json!({"name": "ab", "a": "x", "b": null, "dropped": null, "count": null}),
            ),
        )
        .await
        .unwrap();
    assert!(made.data["spec"].get("dropped").is_none());
    assert_eq!(made.data["spec"]["b"], serde_json::Value::Null);
    // A null with a default becomes the default.
    assert_eq!(made.data["spec"]["count"], 3);
}

#[tokio::test]
async fn defaults_are_applied_on_write_and_read_and_status_is_validated_on_status_writes() {
    let srv = server().await;
    srv.load_yaml(GADGETS).unwrap();
    let api = gadgets(srv.admin_client());
    let made = api
        .create(
            &PostParams::default(),
            &gadget(
                "g",
                json!({"name": "ab", "a": "x", "nested": {"on": false}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(made.data["spec"]["mode"], "Slow");
    assert_eq!(made.data["spec"]["count"], 3);
    // A present object gets its missing fields defaulted, keeping what was given.
    assert_eq!(
        made.data["spec"]["nested"],
        json!({"on": false, "level": "low"})
    );
    let got = api.get("g").await.unwrap();
    assert_eq!(got.data["spec"], made.data["spec"]);

    // Status: validated on /status writes with status.* paths.
    let e = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"when": "tuesday", "phase": "Sideways"}})),
        )
        .await
        .unwrap_err();
    let (code, _, msg, causes) = refusal(e);
    assert_eq!(code, 422);
    assert!(msg.contains("status.when: Invalid value: \"tuesday\": status.when in body must be of type date-time: \"tuesday\""), "{msg}");
    assert!(
        msg.contains("status.phase: Unsupported value: \"Sideways\""),
        "{msg}"
    );
    assert_eq!(
        causes,
        [
            pair("status.when", "FieldValueTypeInvalid"),
            pair("status.phase", "FieldValueNotSupported"),
            pair("<nil>", "FieldValueInvalid")
        ]
    );
    let st = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"when": "2026-01-02T03:04:05Z", "phase": "Up"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Up");
    // A main write is validated on spec.
    let e = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"count": 99}})),
        )
        .await
        .unwrap_err();
    assert!(refusal(e).2.contains("spec.count: Invalid value: 99"));

    // Defaults added to the CRD later show on objects already stored, on read.
    srv.load_yaml(&GADGETS.replace(
        "flag: {type: boolean}",
        "flag: {type: boolean, default: true}",
    ))
    .unwrap();
    assert_eq!(api.get("g").await.unwrap().data["spec"]["flag"], true);
    let all = api.list(&Default::default()).await.unwrap();
    assert_eq!(all.items[0].data["spec"]["flag"], true);
}

fn signers(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("podcert.dev", "v1alpha1", "PodCertificateSigner"),
        "podcertificatesigners",
    );
    Api::all_with(client, &ar)
}

fn signer(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "podcert.dev/v1alpha1", "kind": "PodCertificateSigner",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

#[tokio::test]
async fn our_podcertificatesigner_crd_is_enforced_as_a_real_cluster_would() {
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/podcertificatesigner.yaml"
    ))
    .unwrap();
    let srv = server().await;
    srv.load_yaml(&crd).unwrap();
    let api = signers(srv.admin_client());
    let valid = json!({"signerName": "example.com/spiffe", "trustDomain": "cluster.local",
                       "ca": {"secret": {"name": "ca"}}, "colour": "blue"});
    let made = api
        .create(&PostParams::default(), &signer("s1", valid.clone()))
        .await
        .unwrap();
    let spec = &made.data["spec"];
    assert!(spec.get("colour").is_none(), "unknown fields are pruned");
    assert_eq!(spec["spiffeID"], "ns/{namespace}/sa/{serviceAccount}");
    assert_eq!(spec["maxLifetime"], "24h");
    assert_eq!(spec["backdate"], "60s");
    assert_eq!(spec["refreshFraction"], 0.5);
    assert_eq!(
        spec["trustBundle"],
        json!({"enabled": true, "suffix": "live", "configMapName": "podcert-trust-bundle"})
    );
    assert_eq!(
        spec["ca"]["secret"],
        json!({"name": "ca", "bootstrap": false, "keyType": "ECDSAP256", "validity": "365d",
               "rotateAtFraction": 0.5, "propagationDelay": "1h"})
    );
    assert_eq!(api.get("s1").await.unwrap().data["spec"], *spec);

    let with = |k: &str, v: serde_json::Value| {
        let mut s = valid.clone();
        s[k] = v;
        s
    };
    let cases = [
        (with("refreshFraction", json!(2.0)),
         "spec.refreshFraction: Invalid value: 2: spec.refreshFraction in body should be less than or equal to 0.95",
         ("spec.refreshFraction", "FieldValueInvalid")),
        (with("keyTypes", json!([])),
         "spec.keyTypes: Invalid value: keyTypes must not be empty; omit it to allow every type",
         ("spec.keyTypes", "FieldValueInvalid")),
        (with("keyTypes", json!(["RSA2048"])),
         "spec.keyTypes[0]: Unsupported value: \"RSA2048\": supported values: \"ED25519\", \"ECDSAP256\", \"ECDSAP384\", \"ECDSAP521\", \"RSA3072\", \"RSA4096\", \"MLDSA44\", \"MLDSA65\", \"MLDSA87\"",
         ("spec.keyTypes[0]", "FieldValueNotSupported")),
        (with("ca", json!({"secret": {"name": "ca"}, "files": {"certFile": "/c", "keyFile": "/k"}})),
         "spec.ca: Invalid value: ca needs exactly one of secret or files",
         ("spec.ca", "FieldValueInvalid")),
        (with("signerName", json!("example.com")),
         "spec.signerName: Invalid value: \"example.com\": signerName must be <DNS domain>/<path>, e.g. example.com/spiffe",
         ("spec.signerName", "FieldValueInvalid")),
        (with("maxLifetime", json!("1 day")),
         "spec.maxLifetime: Invalid value: \"1 day\": spec.maxLifetime in body should match '^([0-9]+(ms|s|m|h|d))+$'",
         ("spec.maxLifetime", "FieldValueInvalid")),
    ];
    for (spec, expected, (field, cause_reason)) in cases {
        let e = api
            .create(&PostParams::default(), &signer("bad", spec))
            .await
            .unwrap_err();
        let (code, reason, msg, causes) = refusal(e);
        assert_eq!((code, reason.as_str()), (422, "Invalid"));
        assert_eq!(
            msg,
            format!(
                "PodCertificateSigner.podcert.dev \"bad\" is invalid: {}",
                listed(expected, cause_reason)
            )
        );
        assert_eq!(causes[0], pair(field, cause_reason));
    }
    // Nullable fields written as null (as Option::None may serialise) are accepted.
    let nulls = with("keyTypes", json!(null));
    api.create(&PostParams::default(), &signer("s2", nulls))
        .await
        .unwrap();
}
