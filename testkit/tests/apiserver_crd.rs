//! CustomResourceDefinitions: creating one serves its resource, with status, discovery and
//! schema pruning; deleting it stops serving.

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
