//! What a signer's policy reads about a request's pod: the pod itself (one GET per request,
//! metadata only, for signers with pod labels, a podSelector or Service names) and the
//! Services (one metadata-and-selector watch for the process, started when the first signer
//! with `dnsNames.fromServices` asks, so a deployment without that mode never lists Services
//! and its RBAC need not allow it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tracing::warn;

use crate::tasks::Tasks;
use podcert_core::policy::{PodFacts, PodInfo, ServiceInfo, SignerConfig};
use podcert_core::request::Request;

/// The process's pod and Service reader (cheap to clone).
#[derive(Clone)]
pub struct PodLookup {
    client: kube::Client,
    tasks: Tasks,
    services: Arc<OnceLock<ServiceCache>>,
}

struct ServiceCache {
    store: Store<Service>,
    synced: Arc<AtomicBool>,
}

/// What was read for one request, owned (it may cross into a blocking task).
#[derive(Debug, Clone, Default)]
pub struct PodData {
    /// `None`: not read (the policy does not need it).
    pod: Option<Option<PodInfo>>,
    /// The Services of the request's namespace; `None`: not needed, or not synced yet.
    pub services: Option<Vec<ServiceInfo>>,
}

impl PodData {
    pub fn pod_facts(&self) -> PodFacts<'_> {
        match &self.pod {
            None => PodFacts::Unknown,
            Some(None) => PodFacts::NotFound,
            Some(Some(p)) => PodFacts::Found(p),
        }
    }
}

impl PodLookup {
    pub fn new(client: kube::Client, tasks: Tasks) -> Self {
        PodLookup {
            client,
            tasks,
            services: Arc::new(OnceLock::new()),
        }
    }

    /// Reads what `config` needs for `req` (nothing for a policy that reads no pod).
    pub async fn read(&self, config: &SignerConfig, req: &Request) -> Result<PodData, kube::Error> {
        if !config.needs_pod() {
            return Ok(PodData::default());
        }
        let pod = self.pod(&req.namespace, &req.pod_name).await?;
        let services = config
            .services
            .as_ref()
            .and_then(|_| self.services(&req.namespace));
        Ok(PodData {
            pod: Some(pod),
            services,
        })
    }

    /// The pod's UID and labels, straight from the API (a cache could hold an earlier pod of
    /// the same name); `None` when it does not exist.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.get_metadata_opt(name).await? {
            None => Ok(None),
            Some(p) => Ok(Some(PodInfo {
                uid: p.metadata.uid.unwrap_or_default(),
                labels: p.metadata.labels.unwrap_or_default(),
            })),
        }
    }

    /// The Services of `namespace` once the watch has synced (starting it on first use).
    fn services(&self, namespace: &str) -> Option<Vec<ServiceInfo>> {
        let cache = self
            .services
            .get_or_init(|| spawn_services(self.client.clone(), &self.tasks));
        if !cache.synced.load(Ordering::Acquire) {
            return None;
        }
        Some(
            cache
                .store
                .state()
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
                .map(|s| ServiceInfo {
                    namespace: namespace.to_string(),
                    name: s.metadata.name.clone().unwrap_or_default(),
                    selector: s.spec.as_ref().and_then(|sp| sp.selector.clone()),
                })
                .collect(),
        )
    }
}

fn spawn_services(client: kube::Client, tasks: &Tasks) -> ServiceCache {
    let api: Api<Service> = Api::all(client);
    let (reader, writer) = reflector::store();
    let synced = Arc::new(AtomicBool::new(false));
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|s| {
                // Only names and selectors are read; drop the rest to keep the cache small.
                let selector: Option<BTreeMap<String, String>> =
                    s.spec.as_ref().and_then(|sp| sp.selector.clone());
                s.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
                    selector,
                    ..Default::default()
                });
                s.status = None;
                s.metadata.annotations = None;
                s.metadata.labels = None;
                s.metadata.managed_fields = None;
            }),
    );
    let flag = synced.clone();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "watching services failed; retrying"),
            }
        }
    });
    ServiceCache {
        store: reader,
        synced,
    }
}
