//! Active-active membership: every replica holds a member Lease (`<lease>-member-<suffix>`,
//! labelled `podcert.dev/member-of=<lease>`, its identity as holder), renewed every
//! `renew_every` and released (holder emptied) when the replica stops. Each replica lists the
//! members' Leases and counts as live those with a holder whose record changed within their
//! lease duration by its own clock (as the leader election judges expiry: never by the
//! holder's clock). Leases are never deleted (the signer has no `delete`): a starting replica
//! takes over a released one, or one unrenewed for [`STALE_AFTER`] (a SIGKILLed pod's), with a
//! resourceVersion-guarded update, and creates a new one only when none is free, so their
//! number stays near the most replicas ever run at once. A request belongs to the live member that
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
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
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
            // the others' clocks): short, since every pod of that share waits for it. Four
            // renewals fit in it, so one failed call (a 500) does not drop a live member.
            lease_duration: Duration::from_secs(1),
            renew_every: Duration::from_millis(250),
            call_timeout: Duration::from_secs(2),
        }
    }

    /// A fresh member Lease name: the identity's hash and a random part, so a restarted pod
    /// of the same name does not collide with a Lease still held by its predecessor.
    pub fn new_lease_name(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.identity.as_bytes());
        h.update(rand_bytes());
        let hex: String = h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
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

    /// Whether this replica owns `key` (a request's UID). Never before it has announced
    /// itself (it is then not among the live members): a replica still starting only hedges.
    pub fn is_mine(&self, key: &str) -> bool {
        owner(&self.live(), key) == Some(&*self.me)
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

/// What this replica last saw of one member Lease.
struct Seen {
    holder: String,
    renew_time: Option<MicroTime>,
    duration: Duration,
    /// When (by our clock) this Lease's holder or renewTime last changed.
    at: Instant,
}

/// The group's member Leases as this replica observed them, keyed by Lease name.
///
/// Keyed by Lease and not by holder: one identity can hold two Leases (a create whose answer
/// was lost, then another), and a frozen one and a renewed one under one key would look like
/// a change on every round, keeping the holder live for ever after it died.
#[derive(Default)]
struct Observed(BTreeMap<String, Seen>);

impl Observed {
    /// Records one listing of the group's Leases made at `now`.
    fn update(&mut self, leases: Vec<Lease>, now: Instant) {
        let mut present = BTreeSet::new();
        for lease in leases {
            let Some(name) = lease.metadata.name else {
                continue;
            };
            let Some(spec) = lease.spec else { continue };
            // A released Lease (no holder) is a member that left.
            let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
                continue;
            };
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(8).max(1) as u64);
            present.insert(name.clone());
            match self.0.get_mut(&name) {
                Some(s) if s.holder == holder && s.renew_time == spec.renew_time => {
                    s.duration = duration
                }
                _ => {
                    self.0.insert(
                        name,
                        Seen {
                            holder,
                            renew_time: spec.renew_time,
                            duration,
                            at: now,
                        },
                    );
                }
            }
        }
        self.0.retain(|name, _| present.contains(name));
    }

    /// The holders of Leases that changed within their duration before `now`.
    fn live(&self, now: Instant) -> BTreeSet<String> {
        self.0
            .values()
            .filter(|s| now.saturating_duration_since(s.at) <= s.duration)
            .map(|s| s.holder.clone())
            .collect()
    }
}

/// Starts renewing this replica's Lease and following the others', in `tasks`; the Lease is
/// released when `tasks` is cancelled so the others take its requests at once.
///
/// A replica announces itself (and counts itself live) only once every `ready` flag is true
/// (its CA loaded, its watch caches synced): a member that owns requests it cannot yet decide
/// would leave its share to the rationed hedges. It looks at once when a flag changes, and
/// `joined` turns true once it counts itself a member (readiness waits for that: before, a
/// lone replica owns nothing and its requests wait for a hedge).
pub fn spawn(
    client: kube::Client,
    cfg: MembershipConfig,
    metrics: Arc<Metrics>,
    mut ready: Vec<watch::Receiver<bool>>,
    joined: watch::Sender<bool>,
    tasks: &Tasks,
) -> Members {
    let (tx, live) = watch::channel(Arc::new(Vec::new()));
    let members = Members {
        me: cfg.identity.as_str().into(),
        live,
    };
    let cancel = tasks.token();
    tasks.spawn_graceful(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let mut seen = Observed::default();
        let mut mine: Option<Lease> = None;
        info!(identity = %cfg.identity, group = %cfg.group, "active-active: announcing this replica");
        let mut announced = false;
        loop {
            // Rounds start every `renew_every`, however long the last one took.
            let next_round = Instant::now() + cfg.renew_every;
            if !announced && ready.iter().all(|r| *r.borrow()) {
                announced = true;
                info!(identity = %cfg.identity, "ready: announcing this replica as a member");
            }
            let round = async {
                if announced {
                    if let Err(e) = renew(&api, &cfg, &mut mine).await {
                        warn!(error = %e, "member lease renewal failed");
                    }
                }
                observe(&api, &cfg, &mut seen).await
            };
            match tokio::time::timeout(cfg.call_timeout * 2, round).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "listing member leases failed"),
                Err(_) => warn!("member lease round timed out"),
            }
            let mut now_live = seen.live(Instant::now());
            if announced {
                now_live.insert(cfg.identity.clone());
            } else {
                // Our own Lease from before a restart under the same name is not us yet.
                now_live.remove(&cfg.identity);
            }
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
            if announced {
                joined.send_if_modified(|j| !std::mem::replace(j, true));
            }
            // Not yet announced: also wake when a readiness flag changes, not a round later.
            let ready_changed = async {
                if announced || ready.is_empty() {
                    return std::future::pending::<()>().await;
                }
                let changes = ready.iter_mut().map(|r| Box::pin(r.changed()));
                let _ = futures::future::select_all(changes).await;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_round) => {}
                _ = ready_changed => {}
                _ = cancel.cancelled() => break,
            }
        }
        if let Some(lease) = mine {
            let name = lease.metadata.name.clone().unwrap_or_default();
            match tokio::time::timeout(cfg.call_timeout, release(&api, lease)).await {
                Ok(Ok(())) => info!(lease = %name, "member lease released"),
                Ok(Err(e)) => debug!(error = %e, "could not release the member lease; it expires"),
                Err(_) => debug!("releasing the member lease timed out; it expires"),
            }
        }
    });
    members
}

fn rand_bytes() -> [u8; 8] {
    rand::random()
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Renews this replica's Lease (one guarded write per round, from the Lease as last written)
/// or, without one, claims a free Lease of the group or creates one.
///
/// `mine` is only replaced after a call answered: a round cut short by its timeout, or a
/// failed call, leaves the Lease ours, to renew next round rather than claim a second one.
async fn renew(
    api: &Api<Lease>,
    cfg: &MembershipConfig,
    mine: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let Some(held) = mine.as_ref() else {
        *mine = Some(claim(api, cfg).await?);
        return Ok(());
    };
    let mut lease = held.clone();
    lease.spec = Some(held_spec(cfg));
    let name = lease.metadata.name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), &lease).await {
        Ok(l) => *mine = Some(l),
        // Changed under us: still ours (a write whose answer was lost; read it again) or
        // claimed by a replica that judged it stale (claim another next round).
        Err(kube::Error::Api(s)) if s.code == 409 => {
            *mine = api
                .get_opt(&name)
                .await?
                .filter(|current| holder(current) == Some(cfg.identity.as_str()));
        }
        Err(kube::Error::Api(s)) if s.code == 404 => *mine = None,
        Err(e) => return Err(e),
    }
    Ok(())
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn held_spec(cfg: &MembershipConfig) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        renew_time: Some(now_micro()),
        ..Default::default()
    }
}

/// A Lease of the group nobody holds: released, or not renewed for [`STALE_AFTER`] by the
/// wall clock (long enough for any clock skew between replicas).
fn free(lease: &Lease, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    spec.renew_time
        .as_ref()
        .is_none_or(|t| now.as_second() - t.0.as_second() > STALE_AFTER.as_secs() as i64)
}

/// The Leases `identity` may take, best first: those it holds already (a create or a
/// renewal whose answer was lost, then the replica went on without it), then free ones.
fn claimable<'a>(
    leases: &'a [Lease],
    identity: &'a str,
    now: k8s_openapi::jiff::Timestamp,
) -> impl Iterator<Item = &'a Lease> {
    let ours = leases.iter().filter(move |l| holder(l) == Some(identity));
    let others = leases
        .iter()
        .filter(move |l| holder(l) != Some(identity) && free(l, now));
    ours.chain(others)
}

/// Takes over a Lease of the group this replica already holds or nobody holds (guarded by
/// its resourceVersion: of two replicas claiming one, one wins), or creates a new one.
async fn claim(api: &Api<Lease>, cfg: &MembershipConfig) -> Result<Lease, kube::Error> {
    let lp = ListParams::default().labels(&format!("{MEMBER_OF_LABEL}={}", cfg.group));
    let now = k8s_openapi::jiff::Timestamp::now();
    let leases = api.list(&lp).await?.items;
    for lease in claimable(&leases, &cfg.identity, now) {
        let mut lease = lease.clone();
        let name = lease.metadata.name.clone().unwrap_or_default();
        lease.spec = Some(held_spec(cfg));
        match api.replace(&name, &PostParams::default(), &lease).await {
            Ok(l) => {
                info!(lease = %name, "took over a member lease");
                return Ok(l);
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(e),
        }
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.new_lease_name()),
            labels: Some(BTreeMap::from([(
                MEMBER_OF_LABEL.to_string(),
                cfg.group.clone(),
            )])),
            ..Default::default()
        },
        spec: Some(held_spec(cfg)),
    };
    api.create(&PostParams::default(), &lease).await
}

/// Gives this replica's Lease up (empty holder): the others see the member gone at once.
async fn release(api: &Api<Lease>, mut lease: Lease) -> Result<(), kube::Error> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = Some(now_micro());
    }
    api.replace(&name, &PostParams::default(), &lease).await?;
    Ok(())
}

/// How long an unrenewed member Lease waits before a starting replica may take it over.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Lists the group's Leases and records, by our clock, when each last changed.
async fn observe(
    api: &Api<Lease>,
    cfg: &MembershipConfig,
    seen: &mut Observed,
) -> Result<(), kube::Error> {
    let lp = ListParams::default().labels(&format!("{MEMBER_OF_LABEL}={}", cfg.group));
    let list = api.list(&lp).await?;
    seen.update(list.items, Instant::now());
    Ok(())
}

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
    fn lease_names_are_valid_whatever_the_identity_and_never_repeat() {
        let cfg = MembershipConfig::new("ns", "podcert-signer", &"x".repeat(300));
        let name = cfg.new_lease_name();
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("podcert-signer-member-"));
        assert_ne!(name, cfg.new_lease_name());
    }

    fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let now = k8s_openapi::jiff::Timestamp::now();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(
                    now - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_released_or_long_unrenewed_leases_are_free() {
        let now = k8s_openapi::jiff::Timestamp::now();
        assert!(free(&lease(None, 0), now), "released");
        assert!(free(&lease(Some(""), 0), now), "released");
        assert!(free(&lease(Some("a"), 121), now), "a SIGKILLed pod's");
        assert!(
            !free(&lease(Some("a"), 5), now),
            "held: a slow renewal is not free"
        );
    }

    fn member_lease(name: &str, holder: &str, renewed_at_ms: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(2),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_millisecond(renewed_at_ms).unwrap(),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_member_holding_two_leases_expires_once_both_stop_changing() {
        // "b" holds two Leases (its first create's answer was lost): one frozen, one renewed
        // every 500 ms until b is SIGKILLed at round 4; "a" renews throughout.
        let start = Instant::now();
        let mut seen = Observed::default();
        let mut live_at = Vec::new();
        for round in 0..20i64 {
            let now = start + Duration::from_millis(500 * round as u64);
            let b_renewed = round.min(4) * 500;
            seen.update(
                vec![
                    member_lease("g-member-1", "a", round * 500),
                    member_lease("g-member-2", "b", 0),
                    member_lease("g-member-3", "b", b_renewed),
                ],
                now,
            );
            live_at.push(seen.live(now).contains("b"));
        }
        assert!(live_at[..5].iter().all(|l| *l), "b is live while it renews");
        // Its last renewal was seen at round 4 (2 s); 2 s later it is gone, and stays gone.
        assert!(live_at[9..].iter().all(|l| !*l), "{live_at:?}");
        assert!(seen.live(start + Duration::from_secs(10)).contains("a"));
    }

    #[test]
    fn a_lease_taken_over_by_another_replica_counts_as_a_change() {
        let start = Instant::now();
        let mut seen = Observed::default();
        seen.update(vec![member_lease("g-member-1", "old", 0)], start);
        let later = start + Duration::from_secs(5);
        // Same renewTime (the clocks agree to the millisecond), new holder: live from now.
        seen.update(vec![member_lease("g-member-1", "new", 0)], later);
        let live = seen.live(later);
        assert!(live.contains("new") && !live.contains("old"), "{live:?}");
        // Released: gone at once.
        let mut released = member_lease("g-member-1", "", 0);
        released.spec.as_mut().unwrap().holder_identity = None;
        seen.update(vec![released], later);
        assert!(seen.live(later).is_empty());
    }

    #[test]
    fn a_replica_claims_the_lease_it_already_holds_before_a_free_one() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut free_one = lease(None, 0);
        free_one.metadata.name = Some("g-member-free".into());
        let mut mine = lease(Some("me"), 0);
        mine.metadata.name = Some("g-member-mine".into());
        let mut held = lease(Some("other"), 0);
        held.metadata.name = Some("g-member-held".into());
        let leases = [free_one, held, mine];
        let order: Vec<_> = claimable(&leases, "me", now)
            .map(|l| l.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["g-member-mine", "g-member-free"]);
    }
}
