//! The object store: every object in its internal (stored) form, one global resourceVersion,
//! a bounded history of watch events per resource (like the cacher's per-resource watch
//! cache) and a log of successful writes.

use super::registry::Registry;
use crate::rules::Lookup;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// `(namespace or "", name)`: objects sort like etcd keys.
pub type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub rv: u64,
    pub kind: EventType,
    pub group: String,
    pub resource: String,
    /// The object after the change (for DELETED: its last state, at the deletion's rv).
    pub object: Value,
    /// The object before the change (MODIFIED and DELETED).
    pub prev: Option<Value>,
}

/// One successful write, for tests that count writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// create, update, patch, delete.
    pub verb: String,
    pub group: String,
    pub resource: String,
    /// `status` for status writes, empty otherwise.
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub username: String,
    pub resource_version: u64,
}

pub struct State {
    pub rv: u64,
    pub registry: Registry,
    objects: HashMap<(String, String), BTreeMap<Key, Value>>,
    /// The most recent events of each resource, oldest first.
    history: HashMap<(String, String), VecDeque<Arc<StoredEvent>>>,
    history_cap: usize,
    /// Per resource: events with rv <= this are no longer in its history.
    compacted: HashMap<(String, String), u64>,
    pub log: Vec<WriteRecord>,
    /// Writes refused for a stale resourceVersion, per (resource, subresource): a replica
    /// that lost a race (chaos reports them as duplicate work).
    pub stale_writes: HashMap<(String, String), u64>,
    tx: broadcast::Sender<Arc<StoredEvent>>,
    /// The `ClusterTrustBundleProjection` feature gate (`ServerConfig`).
    pub cluster_trust_bundle_projection: bool,
    /// The `PodCertificateMLDSA` feature gate (`ServerConfig`).
    pub pod_certificate_mldsa: bool,
}

impl State {
    pub fn new(registry: Registry, history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        State {
            rv: 1,
            registry,
            objects: HashMap::new(),
            history: HashMap::new(),
            history_cap: history_cap.max(1),
            compacted: HashMap::new(),
            log: Vec::new(),
            stale_writes: HashMap::new(),
            tx,
            cluster_trust_bundle_projection: true,
            pod_certificate_mldsa: false,
        }
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get_obj(&self, group: &str, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(group.to_string(), resource.to_string()))?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// All objects of a resource in key order.
    pub fn objects(&self, group: &str, resource: &str) -> Vec<(&Key, &Value)> {
        match self.objects.get(&(group.to_string(), resource.to_string())) {
            Some(m) => m.iter().collect(),
            None => Vec::new(),
        }
    }

    /// Stores `obj` (already carrying its new resourceVersion) and records the event.
    pub fn put(&mut self, group: &str, resource: &str, obj: Value, rv: u64) -> Option<Value> {
        let key = (
            super::meta::namespace_of(&obj).to_string(),
            super::meta::name_of(&obj).to_string(),
        );
        let prev = self
            .objects
            .entry((group.to_string(), resource.to_string()))
            .or_default()
            .insert(key, obj.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(StoredEvent {
            rv,
            kind,
            group: group.into(),
            resource: resource.into(),
            object: obj,
            prev: prev.clone(),
        });
        prev
    }

    /// Removes an object; `last` is its final state stamped with the deletion's rv.
    pub fn remove(
        &mut self,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
        rv: u64,
    ) -> Option<Value> {
        let prev = self
            .objects
            .get_mut(&(group.to_string(), resource.to_string()))?
            .remove(&(ns.to_string(), name.to_string()))?;
        let mut last = prev.clone();
        super::meta::meta_mut(&mut last)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        self.emit(StoredEvent {
            rv,
            kind: EventType::Deleted,
            group: group.into(),
            resource: resource.into(),
            object: last.clone(),
            prev: Some(prev),
        });
        Some(last)
    }

    /// Drops every object of a resource (a deleted CRD), with DELETED events.
    pub fn remove_all(&mut self, group: &str, resource: &str) {
        let keys: Vec<Key> = self
            .objects(group, resource)
            .into_iter()
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in keys {
            let rv = self.next_rv();
            self.remove(group, resource, &ns, &name, rv);
        }
    }

    fn emit(&mut self, ev: StoredEvent) {
        let ev = Arc::new(ev);
        let key = (ev.group.clone(), ev.resource.clone());
        let h = self.history.entry(key.clone()).or_default();
        h.push_back(ev.clone());
        while h.len() > self.history_cap {
            if let Some(old) = h.pop_front() {
                self.compacted.insert(key.clone(), old.rv);
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Events after `rv` for a resource, or `None` when some of them were compacted away.
    pub fn events_since(
        &self,
        group: &str,
        resource: &str,
        rv: u64,
    ) -> Option<Vec<Arc<StoredEvent>>> {
        if rv < self.oldest_resumable(group, resource) {
            return None;
        }
        let key = (group.to_string(), resource.to_string());
        Some(
            self.history
                .get(&key)
                .map(|h| h.iter().filter(|e| e.rv > rv).cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// The oldest resourceVersion a watch of this resource can still resume from.
    pub fn oldest_resumable(&self, group: &str, resource: &str) -> u64 {
        self.compacted
            .get(&(group.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.tx.subscribe()
    }
}

impl Lookup for State {
    fn get(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.get_obj(group, resource, namespace.unwrap_or(""), name)
            .cloned()
    }
    fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        self.objects(group, resource)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Locks the state; a poisoned lock (a panicked request) still holds consistent data because
/// every mutation completes before anything that could panic.
pub fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read access to the store for tests: objects in stored (internal) form and the write log.
#[derive(Clone)]
pub struct StoreView {
    pub(crate) state: Arc<Mutex<State>>,
}

impl StoreView {
    /// One object; `ns` is `None` (or empty) for cluster-scoped resources.
    pub fn get(&self, group: &str, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        lock(&self.state)
            .get_obj(group, resource, ns.unwrap_or(""), name)
            .cloned()
    }

    /// Every object of a resource, all namespaces, in key order.
    pub fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        lock(&self.state)
            .objects(group, resource)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every successful write so far, oldest first.
    pub fn writes(&self) -> Vec<WriteRecord> {
        lock(&self.state).log.clone()
    }

    /// Writes of `resource`/`subresource` ("" for the main resource) refused because their
    /// resourceVersion was stale.
    pub fn stale_writes(&self, resource: &str, subresource: &str) -> u64 {
        lock(&self.state)
            .stale_writes
            .get(&(resource.to_string(), subresource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// How many successful writes match: `subresource` `Some("status")` counts status writes.
    pub fn count_writes(
        &self,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        ns: &str,
        name: &str,
    ) -> usize {
        lock(&self.state)
            .log
            .iter()
            .filter(|w| {
                w.group == group
                    && w.resource == resource
                    && w.namespace == ns
                    && w.name == name
                    && subresource.is_none_or(|s| w.subresource == s)
            })
            .count()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.state).rv
    }
}
