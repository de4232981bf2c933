//! `podcert-signer run` end to end: the real binary, under the chart's RBAC, against the API
//! emulator over HTTPS, through the real kube client.

mod e2e;

use std::time::Duration;

use e2e::*;
use kube::api::{Api, DynamicObject, ListParams};
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};

const WAIT: Duration = Duration::from_secs(30);

async fn server(version: KubeVersion) -> TestServer {
    TestServer::start(ServerConfig {
        version,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_every_key_type_and_both_carriers_and_publishes_the_bundle() {
    let server = server(KubeVersion::V1_37).await;
    prepare(&server, &["team-0", "team-1"]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &["--ca-memory", "--leader-election=false"],
    );
    signer.wait_ready(WAIT).await;

    // A 1.37 server serves v1beta1 (pkix + proof from 1.35 kubelets, stub from 1.36) and v1.
    let mut created = Vec::new();
    for v in vectors() {
        let n = v["name"].as_str().unwrap();
        let version = v["object"]["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        if version == "v1alpha1"
            || !matches!(
                v["expect"].as_str(),
                Some("Issued" | "Denied" | "NoForgedNames")
            )
        {
            continue;
        }
        let (ns, name) = create_vector(&server, &v, &n.to_lowercase()).await;
        created.push((version, ns, name, v["expect"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        created.len(),
        23,
        "6 key types x 3 carriers/versions, 2 PSS salt-32, forged names, annotation, 1 h"
    );
    for (version, ns, name, expect) in &created {
        let obj = wait_terminal(&server, version, ns, name, WAIT).await;
        let (cond, reason) = condition(&obj);
        match expect.as_str() {
            "Denied" => assert_eq!(
                (cond.as_str(), reason.as_str()),
                ("Denied", "UnknownUserAnnotation")
            ),
            _ => assert_eq!(cond, "Issued", "{name}: {obj}"),
        }
    }

    // The trust bundle is published under the name the apiserver requires, in v1.
    let ctbs: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    let ctb = ctbs
        .get("acceptance.podcert.test:spiffe:live")
        .await
        .unwrap();
    assert_eq!(ctb.data["spec"]["signerName"], SIGNER);
    assert!(ctb.data["spec"]["trustBundle"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(
        ctb.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("podcert.dev/trust-bundle")
            .map(String::as_str),
        Some("live")
    );

    // One status write per request, and Events recorded for the decisions.
    let writes = server.store().writes();
    for (_, ns, name, _) in &created {
        let n = writes
            .iter()
            .filter(|w| {
                w.resource == "podcertificaterequests"
                    && w.subresource == "status"
                    && &w.namespace == ns
                    && &w.name == name
            })
            .count();
        assert_eq!(n, 1, "{ns}/{name} had {n} status writes");
    }
    let events: Api<DynamicObject> = Api::all_with(
        server.admin_client(),
        &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "events.k8s.io",
            "v1",
            "Event",
        )),
    );
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items.iter().any(|e| e.data["reason"] == "Issued"),
        "no Issued event"
    );
    assert!(
        evs.items
            .iter()
            .any(|e| e.data["reason"] == "UnknownUserAnnotation"),
        "no Denied event"
    );

    let (code, metrics) = signer.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!("podcert_issued_total{{signer=\"{SIGNER}\"}}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"UnknownUserAnnotation\""),
        "{metrics}"
    );
    assert!(signer
        .logs()
        .contains("PodCertificateRequest version chosen by discovery"));
    assert!(
        signer.logs().contains("v1beta1"),
        "a 1.37 server with beta on is watched in v1beta1"
    );
    server.shutdown().await;
}
