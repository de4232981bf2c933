//! CRUD through kube::Client, with the refusals kube-apiserver gives.

mod common;

use common::{api_err, raw, server};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn typed_crud_round_trip() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let mut got = api.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");
    got.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["x"], "y");
    assert_eq!(patched.data.as_ref().unwrap()["k"], "w");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    // Kubernetes: staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go NewNotFound.
    let (code, reason, msg) = api_err(api.get("a").await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (404, "NotFound", "configmaps \"a\" not found")
    );
}

#[tokio::test]
async fn dynamic_objects_and_generate_name() {
    let srv = server().await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let api: Api<DynamicObject> = Api::namespaced_with(srv.admin_client(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "req-"}, "data": {}
    }))
    .unwrap();
    let made = api.create(&PostParams::default(), &obj).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert_eq!(name.len(), 9);
    assert!(
        name[4..]
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    let list = api.list(&ListParams::default()).await.unwrap();
    assert!(list
        .items
        .iter()
        .any(|o| o.metadata.name.as_deref() == Some(name.as_str())));
}

#[tokio::test]
async fn create_of_existing_name_is_already_exists() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("dup"))
        .await
        .unwrap();
    // registry/generic/registry/store.go Create → storage.NewKeyExistsError → errors.NewAlreadyExists.
    let (code, reason, msg) = api_err(
        api.create(&PostParams::default(), &cm("dup"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    assert_eq!(reason, "AlreadyExists");
    assert_eq!(msg, "configmaps \"dup\" already exists");
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let first = api.create(&PostParams::default(), &cm("c")).await.unwrap();
    let mut newer = first.clone();
    newer.data = Some([("k".to_string(), "2".to_string())].into());
    api.replace("c", &PostParams::default(), &newer)
        .await
        .unwrap();
    // store.go GuaranteedUpdate: a mismatched resourceVersion → errors.NewConflict(..., OptimisticLockErrorMsg).
    let (code, reason, msg) = api_err(
        api.replace("c", &PostParams::default(), &first)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn not_found_body_is_a_status() {
    let srv = server().await;
    let r = raw(
        &srv,
        "GET",
        "/api/v1/namespaces/default/pods/nope",
        Some(&srv.admin_token()),
        "",
        "",
    )
    .await;
    assert_eq!(r.code, 404);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "kind": "pods"}, "code": 404})
    );
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_not_found() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "ghost");
    // plugin/pkg/admission/namespace/lifecycle: the namespace lookup fails with NotFound.
    let (code, _, msg) = api_err(
        api.create(&PostParams::default(), &cm("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (404, "namespaces \"ghost\" not found")
    );
}

#[tokio::test]
async fn invalid_names_are_refused() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    // apimachinery/pkg/api/validation/objectmeta.go ValidateObjectMeta with NameIsDNSSubdomain.
    let (code, reason, msg) = api_err(
        api.create(&PostParams::default(), &cm("Bad_Name"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(msg.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{msg}");
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    for (n, tier) in [("a", "fe"), ("b", "be"), ("c", "fe")] {
        let o: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": {"tier": tier}}}))
                .unwrap();
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=fe"))
                .await
                .unwrap()
        ),
        vec!["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (fe)"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            api.list(
                &ListParams::default()
                    .fields("metadata.name!=a")
                    .labels("tier")
            )
            .await
            .unwrap()
        ),
        vec!["b", "c"]
    );
    // ConfigMap registers no field-label conversion, so runtime.DefaultMetaV1FieldSelectorConversion
    // refuses every other label; handlers/get.go turns that into 400 BadRequest.
    let (code, reason, msg) = api_err(
        api.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (
            400,
            "BadRequest",
            "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        )
    );
}

#[tokio::test]
async fn pods_select_on_node_name() {
    let srv = server().await;
    let api: Api<Pod> = Api::namespaced(srv.admin_client(), "default");
    for (n, node) in [("p1", "n1"), ("p2", "n2")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": n},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
        api.create(&PostParams::default(), &p).await.unwrap();
    }
    let l = api
        .list(&ListParams::default().fields("spec.nodeName=n2"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].metadata.name.as_deref(), Some("p2"));
    assert_eq!(
        l.items[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents() {
    let srv = server().await;
    let client = srv.admin_client();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "tmp");
    api.create(&PostParams::default(), &cm("x")).await.unwrap();
    ns.delete("tmp", &DeleteParams::default()).await.unwrap();
    assert!(srv
        .store()
        .get("", "configmaps", Some("tmp"), "x")
        .is_none());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let o: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = api.get("f").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("f").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn owner_deletion_collects_dependents() {
    let srv = server().await;
    let client = srv.admin_client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "owner"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
    let pod = pods.create(&PostParams::default(), &p).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let dep: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": pod.metadata.uid.unwrap()}]}}))
        .unwrap();
    api.create(&PostParams::default(), &dep).await.unwrap();
    pods.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_err(api.get("dep").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn write_log_records_each_write() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("w")).await.unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    // A no-op patch writes nothing (GuaranteedUpdate skips identical objects).
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    let w = srv.store().writes();
    let mine: Vec<_> = w.iter().filter(|r| r.name == "w").collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].verb, "create");
    assert_eq!(mine[1].verb, "patch");
    assert_eq!(mine[1].username, "admin");
    assert_eq!(
        srv.store()
            .count_writes("", "configmaps", None, "default", "w"),
        2
    );
}

/// The namespace strategy's Canonicalize: every namespace carries kubernetes.io/metadata.name
/// with its own name, on create (generateName too) and after any update that drops or forges it.
#[tokio::test]
async fn namespaces_always_carry_their_name_label() {
    const KEY: &str = "kubernetes.io/metadata.name";
    let srv = server().await;
    let api: Api<Namespace> = Api::all(srv.admin_client());
    let label = |ns: &Namespace| {
        ns.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(KEY).cloned())
    };
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-x"}})).unwrap();
    let created = api.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(label(&created).as_deref(), Some("team-x"));
    let gen: Namespace =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = api.create(&PostParams::default(), &gen).await.unwrap();
    assert_eq!(label(&g), g.metadata.name);
    let forged = api
        .patch(
            "team-x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {KEY: "team-y", "env": "prod"}}})),
        )
        .await
        .unwrap();
    assert_eq!(label(&forged).as_deref(), Some("team-x"));
    assert_eq!(forged.metadata.labels.as_ref().unwrap()["env"], "prod");
    let mut dropped = api.get("team-x").await.unwrap();
    dropped.metadata.labels = None;
    let replaced = api
        .replace("team-x", &PostParams::default(), &dropped)
        .await
        .unwrap();
    assert_eq!(label(&replaced).as_deref(), Some("team-x"));
}

/// Services (issue 18: the signer reads their selectors): DNS-1035 names, validated selectors
/// and ports, ClusterIP defaults; and labels validated on every kind, as ValidateObjectMeta does.
#[tokio::test]
async fn services_and_labels_are_validated_like_the_apiserver() {
    use k8s_openapi::api::core::v1::Service;
    let srv = server().await;
    let svcs: Api<Service> = Api::namespaced(srv.admin_client(), "default");
    let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).unwrap() };
    let s = svcs
        .create(
            &PostParams::default(),
            &svc(json!({"metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 443}]}})),
        )
        .await
        .unwrap();
    let spec = s.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.is_some_and(|ip| ip.starts_with("10.96.")));
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    for (body, field) in [
        (
            json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 1}]}}),
            "metadata.name",
        ),
        (
            json!({"metadata": {"name": "a"}, "spec": {"selector": {"app": "a/b"}, "ports": [{"port": 1}]}}),
            "spec.selector",
        ),
        (
            json!({"metadata": {"name": "b"}, "spec": {"selector": {"app": "b"}}}),
            "spec.ports",
        ),
    ] {
        let e = svcs
            .create(&PostParams::default(), &svc(body.clone()))
            .await
            .unwrap_err();
        let kube::Error::Api(s) = e else {
            panic!("{e}")
        };
        assert_eq!(s.code, 422, "{body}");
        let causes = s.details.unwrap().causes;
        assert_eq!(causes[0].field, field, "{body}");
    }
    // A headless Service needs no ports.
    svcs.create(
        &PostParams::default(),
        &svc(json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None"}})),
    )
    .await
    .unwrap();
    // A label value with a '/' is refused on a pod, at create and at update.
    let pods: Api<Pod> = Api::namespaced(srv.admin_client(), "default");
    let pod = |labels: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .unwrap()
    };
    let e = pods
        .create(&PostParams::default(), &pod(json!({"app": "a/b"})))
        .await
        .unwrap_err();
    assert_eq!(api_err(e).0, 422);
    pods.create(&PostParams::default(), &pod(json!({"app": "web"})))
        .await
        .unwrap();
    let e = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"bad/key/x": "v"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(e).0, 422);
}
