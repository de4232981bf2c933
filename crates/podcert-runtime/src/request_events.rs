//! Events on PodCertificateRequests, best effort. Each request gets at most one (Issued, or its
//! denial), so kube-runtime's `Recorder` and its series cache (scanned in full on every
//! publish and kept six minutes) only cost here: quadratic CPU and a cached Event per request
//! during a burst. This publisher creates the same events.k8s.io/v1 Event directly, from a
//! bounded queue drained by a few workers; when the queue is full the event is dropped, never
//! the decision.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::Resource;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};
use tracing::debug;

use crate::tasks::Tasks;

/// Events waiting to be written; beyond this they are dropped.
const QUEUE: usize = 1024;
/// Concurrent event writes.
const WORKERS: usize = 4;

/// Queues events for a few background writers.
#[derive(Clone)]
pub struct EventPublisher {
    reporter: Reporter,
    tx: mpsc::Sender<K8sEvent>,
}

impl EventPublisher {
    /// Starts the writers in `tasks` (they end with it, or when every publisher is dropped).
    pub fn spawn(client: kube::Client, reporter: Reporter, tasks: &Tasks) -> Self {
        let (tx, rx) = mpsc::channel::<K8sEvent>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let (client, rx) = (client.clone(), rx.clone());
            tasks.spawn(async move {
                loop {
                    let Some(event) = rx.lock().await.recv().await else {
                        return;
                    };
                    let ns = event
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    if let Err(e) = create(&client, &ns, &event).await {
                        debug!(error = %e, "could not record an event");
                    }
                }
            });
        }
        EventPublisher { reporter, tx }
    }

    /// Queues `ev` about `regarding`; drops it if the queue is full.
    pub fn publish(&self, ev: &Event, regarding: &ObjectReference) {
        let event = build(&self.reporter, ev, regarding, Timestamp::now());
        if self.tx.try_send(event).is_err() {
            debug!("event queue full; dropping an event");
        }
    }
}

/// Creates `event`; the answer (the Event again) is not decoded, nothing reads it.
async fn create(client: &kube::Client, ns: &str, event: &K8sEvent) -> Result<(), kube::Error> {
    let body = serde_json::to_vec(event).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(K8sEvent::url_path(&(), Some(ns)))
        .create(&PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(req).await.map(drop)
}

/// The Event kube-runtime's `Recorder` would create for a first occurrence.
pub fn build(
    reporter: &Reporter,
    ev: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> K8sEvent {
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        note: ev.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_ref().unwrap_or(&reporter.controller),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match ev.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        related: ev.secondary.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_first_occurrence_in_the_requests_namespace() {
        let reporter = Reporter {
            controller: "podcert-signer".into(),
            instance: Some("replica-1".into()),
        };
        let regarding = ObjectReference {
            name: Some("req-1".into()),
            namespace: Some("team-a".into()),
            kind: Some("PodCertificateRequest".into()),
            ..Default::default()
        };
        let ev = Event {
            type_: EventType::Warning,
            reason: "InvalidProof".into(),
            note: Some("bad".into()),
            action: "Denied".into(),
            secondary: None,
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let e = build(&reporter, &ev, &regarding, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("req-1."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("InvalidProof"));
        assert_eq!(e.action.as_deref(), Some("Denied"));
        assert_eq!(e.reporting_instance.as_deref(), Some("replica-1"));
        assert_eq!(e.regarding, Some(regarding));
        assert!(e.series.is_none());
    }
}
