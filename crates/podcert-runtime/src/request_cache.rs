//! What the controller keeps of each request in its watch cache: the pending ones only. A
//! decided request needs nothing more (its decision is final and nothing reconciles it), yet
//! even trimmed to its identity it cost about 3 KB of the signer's memory for as long as the
//! cluster kept it (15 minutes or more after its pod went; a 100,000-pod restart peaked at
//! 320 MiB). So a request that turns terminal leaves the cache as if deleted, and one listed
//! already terminal never enters it. Pending requests are trimmed as they arrive.

use kube::api::DynamicObject;
use kube::runtime::watcher;
use serde_json::Value;

/// Whether the raw object already carries a terminal condition (`Issued`, `Denied` or
/// `Failed` with `status: "True"`), checked before decoding.
pub fn is_terminal(obj: &DynamicObject) -> bool {
    obj.data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("status").and_then(Value::as_str) == Some("True")
                    && matches!(
                        c.get("type").and_then(Value::as_str),
                        Some("Issued" | "Denied" | "Failed")
                    )
            })
        })
}

/// The watch event the cache stores for `event`: a decided request becomes a delete (it
/// leaves the cache, and never triggers a reconcile), a decided one listed after a (re)start
/// is left out; everything else passes, trimmed.
pub fn keep_pending(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<DynamicObject>> {
    use watcher::Event;
    match event {
        Event::Apply(obj) if is_terminal(&obj) => Some(Event::Delete(obj)),
        Event::InitApply(obj) if is_terminal(&obj) => None,
        Event::Apply(mut obj) => {
            trim(&mut obj);
            Some(Event::Apply(obj))
        }
        Event::InitApply(mut obj) => {
            trim(&mut obj);
            Some(Event::InitApply(obj))
        }
        other => Some(other),
    }
}

/// Drops what no reconcile reads: managed fields, labels, annotations and owner references
/// (the pod's). A pending request keeps its spec and status: it is about to be decided.
fn trim(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    obj.metadata.annotations = None;
    obj.metadata.labels = None;
    obj.metadata.owner_references = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decided_requests_leave_the_cache_and_pending_ones_stay_trimmed() {
        use watcher::Event;
        let decided = || {
            object(json!({ "conditions": [{ "type": "Denied", "status": "True", "reason": "X" }] }))
        };
        let pending = || object(json!({}));
        // A decision seen on the watch removes the request from the cache.
        match keep_pending(Event::Apply(decided())) {
            Some(Event::Delete(o)) => assert_eq!(o.metadata.uid.as_deref(), Some("u-1")),
            other => panic!("{other:?}"),
        }
        // Listed already decided (a restart, a relist): never stored.
        assert!(keep_pending(Event::InitApply(decided())).is_none());
        // Pending: stored, trimmed.
        for e in [Event::Apply(pending()), Event::InitApply(pending())] {
            match keep_pending(e) {
                Some(Event::Apply(o)) | Some(Event::InitApply(o)) => {
                    assert!(o.metadata.managed_fields.is_none());
                    assert!(
                        o.data.get("spec").is_some(),
                        "a pending request keeps its spec"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // Deletions and the list's markers pass as they are.
        assert!(matches!(
            keep_pending(Event::Delete(pending())),
            Some(Event::Delete(_))
        ));
        assert!(matches!(keep_pending(Event::Init), Some(Event::Init)));
        assert!(matches!(
            keep_pending(Event::InitDone),
            Some(Event::InitDone)
        ));
    }

    fn object(status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "PodCertificateRequest",
            "metadata": {
                "name": "req-1", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                "creationTimestamp": "2026-11-25T10:00:00Z",
                "annotations": { "a": "b" },
                "managedFields": [{ "manager": "kubelet" }],
                "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pu" }],
            },
            "spec": { "signerName": "example.com/spiffe", "stubPKCS10Request": "MIIB" },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_pending_request_keeps_its_spec() {
        let mut obj = object(json!({}));
        let spec = obj.data["spec"].clone();
        trim(&mut obj);
        assert_eq!(obj.data["spec"], spec);
        assert!(!is_terminal(&obj));
        assert!(obj.metadata.managed_fields.is_none());
        assert!(obj.metadata.owner_references.is_none());
    }

    #[test]
    fn a_false_condition_is_not_a_decision() {
        let mut obj = object(json!({ "conditions": [{ "type": "Issued", "status": "False" }] }));
        trim(&mut obj);
        assert!(!is_terminal(&obj));
        assert!(obj.data.get("spec").is_some());
    }
}
