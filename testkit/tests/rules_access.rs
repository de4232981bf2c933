//! RBAC decisions and messages, and the NodeRestriction rules for PodCertificateRequests.

use podcert_testkit::rules::{node_restriction, rbac, Attributes, Lookup, UserInfo};
use serde_json::{json, Value};

#[derive(Default)]
struct Store(Vec<(String, String, Option<String>, Value)>);

impl Store {
    fn put(&mut self, group: &str, resource: &str, obj: Value) {
        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
        self.0.push((group.into(), resource.into(), ns, obj));
    }
}

impl Lookup for Store {
    fn get(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.0
            .iter()
            .find(|(g, r, n, o)| {
                g == group
                    && r == resource
                    && n.as_deref() == namespace
                    && o["metadata"]["name"] == name
            })
            .map(|e| e.3.clone())
    }
    fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        self.0
            .iter()
            .filter(|(g, r, _, _)| g == group && r == resource)
            .map(|e| e.3.clone())
            .collect()
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
        path: None,
    }
}

fn path(verb: &str, p: &str) -> Attributes {
    Attributes {
        path: Some(p.into()),
        ..attrs(verb, "", "", "", "", "")
    }
}

fn rbac_store() -> Store {
    let mut s = Store::default();
    s.put(RBAC, "clusterroles", json!({ "metadata": { "name": "signer" }, "rules": [
        { "apiGroups": ["certificates.k8s.io"], "resources": ["podcertificaterequests"], "verbs": ["get", "list", "watch"] },
        { "apiGroups": ["certificates.k8s.io"], "resources": ["podcertificaterequests/status"], "verbs": ["update", "patch"] },
        { "apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["example.com/*"], "verbs": ["sign"] },
        { "nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"] },
    ]}));
    s.put(
        RBAC,
        "clusterrolebindings",
        json!({ "metadata": { "name": "signer" },
        "roleRef": { "apiGroup": RBAC, "kind": "ClusterRole", "name": "signer" },
        "subjects": [{ "kind": "ServiceAccount", "name": "podcert", "namespace": "system" }] }),
    );
    s.put(
        RBAC,
        "roles",
        json!({ "metadata": { "name": "leases", "namespace": "system" }, "rules": [
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"] },
            { "apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"] },
        ]}),
    );
    s.put(RBAC, "rolebindings", json!({ "metadata": { "name": "leases", "namespace": "system" },
        "roleRef": { "apiGroup": RBAC, "kind": "Role", "name": "leases" },
        "subjects": [{ "kind": "ServiceAccount", "name": "podcert" }, { "kind": "Group", "name": "ops" }, { "kind": "User", "name": "alice" }] }));
    s.put(
        RBAC,
        "rolebindings",
        json!({ "metadata": { "name": "view", "namespace": "team" },
        "roleRef": { "apiGroup": RBAC, "kind": "ClusterRole", "name": "signer" },
        "subjects": [{ "kind": "User", "name": "bob" }] }),
    );
    s
}

#[test]
fn rbac_rules_match_like_the_authorizer() {
    let s = rbac_store();
    let sa = UserInfo::service_account("system", "podcert");
    let ok = |u: &UserInfo, a: &Attributes| rbac::authorize(u, a, &s);
    assert!(ok(
        &sa,
        &attrs(
            "watch",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "",
            ""
        )
    ));
    assert!(ok(
        &sa,
        &attrs(
            "patch",
            "certificates.k8s.io",
            "podcertificaterequests",
            "status",
            "team",
            "r"
        )
    ));
    assert!(!ok(
        &sa,
        &attrs(
            "create",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "team",
            ""
        )
    ));
    assert!(!ok(
        &sa,
        &attrs(
            "update",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "team",
            "r"
        )
    ));
    assert!(ok(
        &sa,
        &attrs(
            "sign",
            "certificates.k8s.io",
            "signers",
            "",
            "",
            "example.com/*"
        )
    ));
    assert!(!ok(
        &sa,
        &attrs(
            "sign",
            "certificates.k8s.io",
            "signers",
            "",
            "",
            "example.com/x"
        )
    ));
    assert!(!ok(
        &sa,
        &attrs("sign", "", "signers", "", "", "example.com/*")
    ));
    assert!(ok(&sa, &path("get", "/healthz")));
    assert!(ok(&sa, &path("get", "/api/v1")));
    assert!(!ok(&sa, &path("get", "/apis")));
    assert!(!ok(&sa, &path("post", "/healthz")));
    // Role in its namespace only; SA subject without namespace defaults to the binding's.
    assert!(ok(
        &sa,
        &attrs("delete", "coordination.k8s.io", "leases", "", "system", "l")
    ));
    assert!(!ok(
        &sa,
        &attrs("delete", "coordination.k8s.io", "leases", "", "other", "l")
    ));
    assert!(ok(
        &sa,
        &attrs("get", "apps", "deployments", "scale", "system", "d")
    ));
    assert!(!ok(
        &sa,
        &attrs("get", "apps", "deployments", "", "system", "d")
    ));
    let ops = UserInfo {
        username: "carol".into(),
        uid: String::new(),
        groups: vec!["ops".into()],
    };
    assert!(ok(
        &ops,
        &attrs("get", "coordination.k8s.io", "leases", "", "system", "l")
    ));
    let alice = UserInfo {
        username: "alice".into(),
        uid: String::new(),
        groups: vec![],
    };
    assert!(ok(
        &alice,
        &attrs("get", "coordination.k8s.io", "leases", "", "system", "l")
    ));
    // A RoleBinding to a ClusterRole grants it in that namespace only.
    let bob = UserInfo {
        username: "bob".into(),
        uid: String::new(),
        groups: vec![],
    };
    assert!(ok(
        &bob,
        &attrs(
            "list",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "team",
            ""
        )
    ));
    assert!(!ok(
        &bob,
        &attrs(
            "list",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "",
            ""
        )
    ));
    // Another namespace's service account of the same name is someone else.
    assert!(!ok(
        &UserInfo::service_account("other", "podcert"),
        &attrs(
            "watch",
            "certificates.k8s.io",
            "podcertificaterequests",
            "",
            "",
            ""
        )
    ));
    assert!(ok(
        &UserInfo::admin(),
        &attrs("delete", "", "nodes", "", "", "n")
    ));
}

#[test]
fn forbidden_messages_like_the_apiserver() {
    let u = UserInfo::service_account("team", "app");
    assert_eq!(
        rbac::forbidden_message(&u, &attrs("get", "", "pods", "", "ns", "p")),
        "User \"system:serviceaccount:team:app\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
    );
    assert_eq!(
        rbac::forbidden_message(&u, &attrs("list", "certificates.k8s.io", "clustertrustbundles", "", "", "")),
        "User \"system:serviceaccount:team:app\" cannot list resource \"clustertrustbundles\" in API group \"certificates.k8s.io\" at the cluster scope"
    );
    assert_eq!(
        rbac::forbidden_message(&u, &attrs("update", "certificates.k8s.io", "podcertificaterequests", "status", "ns", "r")),
        "User \"system:serviceaccount:team:app\" cannot update resource \"podcertificaterequests/status\" in API group \"certificates.k8s.io\" in the namespace \"ns\""
    );
    assert_eq!(
        rbac::forbidden_message(&u, &path("get", "/metrics")),
        "User \"system:serviceaccount:team:app\" cannot get path \"/metrics\""
    );

    let e = rbac::forbidden_error(&u, &attrs("get", "", "pods", "", "ns", "p"));
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: User \"system:serviceaccount:team:app\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
    );
    let e = rbac::forbidden_error(
        &u,
        &attrs("list", "coordination.k8s.io", "leases", "", "ns", ""),
    );
    assert!(
        e.message
            .starts_with("leases.coordination.k8s.io is forbidden: User"),
        "{}",
        e.message
    );
    let e = rbac::forbidden_error(&u, &path("get", "/metrics"));
    assert_eq!(
        e.message,
        "forbidden: User \"system:serviceaccount:team:app\" cannot get path \"/metrics\""
    );
}

fn node_store() -> Store {
    let mut s = Store::default();
    s.put(
        "",
        "nodes",
        json!({ "metadata": { "name": "node-a", "uid": "node-uid" } }),
    );
    s.put(
        "",
        "nodes",
        json!({ "metadata": { "name": "node-b", "uid": "node-b-uid" } }),
    );
    s.put(
        "",
        "serviceaccounts",
        json!({ "metadata": { "name": "sa-1", "namespace": "team", "uid": "sa-uid" } }),
    );
    s.put("", "pods", json!({ "metadata": { "name": "pod-1", "namespace": "team", "uid": "pod-uid" },
        "spec": { "nodeName": "node-a", "serviceAccountName": "sa-1", "volumes": [
            { "name": "creds", "projected": { "sources": [{ "podCertificate": { "signerName": "example.com/s", "keyType": "ED25519" } }] } }
        ] } }));
    s.put(
        "",
        "pods",
        json!({ "metadata": { "name": "static", "namespace": "team", "uid": "static-uid",
        "annotations": { "kubernetes.io/config.mirror": "x" } },
        "spec": { "nodeName": "node-a", "serviceAccountName": "sa-1" } }),
    );
    s
}

fn pcr(f: impl FnOnce(&mut Value)) -> Value {
    let mut o = json!({ "metadata": { "generateName": "req-", "namespace": "team" }, "spec": {
        "signerName": "example.com/s", "podName": "pod-1", "podUID": "pod-uid",
        "serviceAccountName": "sa-1", "serviceAccountUID": "sa-uid", "nodeName": "node-a", "nodeUID": "node-uid" } });
    f(&mut o);
    o
}

#[test]
fn node_may_request_only_for_its_own_pods() {
    let s = node_store();
    let node = UserInfo::node("node-a");
    node_restriction::admit_pcr_create(&node, &pcr(|_| {}), &s).unwrap();
    // Non-node users are not restricted by this plugin.
    node_restriction::admit_pcr_create(
        &UserInfo::admin(),
        &pcr(|o| o["spec"]["nodeName"] = json!("x")),
        &s,
    )
    .unwrap();

    let e = node_restriction::admit_pcr_create(&UserInfo::node("node-b"), &pcr(|_| {}), &s)
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "podcertificaterequests.certificates.k8s.io \"req-\" is forbidden: PodCertificateRequest.Spec.NodeName=\"node-a\", which is not the requesting node \"node-b\""
    );

    // admission.go returns the informer-lag cases (UID mismatches, lister NotFound wrapped
    // with %w) as plain errors, which ErrorToAPIStatus answers as 500 with no reason and
    // the bare message; the rest are admission.NewForbidden.
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (pcr(|o| o["spec"]["nodeUID"] = json!("old")), 500, "", "PodCertificateRequest for pod \"team/pod-1\" names node UID \"old\", inconsistent with the running node (\"node-uid\")"),
        (pcr(|o| o["spec"]["podName"] = json!("gone")), 500, "", "while retrieving pod \"team/gone\" named in the PodCertificateRequest: pod \"gone\" not found"),
        (pcr(|o| o["spec"]["podUID"] = json!("old")), 500, "", "PodCertificateRequest for pod \"team/pod-1\" contains pod UID (\"old\") which differs from running pod \"pod-uid\""),
        (pcr(|o| { o["spec"]["podName"] = json!("static"); o["spec"]["podUID"] = json!("static-uid"); }), 403, "Forbidden", "podcertificaterequests.certificates.k8s.io \"req-\" is forbidden: pod \"team/static\" is a mirror pod"),
        (pcr(|o| o["spec"]["serviceAccountName"] = json!("default")), 403, "Forbidden", "podcertificaterequests.certificates.k8s.io \"req-\" is forbidden: PodCertificateRequest for pod \"team/pod-1\" contains serviceAccountName (\"default\") that differs from running pod (\"sa-1\")"),
        (pcr(|o| o["spec"]["serviceAccountUID"] = json!("old")), 500, "", "PodCertificateRequest for pod \"team/pod-1\" names service account UID \"old\", which differs from the running service account (\"sa-uid\")"),
    ];
    for (obj, code, reason, msg) in cases {
        let e = node_restriction::admit_pcr_create(&node, &obj, &s).unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str(), e.message.as_str()),
            (code, reason, msg)
        );
    }

    // A pod bound elsewhere.
    let mut s2 = node_store();
    s2.0.retain(|(_, r, _, o)| !(r == "pods" && o["metadata"]["name"] == "pod-1"));
    s2.put(
        "",
        "pods",
        json!({ "metadata": { "name": "pod-1", "namespace": "team", "uid": "pod-uid" },
        "spec": { "nodeName": "node-b", "serviceAccountName": "sa-1" } }),
    );
    let e = node_restriction::admit_pcr_create(&node, &pcr(|_| {}), &s2).unwrap_err();
    assert_eq!(
        e.message,
        "podcertificaterequests.certificates.k8s.io \"req-\" is forbidden: pod \"team/pod-1\" is not running on node \"node-a\" named in the PodCertificateRequest"
    );

    let nameless = UserInfo::node("");
    let e = node_restriction::admit_pcr_create(&nameless, &pcr(|_| {}), &s).unwrap_err();
    assert!(
        e.message
            .ends_with("could not determine node from user \"system:node:\""),
        "{}",
        e.message
    );
}

#[test]
fn release_1_37_also_requires_the_volume() {
    let s = node_store();
    let node = UserInfo::node("node-a");
    let opts = node_restriction::PcrAdmission {
        require_pod_certificate_volume: true,
    };
    node_restriction::admit_pcr_create_with(&node, &pcr(|_| {}), &s, opts).unwrap();
    let other = pcr(|o| o["spec"]["signerName"] = json!("other.example/s"));
    node_restriction::admit_pcr_create(&node, &other, &s).unwrap();
    let e = node_restriction::admit_pcr_create_with(&node, &other, &s, opts).unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "podcertificaterequests.certificates.k8s.io \"req-\" is forbidden: pod \"team/pod-1\" does not mount a podCertificate projected volume for signer \"other.example/s\""
    );
}

#[test]
fn aggregated_cluster_roles_and_denial_reasons() {
    let mut s = Store::default();
    s.put(RBAC, "clusterroles", json!({ "metadata": { "name": "agg" },
        "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "podcert.io/aggregate": "true" } }] }, "rules": [] }));
    s.put(
        RBAC,
        "clusterroles",
        json!({ "metadata": { "name": "part", "labels": { "podcert.io/aggregate": "true" } },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }] }),
    );
    s.put(
        RBAC,
        "clusterroles",
        json!({ "metadata": { "name": "unlabelled" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }] }),
    );
    s.put(RBAC, "clusterrolebindings", json!({ "metadata": { "name": "agg" },
        "roleRef": { "apiGroup": RBAC, "kind": "ClusterRole", "name": "agg" }, "subjects": [{ "kind": "User", "name": "dan" }] }));
    s.put(RBAC, "clusterrolebindings", json!({ "metadata": { "name": "dangling" },
        "roleRef": { "apiGroup": RBAC, "kind": "ClusterRole", "name": "missing" }, "subjects": [{ "kind": "User", "name": "dan" }] }));
    let dan = UserInfo {
        username: "dan".into(),
        uid: String::new(),
        groups: vec![],
    };
    assert!(rbac::authorize(
        &dan,
        &attrs("get", "", "pods", "", "ns", "p"),
        &s
    ));
    let denied = attrs("get", "", "secrets", "", "ns", "s");
    let (ok, reason) = rbac::decide(&dan, &denied, &s);
    assert!(!ok);
    assert_eq!(
        reason,
        "RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found"
    );
    let e = rbac::forbidden_error_with_reason(&dan, &denied, &reason);
    assert_eq!(
        e.message,
        "secrets \"s\" is forbidden: User \"dan\" cannot get resource \"secrets\" in API group \"\" in the namespace \"ns\": RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found"
    );
}
