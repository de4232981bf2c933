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
use tracing::warn;

use crate::tasks::Tasks;

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

/// Starts the watch in `tasks`.
pub fn spawn(client: kube::Client, tasks: &Tasks) -> NamespaceLabels {
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
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!(error = %e, "watching namespaces failed; retrying");
            }
        }
    });
    NamespaceLabels { store: reader }
}
