//! Namespace labels for namespace selectors: a metadata-only watch of Namespaces (names and
//! labels, no specs), shared by every signer of the process.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;
use tracing::warn;

/// Read access to the cached namespace labels.
#[derive(Clone)]
pub struct NamespaceLabels {
    store: Store<PartialObjectMeta<Namespace>>,
}

impl NamespaceLabels {
    /// The labels of `namespace`, if the cache has seen it.
    pub fn get(&self, namespace: &str) -> Option<Arc<BTreeMap<String, String>>> {
        self.store
            .get(&ObjectRef::new(namespace))
            .map(|ns| Arc::new(ns.metadata.labels.clone().unwrap_or_default()))
    }
}

/// Starts the watch; it runs until `shutdown`.
pub fn spawn(client: kube::Client, mut shutdown: watch::Receiver<bool>) -> NamespaceLabels {
    // An Api over PartialObjectMeta makes metadata-only requests.
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|ns| {
                // Only names and labels are read; drop the rest to keep the cache small.
                ns.metadata.annotations = None;
                ns.metadata.managed_fields = None;
                ns.metadata.owner_references = None;
                ns.metadata.finalizers = None;
            }),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!(error = %e, "watching namespaces failed; retrying"),
                    None => return,
                },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
    NamespaceLabels { store: reader }
}
