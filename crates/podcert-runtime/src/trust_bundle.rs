//! Publishes the trust anchors as a ClusterTrustBundle (and optionally ConfigMaps) and keeps
//! them in sync: re-created when deleted, updated when the anchors change, retried on failure.
//! Only the leader writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::discovery::ApiResource;
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use podcert_k8s::trust_bundle::TrustBundleConfig;

use crate::ca_backend::{BundleContent, CaHandle};

/// Runs until `shutdown` is cancelled; every failed attempt counts in `errors`.
pub async fn run(
    client: kube::Client,
    resource: ApiResource,
    cfg: TrustBundleConfig,
    ca: Arc<CaHandle>,
    mut leader: watch::Receiver<bool>,
    errors: Counter,
    shutdown: CancellationToken,
) {
    let mut ca_changes = ca.subscribe();
    let mut failures = 0u32;
    loop {
        let mut wait = cfg.resync;
        if *leader.borrow() {
            if let Some(bundle) = ca.bundle() {
                // Abandoned when leadership ends mid-way (see `leader::while_leading`).
                let sync = sync_once(&client, &resource, &cfg, &bundle);
                match crate::leader::while_leading(&leader, sync).await {
                    // Leadership ended: the next leader publishes.
                    None => {}
                    Some(Ok(())) => {
                        failures = 0;
                        // The rotation holds a prepared CA back until its root is out.
                        ca.mark_published(&bundle.pem);
                    }
                    Some(Err(e)) => {
                        failures = failures.saturating_add(1);
                        errors.inc();
                        wait = Duration::from_millis(500u64 << failures.min(5)).min(cfg.resync);
                        warn!(error = %e, bundle = %cfg.bundle_name(), "publishing the trust bundle failed; retrying");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ca_changes.changed() => {}
            _ = leader.changed() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn sync_once(
    client: &kube::Client,
    resource: &ApiResource,
    cfg: &TrustBundleConfig,
    bundle: &BundleContent,
) -> Result<(), kube::Error> {
    let pem = bundle.pem.as_str();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let name = cfg.bundle_name();
    let labels = cfg.all_labels();
    let spec = json!({ "signerName": cfg.signer_name, "trustBundle": pem });
    match api.get_opt(&name).await? {
        None => {
            let mut obj = DynamicObject::new(&name, resource);
            obj.metadata.labels = Some(labels);
            obj.metadata.annotations = Some(bundle.annotations.clone());
            obj.data = json!({ "spec": spec });
            api.create(&PostParams::default(), &obj).await?;
            info!(bundle = %name, version = %resource.api_version, "published the trust bundle");
        }
        Some(mut existing) => {
            let current_labels = existing.metadata.labels.clone().unwrap_or_default();
            let labels_ok = labels.iter().all(|(k, v)| current_labels.get(k) == Some(v));
            // Only our own annotations are set; others (a rotation request) are kept.
            let current_annotations = existing.metadata.annotations.clone().unwrap_or_default();
            let annotations_ok = bundle
                .annotations
                .iter()
                .all(|(k, v)| current_annotations.get(k) == Some(v));
            if existing.data.get("spec") != Some(&spec) || !labels_ok || !annotations_ok {
                let mut merged = current_labels;
                merged.extend(labels);
                existing.metadata.labels = Some(merged);
                let mut merged = current_annotations;
                merged.extend(bundle.annotations.clone());
                existing.metadata.annotations = Some(merged);
                existing.data["spec"] = spec;
                api.replace(&name, &PostParams::default(), &existing)
                    .await?;
                info!(bundle = %name, "updated the trust bundle");
            }
        }
    }
    for ns in &cfg.configmap_namespaces {
        sync_configmap(client, ns, cfg, pem).await?;
    }
    Ok(())
}

async fn sync_configmap(
    client: &kube::Client,
    ns: &str,
    cfg: &TrustBundleConfig,
    pem: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let data = BTreeMap::from([("ca.crt".to_string(), pem.to_string())]);
    match api.get_opt(&cfg.configmap_name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(cfg.configmap_name.clone()),
                    labels: Some(cfg.all_labels()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
            info!(namespace = ns, name = %cfg.configmap_name, "published the trust bundle ConfigMap");
        }
        Some(mut cm) if cm.data.as_ref() != Some(&data) => {
            cm.data = Some(data);
            api.replace(&cfg.configmap_name, &PostParams::default(), &cm)
                .await?;
            info!(namespace = ns, name = %cfg.configmap_name, "updated the trust bundle ConfigMap");
        }
        Some(_) => {}
    }
    Ok(())
}
