//! Lease-based leader election (coordination.k8s.io/v1), after client-go's leaderelection.
//!
//! Only the leader writes. Leadership ends on a local monotonic timer: `renew_deadline` after
//! the start of the last renewal that succeeded, whatever the API call in flight is doing (a
//! stalled request cannot keep a replica leading). Every Lease call is bounded by
//! `call_timeout`. Expiry of another holder is judged by when *we* observed the record change
//! (as client-go does), not by the holder's clock.
//!
//! Why two replicas never both write (defaults: lease 8 s, renew deadline 5 s): a renewal
//! that the apiserver applied at time t started at s <= t, and we lead until s + 5 s. Another
//! replica sees the renewed record no earlier than t, and takes the Lease only once it has
//! seen no change for 8 s, so not before t + 8 s >= s + 8 s. A replica that lost contact
//! therefore stops by s + 5 s (writes are abandoned then, see [`while_leading`]), 3 s before
//! anyone else can acquire; the margin absorbs clock-rate drift and request latency.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::tasks::Tasks;

/// Timings. Defaults give a failover under 10 s after a leader dies without releasing.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Bound on one acquire/renew round (its GET and its write); shorter than
    /// `renew_deadline` so a stalled call is given up while we may still renew in time.
    pub call_timeout: Duration,
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
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// What a replica last saw of the lease record.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// This replica's leadership: published on `tx`, valid until `until` (local monotonic clock).
struct Lead<'a> {
    tx: watch::Sender<bool>,
    until: Option<Instant>,
    cfg: &'a LeaderConfig,
}

impl Lead<'_> {
    fn set(&mut self, leading: bool) {
        if !leading {
            self.until = None;
        }
        if leading == *self.tx.borrow() {
            return;
        }
        if leading {
            info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "became leader");
        } else {
            warn!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "lost leadership; stopped writing");
        }
        let _ = self.tx.send(leading);
    }

    /// Drives `fut`, ending leadership the moment the renew deadline passes, whatever `fut` is
    /// doing. `None` when `shutdown` fires first.
    async fn drive<T>(
        &mut self,
        fut: impl Future<Output = T>,
        shutdown: &CancellationToken,
    ) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let until = self.until;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                    warn!(identity = %self.cfg.identity, "no lease renewal within the renew deadline");
                    self.set(false);
                }
                out = &mut fut => return Some(out),
            }
        }
    }
}

/// Runs the election in `tasks` until it is cancelled; publishes leadership on the returned
/// channel. On shutdown a leader releases the lease so a standby takes over at once.
pub fn spawn(client: kube::Client, cfg: LeaderConfig, tasks: &Tasks) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let shutdown = tasks.token();
    tasks.spawn_graceful(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut observed: Option<Observed> = None;
        let mut lead = Lead {
            tx,
            until: None,
            cfg: &cfg,
        };
        loop {
            // The renewal counts from before it was sent: the apiserver may apply it at any
            // point after this, and others time the lease from when they see it.
            let started = Instant::now();
            let round = tokio::time::timeout(
                cfg.call_timeout,
                try_acquire_or_renew(&api, &cfg, &mut observed),
            );
            let Some(result) = lead.drive(round, &shutdown).await else {
                break;
            };
            match result {
                Ok(Ok(true)) => lead.until = Some(started + cfg.renew_deadline),
                Ok(Ok(false)) => lead.until = None,
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %cfg.lease_name, "lease update failed")
                }
                Err(_) => warn!(
                    lease = %cfg.lease_name,
                    timeout_ms = cfg.call_timeout.as_millis() as u64,
                    "lease request timed out"
                ),
            }
            // Keep leading only while the last renewal is recent enough.
            let leading = lead.until.is_some_and(|t| Instant::now() < t);
            lead.set(leading);
            if lead
                .drive(tokio::time::sleep(cfg.retry_period), &shutdown)
                .await
                .is_none()
            {
                break;
            }
        }
        if *lead.tx.borrow() {
            lead.set(false);
            let _ = tokio::time::timeout(cfg.call_timeout, release(&api, &cfg)).await;
        }
    });
    rx
}

/// Runs the write `write` only while `leader` says this replica leads, and abandons it the
/// moment leadership ends (the election flips the flag at its local renew deadline, before any
/// other replica can acquire the lease; see the module docs). `None` when not run to the end.
/// A request already sent may still reach the apiserver; every write this guards is a
/// compare-and-swap on a resourceVersion, so a late one cannot overwrite a newer leader's.
pub async fn while_leading<T>(
    leader: &watch::Receiver<bool>,
    write: impl Future<Output = T>,
) -> Option<T> {
    let mut rx = leader.clone();
    if !*rx.borrow_and_update() {
        return None;
    }
    let lost = async move {
        // A closed channel keeps its last value (leading, as just seen): never lost then.
        if rx.wait_for(|leading| !*leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        _ = lost => None,
        out = write => Some(out),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_is_abandoned_when_leadership_ends() {
        let (tx, rx) = watch::channel(true);
        let write = tokio::time::sleep(Duration::from_secs(60));
        let guarded = tokio::spawn(async move { while_leading(&rx, write).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(false).unwrap();
        assert_eq!(guarded.await.unwrap(), None);
    }

    #[tokio::test]
    async fn nothing_runs_unless_leading() {
        let (_tx, rx) = watch::channel(false);
        let ran = std::sync::atomic::AtomicBool::new(false);
        let write = async { ran.store(true, std::sync::atomic::Ordering::SeqCst) };
        assert_eq!(while_leading(&rx, write).await, None);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_closed_channel_keeps_its_last_value() {
        let rx = watch::channel(true).1;
        assert_eq!(while_leading(&rx, async { 7 }).await, Some(7));
    }
}
