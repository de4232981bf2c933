//! Authentication, RBAC, impersonation and access reviews.

mod common;

use common::{api_err, raw, server};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use podcert_testkit::rules::UserInfo;
use serde_json::json;

#[tokio::test]
async fn bad_or_missing_token_is_401() {
    let srv = server().await;
    // authentication filter (endpoints/filters/authentication.go): no authenticator accepted
    // the request → 401 with a Status reason Unauthorized.
    for token in [Some("not-a-token"), None] {
        let r = raw(&srv, "GET", "/api/v1/namespaces", token, "", "").await;
        assert_eq!(r.code, 401);
        assert_eq!(r.json()["reason"], "Unauthorized");
        assert_eq!(r.json()["message"], "Unauthorized");
    }
    let mut cfg = kube::Config::new(srv.url().parse().unwrap());
    cfg.auth_info.token = Some("wrong".to_string().into());
    let client = kube::Client::try_from(cfg).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(
        api_err(api.list(&Default::default()).await.unwrap_err()).0,
        401
    );
}

#[tokio::test]
async fn rbac_refuses_a_user_without_a_role_with_403() {
    let srv = server().await;
    let user = UserInfo::service_account("default", "nobody");
    let api: Api<ConfigMap> = Api::namespaced(srv.client_for(&user), "default");
    // endpoints/handlers/responsewriters/errors.go forbiddenMessage.
    let (code, reason, msg) = api_err(api.list(&Default::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        msg,
        "configmaps is forbidden: User \"system:serviceaccount:default:nobody\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: default}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [list, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-reader, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects: [{kind: ServiceAccount, name: nobody, namespace: default}]
"#,
    )
    .unwrap();
    api.list(&Default::default()).await.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let (code, _, msg) = api_err(api.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!(code, 403, "{msg}");
}

#[tokio::test]
async fn impersonation_lets_the_admin_act_as_a_node() {
    let srv = server().await;
    let r = raw(
        &srv,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        Some(&srv.admin_token()),
        "",
        "",
    )
    .await;
    assert_eq!(r.code, 200);
    // Through raw HTTP with Impersonate-User / Impersonate-Group headers.
    let addr = srv.url().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nImpersonate-User: system:node:n1\r\nImpersonate-Group: system:nodes\r\n\r\n",
        srv.admin_token()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    // The impersonated node has no RBAC grant for configmaps here.
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("User \\\"system:node:n1\\\" cannot list resource \\\"configmaps\\\""),
        "{out}"
    );

    // A non-admin may not impersonate (impersonation.go: verb impersonate on users).
    let user = UserInfo::service_account("default", "x");
    let token = srv.token_for(&user);
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nImpersonate-User: admin\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("cannot impersonate resource \\\"users\\\""),
        "{out}"
    );
}

#[tokio::test]
async fn access_reviews_answer_from_rbac() {
    let srv = server().await;
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: signer}
rules: [{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [example.com/s], verbs: [sign]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: signer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: signer}
subjects: [{kind: ServiceAccount, name: signer, namespace: sys}]
"#,
    )
    .unwrap();
    let signer = UserInfo::service_account("sys", "signer");
    let ssar = |name: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"spec": {"resourceAttributes": {
            "group": "certificates.k8s.io", "resource": "signers", "verb": "sign", "name": name}}}))
        .unwrap()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(srv.client_for(&signer));
    let yes = api
        .create(&PostParams::default(), &ssar("example.com/s"))
        .await
        .unwrap();
    assert!(yes.status.unwrap().allowed);
    let no = api
        .create(&PostParams::default(), &ssar("example.com/other"))
        .await
        .unwrap();
    assert!(!no.status.unwrap().allowed);

    let sar: SubjectAccessReview = serde_json::from_value(json!({"spec": {
        "user": "system:serviceaccount:sys:signer", "groups": ["system:serviceaccounts"],
        "resourceAttributes": {"group": "certificates.k8s.io", "resource": "signers", "verb": "sign", "name": "example.com/s"}}}))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(srv.admin_client());
    assert!(
        api.create(&PostParams::default(), &sar)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn discovery_documents_are_shaped_like_kube_apiserver() {
    let srv = server().await;
    let t = srv.admin_token();
    let apis = raw(&srv, "GET", "/apis", Some(&t), "", "").await.json();
    assert_eq!(apis["kind"], "APIGroupList");
    let certs = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "certificates.k8s.io")
        .unwrap();
    assert_eq!(certs["preferredVersion"]["version"], "v1");
    assert_eq!(
        certs["versions"][1]["groupVersion"],
        "certificates.k8s.io/v1beta1"
    );
    let rl = raw(
        &srv,
        "GET",
        "/apis/certificates.k8s.io/v1",
        Some(&t),
        "",
        "",
    )
    .await
    .json();
    let names: Vec<&str> = rl["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"podcertificaterequests")
            && names.contains(&"podcertificaterequests/status"),
        "{names:?}"
    );
    let core = raw(&srv, "GET", "/api/v1", Some(&t), "", "").await.json();
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    let version = raw(&srv, "GET", "/version", Some(&t), "", "").await.json();
    assert_eq!(version["gitVersion"], "v1.37.0");
    let client = srv.admin_client();
    let discovery = kube::Discovery::new(client).run().await.unwrap();
    assert!(discovery.has_group("certificates.k8s.io"));
}
