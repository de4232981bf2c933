//! Lease-based leader election (coordination.k8s.io/v1), after client-go's leaderelection.
//!
//! Only the leader writes. A replica steps down the moment it cannot show a renewal younger
//! than `renew_deadline` or sees another holder, before the lease could expire for others,
//! so two replicas never both believe they lead. Expiry is judged by when *we* observed the
//! record change (as client-go does), not by the holder's clock.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Timings. Defaults give a failover under 10 s after a leader dies without releasing.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn new(namespace: &str, lease_name: &str, identity: &str) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(8),
            renew_deadline: Duration::from_secs(5),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// What a replica last saw of the lease record.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// Runs the election until `shutdown` fires; publishes leadership on the returned channel.
/// On shutdown a leader releases the lease so a standby takes over at once.
pub fn spawn(
    client: kube::Client,
    cfg: LeaderConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut observed: Option<Observed> = None;
        let mut last_renew: Option<Instant> = None;
        loop {
            let leading = match try_acquire_or_renew(&api, &cfg, &mut observed).await {
                Ok(true) => {
                    last_renew = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    warn!(error = %e, lease = %cfg.lease_name, "lease update failed");
                    // Keep leading only while the last renewal is recent enough.
                    last_renew.is_some_and(|t| t.elapsed() < cfg.renew_deadline) && *tx.borrow()
                }
            };
            if leading != *tx.borrow() {
                if leading {
                    info!(identity = %cfg.identity, lease = %cfg.lease_name, "became leader");
                } else {
                    warn!(identity = %cfg.identity, lease = %cfg.lease_name, "lost leadership; stopped writing");
                }
                let _ = tx.send(leading);
            }
            if !leading {
                last_renew = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.retry_period) => {}
                _ = shutdown.changed() => {
                    if *tx.borrow() {
                        let _ = tx.send(false);
                        release(&api, &cfg).await;
                    }
                    return;
                }
            }
        }
    });
    (rx, handle)
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One round: returns whether we hold the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaderConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let duration_secs = cfg.lease_duration.as_secs().max(1) as i32;
    let current = match api.get_opt(&cfg.lease_name).await? {
        Some(l) => l,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    // Track when the record last changed, by our clock.
    let changed = match observed {
        Some(o) => o.holder != holder || o.renew_time != spec.renew_time,
        None => true,
    };
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.clone(),
            at: Instant::now(),
        });
    }
    let held_by_me = holder.as_deref() == Some(cfg.identity.as_str());
    let lease_secs = spec.lease_duration_seconds.unwrap_or(duration_secs).max(1) as u64;
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.at.elapsed() > Duration::from_secs(lease_secs));
    if !held_by_me && holder.is_some() && !expired {
        return Ok(false);
    }
    let mut next = current.clone();
    let mut new_spec = spec.clone();
    if !held_by_me {
        new_spec.holder_identity = Some(cfg.identity.clone());
        new_spec.acquire_time = Some(now_micro());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.lease_duration_seconds = Some(duration_secs);
    new_spec.renew_time = Some(now_micro());
    next.spec = Some(new_spec);
    // `replace` carries metadata.resourceVersion: a concurrent writer makes this a 409.
    match api
        .replace(&cfg.lease_name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (empty holder, as client-go's ReleaseOnCancel does).
async fn release(api: &Api<Lease>, cfg: &LeaderConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    match api
        .replace(&cfg.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!(lease = %cfg.lease_name, "released the lease"),
        Err(e) => {
            warn!(error = %e, "could not release the lease; a standby takes over when it expires")
        }
    }
}
