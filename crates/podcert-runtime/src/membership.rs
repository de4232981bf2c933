//! Active-active membership: every replica keeps a Lease of its own (`<lease>-member-<hash>`,
//! labelled `podcert.dev/member-of=<lease>`), renewed every `renew_every` and deleted when the
//! replica stops. Each replica lists the members' Leases and counts as live those whose record
//! changed within their lease duration by its own clock (as the leader election judges
//! expiry: never by the holder's clock). A request belongs to the live member that
//! rendezvous hashing of its UID picks ([`owner`]): every replica computes the same owner from
//! the same member set, and a member leaving moves only its own requests.
//!
//! Membership only decides who decides first; it is not what makes issuance safe. Status
//! writes carry the resourceVersion the decision was made on and the apiserver refuses a
//! second terminal status, so two replicas racing on one request end in one write and one 409.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::tasks::Tasks;
use crate::telemetry::Metrics;

/// The label that marks a member Lease, valued with the group's (the election Lease's) name.
pub const MEMBER_OF_LABEL: &str = "podcert.dev/member-of";

/// Timings and names.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub namespace: String,
    /// The group: the election Lease's name; member Leases are named after it.
    pub group: String,
    pub identity: String,
    /// How long a member stays live after its last observed renewal.
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// Bound on one round's API calls.
    pub call_timeout: Duration,
}

impl MembershipConfig {
    pub fn new(namespace: &str, group: &str, identity: &str) -> Self {
        MembershipConfig {
            namespace: namespace.into(),
            group: group.into(),
            identity: identity.into(),
            // A killed member's requests move once its Lease has gone unrenewed this long (by
            // the others' clocks): short, since every pod of that share waits for it.
            lease_duration: Duration::from_secs(2),
            renew_every: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
        }
    }

    /// This replica's Lease name: a hash keeps it a valid name whatever the identity.
    pub fn lease_name(&self) -> String {
        let h = Sha256::digest(self.identity.as_bytes());
        let hex: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-member-{hex}", self.group)
    }
}

/// The live members as this replica sees them (itself always included), sorted.
#[derive(Clone)]
pub struct Members {
    me: Arc<str>,
    live: watch::Receiver<Arc<Vec<String>>>,
}

impl Members {
    /// A fixed member set (tests; a replica before its first round sees only itself).
    pub fn fixed(me: &str, others: &[&str]) -> Self {
        let mut all: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        all.push(me.to_string());
        all.sort();
        all.dedup();
        let (tx, live) = watch::channel(Arc::new(all));
        // A fixed set never changes: the sender may go.
        drop(tx);
        Members {
            me: me.into(),
            live,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn live(&self) -> Arc<Vec<String>> {
        self.live.borrow().clone()
    }

    /// Whether this replica owns `key` (a request's UID).
    pub fn is_mine(&self, key: &str) -> bool {
        owner(&self.live(), key).is_none_or(|o| o == &*self.me)
    }

    /// Changes whenever the live set changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<String>>> {
        self.live.clone()
    }
}

/// Rendezvous (highest random weight) hashing: the member whose hash with `key` is highest.
/// Stable across processes and builds (SHA-256, not the std hasher).
pub fn owner<'a>(members: &'a [String], key: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| {
            let mut h = Sha256::new();
            h.update(m.as_bytes());
            h.update([0]);
            h.update(key.as_bytes());
            let d = h.finalize();
            let score = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
            (score, m.as_str())
        })
        .max()
        .map(|(_, m)| m)
}

/// What this replica last saw of one member's Lease.
struct Seen {
    renew_time: Option<MicroTime>,
    duration: Duration,
    at: Instant,
}

/// Starts renewing this replica's Lease and following the others', in `tasks`; the Lease is
/// deleted when `tasks` is cancelled so the others take its requests at once.
pub fn spawn(
    client: kube::Client,
    cfg: MembershipConfig,
    metrics: Arc<Metrics>,
    tasks: &Tasks,
) -> Members {
    let (tx, live) = watch::channel(Arc::new(vec![cfg.identity.clone()]));
    let members = Members {
        me: cfg.identity.as_str().into(),
        live,
    };
    let cancel = tasks.token();
    tasks.spawn_graceful(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let mut mine: Option<Lease> = None;
        info!(identity = %cfg.identity, lease = %cfg.lease_name(), "active-active: announcing this replica");
        loop {
            let round = async {
                if let Err(e) = renew(&api, &cfg, &mut mine).await {
                    warn!(error = %e, lease = %cfg.lease_name(), "member lease renewal failed");
                }
                observe(&api, &cfg, &mut seen).await
            };
            match tokio::time::timeout(cfg.call_timeout * 2, round).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "listing member leases failed"),
                Err(_) => warn!("member lease round timed out"),
            }
            let mut now_live: BTreeSet<String> = seen
                .iter()
                .filter(|(_, s)| s.at.elapsed() <= s.duration)
                .map(|(id, _)| id.clone())
                .collect();
            now_live.insert(cfg.identity.clone());
            let now_live: Vec<String> = now_live.into_iter().collect();
            metrics.members.set(now_live.len() as i64);
            tx.send_if_modified(|cur| {
                if **cur == now_live {
                    return false;
                }
                info!(members = ?now_live, "active-active members changed");
                *cur = Arc::new(now_live);
                true
            });
            tokio::select! {
                _ = tokio::time::sleep(cfg.renew_every) => {}
                _ = cancel.cancelled() => break,
            }
        }
        let name = cfg.lease_name();
        match tokio::time::timeout(cfg.call_timeout, api.delete(&name, &DeleteParams::default()))
            .await
        {
            Ok(Ok(_)) => info!(lease = %name, "member lease deleted"),
            Ok(Err(e)) => debug!(error = %e, "could not delete the member lease; it expires"),
            Err(_) => debug!("deleting the member lease timed out; it expires"),
        }
    });
    members
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Creates or renews this replica's Lease: one write per round, from the Lease as last
/// written (`mine`); read again only when that write is refused.
async fn renew(
    api: &Api<Lease>,
    cfg: &MembershipConfig,
    mine: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let name = cfg.lease_name();
    let spec = LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        renew_time: Some(now_micro()),
        ..Default::default()
    };
    let current = match mine.take() {
        Some(l) => Some(l),
        None => api.get_opt(&name).await?,
    };
    match current {
        Some(mut lease) => {
            lease.spec = Some(spec);
            // A 409 or 404 leaves `mine` empty: the next round reads (or creates) it.
            *mine = Some(api.replace(&name, &PostParams::default(), &lease).await?);
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some(BTreeMap::from([(
                        MEMBER_OF_LABEL.to_string(),
                        cfg.group.clone(),
                    )])),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(created) => *mine = Some(created),
                // Created by our previous incarnation between the get and now: next round.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Lists the group's Leases and records, by our clock, when each last changed.
async fn observe(
    api: &Api<Lease>,
    cfg: &MembershipConfig,
    seen: &mut BTreeMap<String, Seen>,
) -> Result<(), kube::Error> {
    let lp = ListParams::default().labels(&format!("{MEMBER_OF_LABEL}={}", cfg.group));
    let list = api.list(&lp).await?;
    let mut present = BTreeSet::new();
    let mut stale = Vec::new();
    for lease in list.items {
        let rv = lease.metadata.resource_version.clone();
        let name = lease.metadata.name.clone().unwrap_or_default();
        let Some(spec) = lease.spec else { continue };
        let Some(id) = spec.holder_identity.filter(|h| !h.is_empty()) else {
            continue;
        };
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(8).max(1) as u64);
        present.insert(id.clone());
        if id != cfg.identity {
            if let Some(rv) = rv {
                stale.push((id.clone(), name, rv));
            }
        }
        match seen.get_mut(&id) {
            Some(s) if s.renew_time == spec.renew_time => s.duration = duration,
            _ => {
                seen.insert(
                    id,
                    Seen {
                        renew_time: spec.renew_time,
                        duration,
                        at: Instant::now(),
                    },
                );
            }
        }
    }
    // A deleted Lease is a member that left.
    seen.retain(|id, _| present.contains(id));
    // A member killed without deleting its Lease (SIGKILL, a lost node) leaves it behind; pod
    // names change with every rollout, so remove those long expired. Guarded by the
    // resourceVersion seen: a Lease renewed meanwhile is kept.
    for (id, name, rv) in stale {
        if seen.get(&id).is_some_and(|s| s.at.elapsed() > GC_AFTER) {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(rv),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => info!(member = %id, "removed an expired member lease"),
                Err(e) => {
                    debug!(member = %id, error = %e, "could not remove an expired member lease")
                }
            }
        }
    }
    Ok(())
}

/// How long an unchanged member Lease stays before any member removes it.
const GC_AFTER: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    #[test]
    fn every_replica_computes_the_same_owner() {
        let m = names(3);
        let mut reversed = m.clone();
        reversed.reverse();
        for i in 0..200 {
            let key = format!("uid-{i}");
            assert_eq!(owner(&m, &key), owner(&reversed, &key));
        }
        assert_eq!(owner(&[], "x"), None);
    }

    #[test]
    fn requests_spread_over_members_and_a_leaver_moves_only_its_own() {
        let three = names(3);
        let keys: Vec<String> = (0..3000).map(|i| format!("uid-{i}")).collect();
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for k in &keys {
            *per.entry(owner(&three, k).unwrap()).or_default() += 1;
        }
        // Each of three members gets roughly a third (exact counts are fixed by SHA-256).
        assert_eq!(per.len(), 3);
        assert!(per.values().all(|&n| (800..=1200).contains(&n)), "{per:?}");
        let two: Vec<String> = three
            .iter()
            .filter(|m| *m != "replica-1")
            .cloned()
            .collect();
        for k in &keys {
            let before = owner(&three, k).unwrap();
            let after = owner(&two, k).unwrap();
            if before != "replica-1" {
                assert_eq!(before, after, "{k} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn a_replica_owns_what_the_hash_gives_it() {
        let a = Members::fixed("replica-0", &["replica-1", "replica-2"]);
        let b = Members::fixed("replica-1", &["replica-0", "replica-2"]);
        let c = Members::fixed("replica-2", &["replica-0", "replica-1"]);
        for i in 0..100 {
            let key = format!("uid-{i}");
            let owners = [a.is_mine(&key), b.is_mine(&key), c.is_mine(&key)];
            assert_eq!(owners.iter().filter(|o| **o).count(), 1, "{key}");
        }
        assert!(Members::fixed("alone", &[]).is_mine("anything"));
    }

    #[test]
    fn lease_names_are_valid_whatever_the_identity() {
        let cfg = MembershipConfig::new("ns", "podcert-signer", &"x".repeat(300));
        let name = cfg.lease_name();
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("podcert-signer-member-"));
        let other = MembershipConfig::new("ns", "podcert-signer", "y").lease_name();
        assert_ne!(name, other);
    }
}
