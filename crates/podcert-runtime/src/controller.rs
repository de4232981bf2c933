//! The PodCertificateRequest controller: watches the requests addressed to one signer name,
//! runs each through the pure pipeline and writes the decision in one guarded status write.
//!
//! Every replica keeps a warm watch cache; only the leader writes. When a replica becomes
//! leader every cached request is reconciled again, so nothing waits for its next change.
//! 409 (someone else decided, or the object moved on) and 404 (the cleaner deleted it) are
//! normal endings; everything transient is retried with backoff and never becomes Failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ca_backend::CaHandle;
use crate::context::{AppContext, Issuance};
use crate::membership::Members;
use crate::namespaces::NamespaceLabels;
use crate::pod_lookup::PodLookup;
use crate::request_cache::{self, is_terminal};
use crate::request_events::EventPublisher;
use crate::tasks::Tasks;
use crate::telemetry::{ErrorLabels, Metrics, ReasonLabels, SignerLabels};
use podcert_core::pipeline::{self, Facts, NotDecided};
use podcert_core::policy::SignerConfig;
use podcert_core::request::{wire, ConditionType};

/// Everything a reconcile needs.
pub struct Context {
    pub client: kube::Client,
    pub resource: ApiResource,
    /// The signer name is fixed for the life of a controller (it is in the watch's field
    /// selector); the policy may be swapped while it runs (PodCertificateSigner edits).
    signer_name: String,
    config: RwLock<Arc<SignerConfig>>,
    pub ca: Arc<CaHandle>,
    /// Namespace labels, for signers with a namespace selector.
    pub namespaces: Option<NamespaceLabels>,
    /// Pods and Services, for signers whose policy reads them.
    pub pods: Option<PodLookup>,
    pub metrics: Arc<Metrics>,
    pub leader: watch::Receiver<bool>,
    pub events: Option<EventPublisher>,
    pub issuance: Issuance,
    /// Active-active: tokens for deciding a live owner's requests (see [`HEDGES_PER_SECOND`]).
    hedges: HedgeBucket,
    backoff: Mutex<HashMap<(String, String), u32>>,
    labels: SignerLabels,
}

impl Context {
    /// One signer's context in the process's `app`; its Event writers run in `tasks`.
    pub fn new(app: &AppContext, config: SignerConfig, ca: Arc<CaHandle>, tasks: &Tasks) -> Self {
        let labels = Metrics::signer(&config.signer_name);
        let events = app
            .reporter
            .clone()
            .map(|r| EventPublisher::spawn(app.client.clone(), r, tasks));
        Context {
            client: app.client.clone(),
            resource: app.pcr.clone(),
            signer_name: config.signer_name.clone(),
            config: RwLock::new(Arc::new(config)),
            ca,
            namespaces: app.namespaces.clone(),
            pods: app.pods.clone(),
            metrics: app.metrics.clone(),
            leader: app.leader.clone(),
            events,
            issuance: app.issuance.clone(),
            hedges: HedgeBucket::new(),
            backoff: Mutex::new(HashMap::new()),
            labels,
        }
    }

    /// The policy in force now.
    pub fn config(&self) -> Arc<SignerConfig> {
        match self.config.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the policy; the next decision uses it. A different signer name is refused
    /// (the caller must start another controller).
    pub fn set_config(&self, config: SignerConfig) -> bool {
        if config.signer_name != self.signer_name {
            return false;
        }
        match self.config.write() {
            Ok(mut g) => *g = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
        true
    }

    pub fn signer_name(&self) -> &str {
        &self.signer_name
    }

    fn take_hedge(&self) -> bool {
        self.hedges.take()
    }

    fn error(&self, kind: &str) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                signer_name: self.signer_name.clone(),
                kind: kind.into(),
            })
            .inc();
    }
}

/// Active-active: requests of live owners this replica decides per second at most (after
/// the hedge delay), and how many at once. A dead owner's requests are not rationed: they
/// move to a live member as soon as its Lease expires.
pub const HEDGES_PER_SECOND: f64 = 10.0;
const HEDGE_BURST: f64 = 10.0;

/// A token bucket: [`HEDGES_PER_SECOND`], at most [`HEDGE_BURST`] at once.
struct HedgeBucket(Mutex<(std::time::Instant, f64)>);

impl HedgeBucket {
    fn new() -> Self {
        HedgeBucket(Mutex::new((std::time::Instant::now(), HEDGE_BURST)))
    }

    /// One token, if the bucket has one.
    fn take(&self) -> bool {
        let Ok(mut b) = self.0.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let refill = now.duration_since(b.0).as_secs_f64() * HEDGES_PER_SECOND;
        *b = (now, (b.1 + refill).min(HEDGE_BURST));
        if b.1 >= 1.0 {
            b.1 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a reconcile is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no CA is loaded yet")]
    CaNotLoaded,
    #[error(transparent)]
    NamespaceUnknown(#[from] podcert_core::policy::NamespaceUnknown),
    #[error("the pod or Services the policy needs are not known: {0}")]
    PodData(String),
    #[error("cannot issue now: {0}")]
    Issue(#[from] podcert_core::issue::IssueError),
    #[error("status write failed: {0}")]
    Write(#[source] kube::Error),
    #[error("encoding the request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Every `kind` of `podcert_errors_total` this controller counts: a malformed object
/// (`decode`) and each [`ReconcileError::kind`]. The metrics create each at 0 per signer.
pub const ERROR_KINDS: &[&str] = &[
    "decode",
    "ca_not_loaded",
    "namespace_unknown",
    "pod_data",
    "issue",
    "api_throttled",
    "api_server_error",
    "api_write",
    "encode",
];

impl ReconcileError {
    fn kind(&self) -> &'static str {
        match self {
            ReconcileError::CaNotLoaded => "ca_not_loaded",
            ReconcileError::NamespaceUnknown(_) => "namespace_unknown",
            ReconcileError::PodData(_) => "pod_data",
            ReconcileError::Issue(_) => "issue",
            ReconcileError::Write(kube::Error::Api(e)) if e.code == 429 => "api_throttled",
            ReconcileError::Write(kube::Error::Api(e)) if e.code >= 500 => "api_server_error",
            ReconcileError::Write(_) => "api_write",
            ReconcileError::Encode(_) => "encode",
        }
    }
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if is_terminal(&obj) {
        return Ok(Action::await_change());
    }
    match &ctx.issuance {
        Issuance::Leader if !*ctx.leader.borrow() => return Ok(Action::await_change()),
        Issuance::Leader => {}
        Issuance::ActiveActive { members, hedge } => {
            if let Some(wait) = not_mine_yet(&obj, members, *hedge, OffsetDateTime::now_utc()) {
                return Ok(Action::requeue(wait));
            }
            if !members.is_mine(obj.uid().as_deref().unwrap_or_default()) {
                // A live owner that is merely busy would lose every race it is slow on: hedges
                // are rationed, so a backlog is not decided three times over.
                if !ctx.take_hedge() {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                ctx.metrics.hedged.get_or_create(&ctx.labels).inc();
                debug!(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), "deciding for a live owner after the hedge delay");
            }
        }
    }
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let mut value = serde_json::to_value(&*obj)?;
    // Items of a list carry no kind/apiVersion (only watch events do), so a request that was
    // already pending when this watch started has none: take them from the resource watched.
    if let Some(m) = value.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(ctx.resource.api_version));
        m.entry("kind").or_insert_with(|| json!(ctx.resource.kind));
    }
    let request = match wire::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            // The apiserver validated this object; if we cannot read it, the fault is ours.
            // Leave it pending (never Denied/Failed) and say so loudly.
            ctx.error("decode");
            warn!(%namespace, %name, error = %e, "cannot decode request; leaving it pending");
            return Ok(Action::await_change());
        }
    };
    if request.request.signer_name != ctx.signer_name {
        return Ok(Action::await_change());
    }
    let ca = ctx.ca.get().ok_or(ReconcileError::CaNotLoaded)?;
    let config = ctx.config();
    let now = OffsetDateTime::now_utc();
    let labels = match (&config.namespace_selector, &ctx.namespaces) {
        (Some(_), Some(ns)) => ns.get(&namespace),
        _ => None,
    };
    let pod = match &ctx.pods {
        Some(p) => p
            .read(&config, &request.request)
            .await
            .map_err(|e| ReconcileError::PodData(format!("reading the pod: {e}")))?,
        None => Default::default(),
    };
    let decided = if ca.has_remote_key() {
        // The token's C_Sign blocks (a network HSM: a round trip): off the async workers.
        let (req, ca) = (request.request.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            let facts = Facts {
                namespace_labels: labels.as_deref(),
                pod: pod.pod_facts(),
                services: pod.services.as_deref(),
            };
            pipeline::process_with(&req, &config, &ca, now, facts)
        })
        .await
        .map_err(|e| {
            ReconcileError::Issue(podcert_core::issue::IssueError::Signing(format!(
                "the signing task ended ({e})"
            )))
        })?
    } else {
        let facts = Facts {
            namespace_labels: labels.as_deref(),
            pod: pod.pod_facts(),
            services: pod.services.as_deref(),
        };
        pipeline::process_with(&request.request, &config, &ca, now, facts)
    };
    let outcome = match decided {
        Ok(o) => o,
        Err(NotDecided::AlreadyTerminal { .. }) => return Ok(Action::await_change()),
        Err(NotDecided::Issue(e)) => return Err(e.into()),
        Err(NotDecided::NamespaceUnknown(e)) => return Err(e.into()),
        Err(e @ (NotDecided::PodUnknown(_) | NotDecided::ServicesUnknown(_))) => {
            return Err(ReconcileError::PodData(e.to_string()))
        }
        // Pending, never Failed: a Service may be created in the next seconds.
        Err(NotDecided::WaitingForService {
            retry_after,
            message,
        }) => {
            debug!(%namespace, %name, %message, "waiting for a Service");
            let secs = retry_after.whole_milliseconds().clamp(100, 2000) as u64;
            return Ok(Action::requeue(Duration::from_millis(secs)));
        }
    };
    let generation = obj.metadata.generation;
    let status = wire::status_json(&outcome.status, generation, now);
    // The resourceVersion makes this a compare-and-swap: exactly one writer can win.
    let patch = json!({
        "metadata": { "resourceVersion": obj.resource_version() },
        "status": status,
    });
    let write = patch_status(&ctx, &namespace, &name, &patch);
    let written = match &ctx.issuance {
        // Checked right before the write and abandoned when leadership ends, which happens
        // before another replica can take the lease (see `leader`); becoming leader again
        // reconciles all.
        Issuance::Leader => match crate::leader::while_leading(&ctx.leader, write).await {
            Some(w) => w,
            None => {
                debug!(%namespace, %name, "not leading; status not written");
                return Ok(Action::await_change());
            }
        },
        // Every member writes; the resourceVersion lets exactly one win.
        Issuance::ActiveActive { .. } => write.await,
    };
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            ctx.metrics.conflicts.get_or_create(&ctx.labels).inc();
            // Usually another writer decided (the next pass sees it terminal and stops without
            // an API call); but a conflict can also leave it pending, so look again shortly
            // rather than wait for a change that may never come.
            debug!(%namespace, %name, "status conflict; checking again");
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            debug!(%namespace, %name, "request deleted before its status was written");
            return Ok(Action::await_change());
        }
        Err(e) => return Err(ReconcileError::Write(e)),
    }
    if let Ok(mut b) = ctx.backoff.lock() {
        b.remove(&(namespace.clone(), name.clone()));
    }
    let st = &outcome.status;
    match st.condition {
        ConditionType::Issued => {
            ctx.metrics.issued.get_or_create(&ctx.labels).inc();
            if let Some(created) = request.request.creation_timestamp {
                let secs = (now - created).as_seconds_f64().max(0.0);
                ctx.metrics
                    .issue_duration
                    .get_or_create(&ctx.labels)
                    .observe(secs);
            }
            info!(%namespace, %name, spiffe_id = outcome.spiffe_id.as_deref().unwrap_or(""), "issued");
        }
        ConditionType::Denied => {
            ctx.metrics
                .denied
                .get_or_create(&ReasonLabels {
                    signer_name: ctx.signer_name.clone(),
                    reason: st.reason.clone(),
                })
                .inc();
            info!(%namespace, %name, reason = %st.reason, message = %st.message, "denied");
        }
        ConditionType::Failed => {
            ctx.metrics.failed.get_or_create(&ctx.labels).inc();
        }
    }
    publish_event(&ctx, &obj, st.condition, &st.reason, &st.message);
    Ok(Action::await_change())
}

/// The status write. Its answer (the whole object, certificate chain included) is read but
/// not decoded: nothing uses it, and the watch brings the same object anyway.
async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let url = DynamicObject::url_path(&ctx.resource, Some(namespace));
    let mut req = kube::core::Request::new(url)
        .patch_subresource(
            "status",
            name,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .map_err(kube::Error::BuildRequest)?;
    req.extensions_mut().insert("patch_status");
    ctx.client.request_text(req).await.map(drop)
}

/// Active-active: how long to leave `obj` to its live owner (None: decide it now). A request
/// is this replica's own at once, another's after `hedge` from its creation; a request whose
/// owner left is re-owned by a live member (the member set changed, everything is
/// re-checked).
fn not_mine_yet(
    obj: &DynamicObject,
    members: &Members,
    hedge: Duration,
    now: OffsetDateTime,
) -> Option<Duration> {
    let uid = obj.uid().unwrap_or_default();
    if members.is_mine(&uid) {
        return None;
    }
    let created = obj.creation_timestamp()?.0.as_millisecond();
    let age_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64 - created;
    let left = hedge.as_millis() as i64 - age_ms.max(0);
    (left > 0).then(|| Duration::from_millis(left as u64))
}

/// Queues an Event on the request without holding up the next reconcile.
fn publish_event(
    ctx: &Arc<Context>,
    obj: &DynamicObject,
    condition: ConditionType,
    reason: &str,
    message: &str,
) {
    let Some(events) = ctx.events.as_ref() else {
        return;
    };
    let reference = obj.object_ref(&ctx.resource);
    let event = Event {
        type_: if condition == ConditionType::Issued {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: if condition == ConditionType::Issued {
            "Issued".into()
        } else {
            reason.to_string()
        },
        note: Some(message.chars().take(1000).collect()),
        action: condition.as_str().to_string(),
        secondary: None,
    };
    events.publish(&event, &reference);
}

fn error_policy(obj: Arc<DynamicObject>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.error(err.kind());
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let attempt = ctx
        .backoff
        .lock()
        .map(|mut b| {
            let n = b.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    // 200 ms doubling to 30 s: quick recovery from a blip, no hammering during an outage.
    let delay = Duration::from_millis(200u64.saturating_mul(1u64 << attempt.min(8)))
        .min(Duration::from_secs(30));
    warn!(namespace = %key.0, name = %key.1, error = %err, attempt, retry_in_ms = delay.as_millis() as u64, "will retry");
    Action::requeue(delay)
}

/// Settings of one controller run.
pub struct RunOptions {
    pub concurrency: u16,
    /// Set to true once the watch cache has synced.
    pub synced: watch::Sender<bool>,
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, opts: RunOptions, shutdown: CancellationToken) {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ctx.resource);
    let wc = watcher::Config::default().fields(&format!("spec.signerName={}", ctx.signer_name));
    info!(
        signer = %ctx.signer_name,
        version = %ctx.resource.api_version,
        "watching PodCertificateRequests"
    );
    // The cache holds pending requests only, trimmed (request_cache::keep_pending): memory
    // follows the backlog, not how many requests the cluster keeps.
    let writer = reflector::store::Writer::new(ctx.resource.clone());
    let store = writer.as_reader();
    let events = watcher(api, wc).filter_map(|e| async move {
        match e {
            Ok(e) => request_cache::keep_pending(e).map(Ok),
            Err(e) => Some(Err(e)),
        }
    });
    let trigger = reflector(writer, events).applied_objects();
    let controller = Controller::for_stream_with(trigger, store.clone(), ctx.resource.clone())
        .with_config(ControllerConfig::default().concurrency(opts.concurrency));

    // Reconcile everything again whenever this replica becomes leader (leader mode) or the
    // member set changes (active-active: a leaver's requests have a new owner now).
    let became_leader = futures::stream::unfold(ctx.leader.clone(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow() {
                return Some(((), rx));
            }
        }
    });
    let recheck: futures::stream::BoxStream<'static, ()> = match &ctx.issuance {
        Issuance::Leader => Box::pin(became_leader),
        Issuance::ActiveActive { members, .. } => Box::pin(futures::stream::unfold(
            members.subscribe(),
            |mut rx| async move {
                rx.changed().await.ok()?;
                Some(((), rx))
            },
        )),
    };

    let synced = opts.synced;
    let sync_store = store.clone();
    // Run beside the controller, in this task (nothing spawned): the cache-synced signal and
    // the pending-request gauges.
    let sync = async move {
        // Re-poll: kube-runtime's ready signal wakes only its first waiter (the controller),
        // later polls see the memoized value.
        loop {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(200), sync_store.wait_until_ready())
                    .await
            {
                let _ = synced.send(true);
                info!("request cache synced");
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let gauges = pending_gauges(store, ctx.clone());

    let run = controller
        .reconcile_all_on(recheck)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            // Reconcile errors are reported by error_policy; what reaches here is the watch.
            if let Err(kube::runtime::controller::Error::QueueError(e)) = res {
                warn!(error = %e, "watch failed; retrying");
            }
        });
    tokio::select! {
        _ = run => {}
        _ = shutdown.cancelled() => {}
        _ = sync => {}
        _ = gauges => {}
    }
}

/// Pending requests and the oldest one's age, from the watch cache, every few seconds.
async fn pending_gauges(store: Store<DynamicObject>, ctx: Arc<Context>) {
    loop {
        let now = OffsetDateTime::now_utc();
        let mut pending = 0i64;
        let mut owned = 0i64;
        let mut oldest = 0f64;
        let members = match &ctx.issuance {
            Issuance::ActiveActive { members, .. } => Some(members),
            Issuance::Leader => None,
        };
        for obj in store.state() {
            if is_terminal(&obj) {
                continue;
            }
            pending += 1;
            if members.is_some_and(|m| m.is_mine(obj.uid().as_deref().unwrap_or_default())) {
                owned += 1;
            }
            if let Some(ts) = obj.meta().creation_timestamp.as_ref() {
                let age = now.unix_timestamp() as f64 - ts.0.as_second() as f64;
                oldest = oldest.max(age);
            }
        }
        ctx.metrics.pending.get_or_create(&ctx.labels).set(pending);
        if members.is_some() {
            ctx.metrics.owned.get_or_create(&ctx.labels).set(owned);
        }
        ctx.metrics
            .oldest_pending_seconds
            .get_or_create(&ctx.labels)
            .set(oldest);
        if let Some(ca) = ctx.ca.get() {
            ctx.metrics
                .ca_not_after
                .get_or_create(&ctx.labels)
                .set(ca.not_after().unix_timestamp());
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_is_listed() {
        let api = |code: u16| {
            let status: kube::core::Status =
                serde_json::from_value(json!({ "code": code })).unwrap();
            kube::Error::Api(status.into())
        };
        let all = [
            ReconcileError::CaNotLoaded,
            ReconcileError::NamespaceUnknown(podcert_core::policy::NamespaceUnknown("ns".into())),
            ReconcileError::PodData(String::new()),
            ReconcileError::Issue(podcert_core::issue::IssueError::Signing(String::new())),
            ReconcileError::Write(api(429)),
            ReconcileError::Write(api(500)),
            ReconcileError::Write(api(404)),
            ReconcileError::Encode(serde_json::from_str::<u8>("x").unwrap_err()),
        ];
        for e in &all {
            // A new variant fails to compile here until listed above (and its kind below).
            match e {
                ReconcileError::CaNotLoaded
                | ReconcileError::NamespaceUnknown(_)
                | ReconcileError::PodData(_)
                | ReconcileError::Issue(_)
                | ReconcileError::Write(_)
                | ReconcileError::Encode(_) => {}
            }
            assert!(
                ERROR_KINDS.contains(&e.kind()),
                "{} is not in ERROR_KINDS",
                e.kind()
            );
        }
        let used: std::collections::BTreeSet<&str> =
            all.iter().map(|e| e.kind()).chain(["decode"]).collect();
        assert_eq!(
            used.len(),
            ERROR_KINDS.len(),
            "ERROR_KINDS lists a kind nothing counts"
        );
    }

    fn request(uid: &str, created: OffsetDateTime) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "PodCertificateRequest",
            "metadata": {
                "name": "r", "namespace": "ns", "uid": uid,
                "creationTimestamp": wire::format_time(created),
            },
        }))
        .unwrap()
    }

    /// A UID the given member owns among `members`.
    fn owned_by(members: &[&str], who: &str) -> String {
        let all: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        (0..)
            .map(|i| format!("uid-{i}"))
            .find(|u| crate::membership::owner(&all, u) == Some(who))
            .unwrap()
    }

    #[test]
    fn a_live_owners_request_waits_for_the_hedge_delay_and_ones_own_does_not() {
        let me = Members::fixed("a", &["b"]);
        let hedge = Duration::from_secs(2);
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let theirs = owned_by(&["a", "b"], "b");
        let mine = owned_by(&["a", "b"], "a");
        // Created now: wait the whole delay; a second ago: one more second; older: decide.
        assert_eq!(
            not_mine_yet(&request(&theirs, now), &me, hedge, now),
            Some(hedge)
        );
        let one_ago = now - time::Duration::seconds(1);
        assert_eq!(
            not_mine_yet(&request(&theirs, one_ago), &me, hedge, now),
            Some(Duration::from_secs(1))
        );
        let old = now - time::Duration::seconds(3);
        assert_eq!(not_mine_yet(&request(&theirs, old), &me, hedge, now), None);
        // Its own: at once, however new.
        assert_eq!(not_mine_yet(&request(&mine, now), &me, hedge, now), None);
        // The owner gone from the member set: the request is this replica's now.
        let alone = Members::fixed("a", &[]);
        assert_eq!(
            not_mine_yet(&request(&theirs, now), &alone, hedge, now),
            None
        );
    }

    #[test]
    fn hedges_are_rationed() {
        let bucket = HedgeBucket::new();
        let granted = (0..50).filter(|_| bucket.take()).count();
        // The burst, plus at most a token or two refilled while the loop ran.
        assert!((10..=12).contains(&granted), "{granted}");
        std::thread::sleep(Duration::from_millis(250));
        // Tokens come back with time (about 2.5 in 250 ms; a slow machine sleeps longer), never
        // more than the burst.
        let more = (0..50).filter(|_| bucket.take()).count();
        assert!((1..=10).contains(&more), "{more}");
    }
}
