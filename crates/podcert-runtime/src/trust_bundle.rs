//! Publishes the trust anchors as ClusterTrustBundles (and optionally ConfigMaps) and keeps
//! them in sync: re-created when deleted, updated when the anchors change, retried on failure.
//! Two bundles per signer, labelled as SPIFFE Filesystem Delivery describes: `preview` with
//! every root at once, `live` (what most pods mount, and the ConfigMaps) with a root that does
//! not sign yet only after the preview time ([`crate::bundle_preview`]). Only the leader writes.

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

use podcert_k8s::trust_bundle::{Canary, TrustBundleConfig};

use crate::bundle_preview::{roots, PreviewTracker};
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
    // What this process has made live; a new term starts from what the live bundle holds.
    let mut tracker: Option<PreviewTracker> = None;
    loop {
        let mut wait = cfg.resync;
        if !*leader.borrow() {
            tracker = None;
        } else if let Some(bundle) = ca.bundle() {
            // Abandoned when leadership ends mid-way (see `leader::while_leading`).
            let sync = sync_once(&client, &resource, &cfg, &ca, &bundle, &mut tracker);
            match crate::leader::while_leading(&leader, sync).await {
                // Leadership ended: the next leader publishes.
                None => {}
                Some(Ok(next_change)) => {
                    failures = 0;
                    // The rotation holds a prepared CA back until its root is out (in preview
                    // now, live after the preview time, which is shorter than the delay).
                    ca.mark_published(&bundle.pem);
                    if let Some(at) = next_change {
                        wait = wait.min(at.saturating_duration_since(std::time::Instant::now()));
                    }
                }
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    errors.inc();
                    wait = Duration::from_millis(500u64 << failures.min(5)).min(cfg.resync);
                    warn!(error = %e, bundle = %cfg.bundle_name(), "publishing the trust bundle failed; retrying");
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

/// Writes both bundles and the ConfigMaps; returns when a root waiting in preview goes live.
async fn sync_once(
    client: &kube::Client,
    resource: &ApiResource,
    cfg: &TrustBundleConfig,
    ca: &CaHandle,
    bundle: &BundleContent,
    tracker: &mut Option<PreviewTracker>,
) -> Result<Option<std::time::Instant>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let live_name = cfg.bundle_name();
    let all = roots(&bundle.pem);
    let signing: Vec<Vec<u8>> = ca
        .get()
        .map(|c| c.trust_anchors_der().to_vec())
        .unwrap_or_default();
    let live_before = match tracker {
        Some(_) => None,
        // A new term: what is live already stays live; a root it lacks waits from now.
        None => api.get_opt(&live_name).await?.map(|o| {
            roots(o.data["spec"]["trustBundle"].as_str().unwrap_or_default())
                .into_iter()
                .map(|r| r.der)
                .collect::<Vec<_>>()
        }),
    };
    let split = tracker.get_or_insert_with(PreviewTracker::default).split(
        &all,
        &signing,
        live_before.as_deref(),
        cfg.preview.unwrap_or_default(),
        std::time::Instant::now(),
    );
    // Preview first: a root is never live before it is in preview.
    sync_bundle(
        &api,
        resource,
        cfg,
        &cfg.preview_name(),
        Canary::Preview,
        &split.preview,
        &BTreeMap::new(),
    )
    .await?;
    sync_bundle(
        &api,
        resource,
        cfg,
        &live_name,
        Canary::Live,
        &split.live,
        &bundle.annotations,
    )
    .await?;
    for ns in &cfg.configmap_namespaces {
        sync_configmap(client, ns, cfg, &split.live).await?;
    }
    Ok(split.next_change)
}

/// Creates or updates one ClusterTrustBundle; `annotations` are ours (others are kept).
async fn sync_bundle(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    cfg: &TrustBundleConfig,
    name: &str,
    canary: Canary,
    pem: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let labels = cfg.labels_for(canary);
    let spec = json!({ "signerName": cfg.signer_name, "trustBundle": pem });
    match api.get_opt(name).await? {
        None => {
            let mut obj = DynamicObject::new(name, resource);
            obj.metadata.labels = Some(labels);
            if !annotations.is_empty() {
                obj.metadata.annotations = Some(annotations.clone());
            }
            obj.data = json!({ "spec": spec });
            api.create(&PostParams::default(), &obj).await?;
            info!(bundle = %name, canarying = canary.as_str(), version = %resource.api_version, "published the trust bundle");
        }
        Some(mut existing) => {
            let current_labels = existing.metadata.labels.clone().unwrap_or_default();
            let labels_ok = labels.iter().all(|(k, v)| current_labels.get(k) == Some(v));
            // Only our own annotations are set; others (a rotation request) are kept.
            let current_annotations = existing.metadata.annotations.clone().unwrap_or_default();
            let annotations_ok = annotations
                .iter()
                .all(|(k, v)| current_annotations.get(k) == Some(v));
            if existing.data.get("spec") != Some(&spec) || !labels_ok || !annotations_ok {
                let mut merged = current_labels;
                merged.extend(labels);
                existing.metadata.labels = Some(merged);
                let mut merged = current_annotations;
                merged.extend(annotations.clone());
                existing.metadata.annotations = Some(merged);
                existing.data["spec"] = spec;
                api.replace(name, &PostParams::default(), &existing).await?;
                info!(bundle = %name, canarying = canary.as_str(), "updated the trust bundle");
            }
        }
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
