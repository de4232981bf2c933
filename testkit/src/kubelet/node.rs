//! One emulated kubelet: the pods of one node, one watch of the node's PodCertificateRequests
//! (field selector `spec.nodeName`), and the kubelet's state machine per pod
//! (pkg/kubelet/podcertificate/podcertificatemanager.go): create -> wait -> issued -> refresh,
//! with Denied/Failed permanent and a vanished request recreated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::api::{Api, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use rand::Rng;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::config::{KubeletConfig, PcrVersion};
use super::error::status_code;
use super::issuance::{check_issued, terminal_condition};
use super::keys::KubeletKey;
use super::objects::{self, PodInfo};
use super::pacer::Pacer;
use super::state::{Phase, PodState};
use super::Shared;

/// The longest pause between retries of a failed create (the kubelet's workqueue caps at ~16 min;
/// an emulator wants to notice recovery sooner).
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

type Key = (String, String);
type EventStream = std::pin::Pin<
    Box<dyn Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send>,
>;

/// A request created and not yet answered.
struct Outstanding {
    name: String,
    key: KubeletKey,
    acked: Instant,
    /// Invisible after this (kubelet clock) -> assume deleted and recreate.
    abandon_at: OffsetDateTime,
}

struct Slot {
    info: PodInfo,
    state: PodState,
    outstanding: Option<Outstanding>,
    creating: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    refresh_at: Option<OffsetDateTime>,
    issued_count: u32,
}

impl Slot {
    fn permanent(&self) -> bool {
        matches!(
            self.state.phase,
            Phase::Denied { .. } | Phase::Failed { .. } | Phase::Invalid { .. }
        )
    }
}

struct CreateOutcome {
    slot: usize,
    result: Result<(String, KubeletKey), String>,
    retryable: bool,
    acked: Instant,
}

pub(crate) struct NodeWorker {
    cfg: Arc<KubeletConfig>,
    client: Client,
    node: String,
    ar: ApiResource,
    slots: Vec<Slot>,
    /// Outstanding request (namespace, name) -> slot.
    by_request: HashMap<Key, usize>,
    /// The node's requests as last seen (an informer store).
    cache: HashMap<Key, Value>,
    /// The store being rebuilt by a watcher relist.
    relist: Option<HashMap<Key, Value>>,
    shared: Arc<Shared>,
    writes: Arc<Semaphore>,
    creates: JoinSet<()>,
    tx: mpsc::UnboundedSender<CreateOutcome>,
    rx: mpsc::UnboundedReceiver<CreateOutcome>,
}

impl NodeWorker {
    pub(crate) fn new(
        cfg: Arc<KubeletConfig>,
        client: Client,
        node: String,
        version: PcrVersion,
        pods: Vec<PodInfo>,
        shared: Arc<Shared>,
        writes: Arc<Semaphore>,
    ) -> Self {
        let slots = pods
            .into_iter()
            .map(|info| Slot {
                state: PodState {
                    namespace: info.namespace.clone(),
                    pod: info.pod.clone(),
                    node: info.node.clone(),
                    key_type: info.key_type,
                    phase: Phase::Pending,
                    requests_created: 0,
                    current_request: None,
                    last_latency: None,
                    last_error: None,
                },
                info,
                outstanding: None,
                creating: false,
                retry_at: None,
                backoff: Duration::from_millis(200),
                refresh_at: None,
                issued_count: 0,
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        NodeWorker {
            cfg,
            client,
            node,
            ar: objects::pcr_resource(version),
            slots,
            by_request: HashMap::new(),
            cache: HashMap::new(),
            relist: None,
            shared,
            writes,
            creates: JoinSet::new(),
            tx,
            rx,
        }
    }

    pub(crate) async fn run(mut self, mut cancel: tokio::sync::watch::Receiver<bool>) {
        let selector = format!("spec.nodeName={}", self.node);
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.ar);
        let mut events: Option<EventStream> = if self.cfg.watch {
            Some(Box::pin(
                watcher(all.clone(), watcher::Config::default().fields(&selector))
                    .default_backoff(),
            ))
        } else {
            None
        };
        // A real kubelet's informer has synced long before a pod needs its credential, so no
        // request is created until this node's watch has listed: otherwise the first
        // requests' latency would include the emulated kubelet's own watch set-up.
        while events.is_some() {
            tokio::select! {
                _ = cancel.changed() => return,
                ev = next_event(&mut events) => match ev {
                    Some(Ok(ev)) => {
                        let synced = matches!(ev, watcher::Event::InitDone);
                        self.on_event(ev);
                        if synced {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        if is_permanent_watch_error(&e) {
                            tracing::warn!(node = %self.node, error = %e, "cannot watch PodCertificateRequests; polling instead");
                            events = None;
                        }
                    }
                    None => events = None,
                },
            }
        }
        let mut ticker = tokio::time::interval(self.cfg.tick.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.changed() => break,
                Some(outcome) = self.rx.recv() => self.on_created(outcome),
                ev = next_event(&mut events) => match ev {
                    Some(Ok(ev)) => self.on_event(ev),
                    Some(Err(e)) => {
                        if is_permanent_watch_error(&e) {
                            tracing::warn!(node = %self.node, error = %e, "cannot watch PodCertificateRequests; polling instead");
                            events = None;
                        } else {
                            tracing::debug!(node = %self.node, error = %e, "watch interrupted; resuming");
                        }
                    }
                    None => events = None,
                },
                _ = ticker.tick() => {
                    if events.is_none() {
                        self.poll(&all, &selector).await;
                    }
                    self.on_tick();
                }
            }
        }
        self.creates.abort_all();
    }

    fn on_event(&mut self, ev: watcher::Event<DynamicObject>) {
        match ev {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let Some((key, v)) = keyed(obj) {
                    if let Some(r) = self.relist.as_mut() {
                        r.insert(key.clone(), v.clone());
                    }
                    self.cache.insert(key.clone(), v);
                    self.examine(&key);
                }
            }
            watcher::Event::InitDone => {
                if let Some(r) = self.relist.take() {
                    self.cache = r;
                }
            }
            watcher::Event::Apply(obj) => {
                if let Some((key, v)) = keyed(obj) {
                    self.cache.insert(key.clone(), v);
                    self.examine(&key);
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some((key, _)) = keyed(obj) {
                    self.cache.remove(&key);
                }
            }
        }
    }

    /// The polling fallback: the list replaces the store.
    async fn poll(&mut self, all: &Api<DynamicObject>, selector: &str) {
        match all.list(&ListParams::default().fields(selector)).await {
            Ok(list) => {
                self.cache = list.items.into_iter().filter_map(keyed).collect();
                let pending: Vec<Key> = self.by_request.keys().cloned().collect();
                for key in pending {
                    self.examine(&key);
                }
            }
            Err(e) => {
                tracing::debug!(node = %self.node, error = %e, "listing PodCertificateRequests failed")
            }
        }
    }

    /// Reacts to the cached state of an outstanding request.
    fn examine(&mut self, key: &Key) {
        let Some(&idx) = self.by_request.get(key) else {
            return;
        };
        let Some(status) = self.cache.get(key).and_then(|o| o.get("status")).cloned() else {
            return;
        };
        let Some((kind, reason, message)) = terminal_condition(&status) else {
            return;
        };
        self.by_request.remove(key);
        let jitter = random_duration(self.cfg.refresh_jitter);
        let out_dir = self.cfg.out_dir.clone();
        let slot = &mut self.slots[idx];
        let Some(out) = slot.outstanding.take() else {
            return;
        };
        slot.state.current_request = None;
        match kind.as_str() {
            "Issued" => match check_issued(&status, out.key.spki_der()) {
                Ok(iss) => {
                    let latency = out.acked.elapsed();
                    slot.issued_count += 1;
                    let refresh_at = iss.begin_refresh_at + jitter;
                    slot.refresh_at = Some(refresh_at);
                    slot.state.last_latency = Some(latency);
                    slot.state.phase = Phase::Issued {
                        not_after: iss.not_after,
                        refresh_at,
                        issued_count: slot.issued_count,
                    };
                    if let Some(dir) = out_dir {
                        let key_pem = out.key.private_key_pem();
                        if let Err(e) = super::bundle::write_bundle(
                            &dir,
                            &slot.info.namespace,
                            &slot.info.pod,
                            &key_pem,
                            &iss.chain_pem,
                        ) {
                            slot.state.last_error = Some(e.to_string());
                        }
                    }
                    self.shared.record_latency(out.acked, latency);
                }
                Err(e) => {
                    slot.state.phase = Phase::Invalid {
                        message: format!("request {}: {e}", out.name),
                    }
                }
            },
            "Denied" => slot.state.phase = Phase::Denied { reason, message },
            _ => slot.state.phase = Phase::Failed { reason, message },
        }
        self.publish(idx);
    }

    fn on_created(&mut self, outcome: CreateOutcome) {
        let idx = outcome.slot;
        let now = self.cfg.clock.now();
        let abandon = self.cfg.recreate_after + random_duration(self.cfg.recreate_jitter);
        let slot = &mut self.slots[idx];
        slot.creating = false;
        match outcome.result {
            Ok((name, key)) => {
                slot.backoff = Duration::from_millis(200);
                slot.state.requests_created += 1;
                slot.state.current_request = Some(name.clone());
                slot.outstanding = Some(Outstanding {
                    name: name.clone(),
                    key,
                    acked: outcome.acked,
                    abandon_at: now + abandon,
                });
                let cache_key = (slot.info.namespace.clone(), name);
                self.by_request.insert(cache_key.clone(), idx);
                self.publish(idx);
                // The watch may have delivered the answer before the create returned.
                self.examine(&cache_key);
            }
            Err(message) => {
                slot.state.last_error = Some(message);
                if outcome.retryable {
                    slot.retry_at = Some(Instant::now() + slot.backoff);
                    slot.backoff = (slot.backoff * 2).min(MAX_RETRY_BACKOFF);
                } else {
                    slot.retry_at = Some(Instant::now() + MAX_RETRY_BACKOFF);
                }
                self.publish(idx);
            }
        }
    }

    /// Timers: initial creates and retries, refreshes, recreation of vanished requests.
    fn on_tick(&mut self) {
        while self.creates.try_join_next().is_some() {}
        let now = self.cfg.clock.now();
        let instant = Instant::now();
        for idx in 0..self.slots.len() {
            let slot = &mut self.slots[idx];
            if slot.creating || slot.permanent() || slot.retry_at.is_some_and(|t| t > instant) {
                continue;
            }
            let due = match &slot.outstanding {
                // The deadline first: building the key allocates, and this runs for every
                // outstanding request on every tick.
                Some(out) if now >= out.abandon_at => {
                    let key = (slot.info.namespace.clone(), out.name.clone());
                    if !self.cache.contains_key(&key) {
                        // Invisible for too long: assume deleted, as the kubelet does.
                        self.by_request.remove(&key);
                        slot.outstanding = None;
                        true
                    } else {
                        false
                    }
                }
                Some(_) => false,
                None => match slot.state.phase {
                    Phase::Pending => true,
                    _ => slot.refresh_at.is_some_and(|t| now >= t),
                },
            };
            if due {
                self.start_create(idx);
            }
        }
    }

    fn start_create(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        slot.creating = true;
        slot.retry_at = None;
        let info = slot.info.clone();
        let cfg = self.cfg.clone();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &info.namespace, &self.ar);
        let version = self
            .ar
            .version
            .parse::<PcrVersion>()
            .unwrap_or(PcrVersion::V1);
        let writes = self.writes.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        self.creates.spawn(async move {
            let (result, retryable) =
                create_request(&cfg, &api, version, &info, writes, &shared.pacer).await;
            let _ = tx.send(CreateOutcome {
                slot: idx,
                result,
                retryable,
                acked: Instant::now(),
            });
        });
    }

    fn publish(&self, idx: usize) {
        let slot = &self.slots[idx];
        self.shared.publish(slot.info.index, slot.state.clone());
    }
}

/// Generates a key and creates one request. Returns the request name and key, or an error
/// message and whether retrying could help.
async fn create_request(
    cfg: &KubeletConfig,
    api: &Api<DynamicObject>,
    version: PcrVersion,
    info: &PodInfo,
    writes: Arc<Semaphore>,
    pacer: &Pacer,
) -> (Result<(String, KubeletKey), String>, bool) {
    // A paced request starts when its turn comes, key generation included, as a kubelet
    // makes a key when a pod needs its credential. (Making every key up front and then waiting
    // put all of the key generation of a paced run into its first second, competing with the
    // signer for the CPU and inflating the first requests' latency.)
    pacer.wait_turn().await;
    let keys = cfg.keys.clone();
    let kt = info.key_type;
    if !cfg.kube_version.knows_key_type(kt) {
        // generateKeyAndProof's default case, before any request is made.
        return (Err(format!("unknown key type {:?}", kt.as_str())), false);
    }
    let key = match tokio::task::spawn_blocking(move || keys.key(kt)).await {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => return (Err(e.to_string()), true),
        Err(e) => return (Err(format!("key generation task failed: {e}")), true),
    };
    let body = match objects::pcr(cfg, version, info, &key) {
        Ok(b) => b,
        Err(e) => return (Err(e.to_string()), true),
    };
    let obj = match objects::to_dynamic(body) {
        Ok(o) => o,
        Err(e) => return (Err(format!("encoding the request failed: {e}")), false),
    };
    let Ok(_permit) = writes.acquire_owned().await else {
        return (Err("shutting down".into()), false);
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => match created.metadata.name {
            Some(name) => (Ok((name, key)), false),
            None => (Err("the created request has no metadata.name".into()), true),
        },
        Err(e) => {
            // 4xx other than 409/429 will not heal by itself (but the kubelet retries anyway).
            let retryable = !matches!(status_code(&e), Some(c) if (400..500).contains(&c) && c != 409 && c != 429);
            (
                Err(format!(
                    "creating a PodCertificateRequest for {}/{} failed: {e}",
                    info.namespace, info.pod
                )),
                retryable,
            )
        }
    }
}

async fn next_event<S: Stream + Unpin>(events: &mut Option<S>) -> Option<S::Item> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Errors a retry cannot fix: the node may not list or watch requests (403), or the server
/// does not serve list/watch for them (404/405).
fn is_permanent_watch_error(e: &watcher::Error) -> bool {
    let code = match e {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => {
            status_code(e)
        }
        _ => None,
    };
    matches!(code, Some(403..=405))
}

fn keyed(obj: DynamicObject) -> Option<(Key, Value)> {
    let key = (obj.metadata.namespace.clone()?, obj.metadata.name.clone()?);
    let v = serde_json::to_value(&obj).ok()?;
    Some((key, v))
}

fn random_duration(max: Duration) -> time::Duration {
    if max.is_zero() {
        return time::Duration::ZERO;
    }
    let ms = rand::thread_rng().gen_range(0..max.as_millis().max(1) as u64);
    time::Duration::milliseconds(ms as i64)
}
