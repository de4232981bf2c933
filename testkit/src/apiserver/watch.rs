//! Watch streams: newline-delimited `{type, object}` events, resumable from a
//! resourceVersion, with bookmarks, timeouts, selectors and streaming lists.

use super::ops::{self, ListOpts};
use super::registry::ResourceDef;
use super::store::{lock, EventType, StoredEvent};
use super::table;
use super::Shared;
use crate::api_status::{ApiError, FieldError};
use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// The watch query parameters.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: Option<bool>,
    pub rv_match: Option<String>,
    /// `Some(includeObject)` when the client asked for Table events (kubectl get -w).
    pub table: Option<String>,
}

/// The scope of one watch.
struct Scope {
    def: ResourceDef,
    version: String,
    ns: Option<String>,
    opts: ListOpts,
    table: Option<String>,
}

impl Scope {
    fn object(&self, sh: &Shared, obj: &Value) -> Value {
        let ext = super::convert::to_external(&self.def, obj, &self.version);
        match &self.table {
            Some(inc) => table::table(
                &self.def,
                &[ext],
                json!({"resourceVersion": super::meta::rv_of(obj)}),
                inc,
                sh.now(),
            ),
            None => ext,
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        ops::matches(&self.def, self.ns.as_deref(), &self.opts, obj)
    }

    /// What this watcher sees of a stored event (the cacher turns selector transitions into
    /// ADDED/DELETED).
    fn translate<'e>(&self, ev: &'e StoredEvent) -> Option<(&'static str, &'e Value)> {
        if ev.group != self.def.group || ev.resource != self.def.resource {
            return None;
        }
        let now = self.matches(&ev.object);
        let was = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        match ev.kind {
            EventType::Added => now.then_some(("ADDED", &ev.object)),
            EventType::Deleted => was.then_some(("DELETED", &ev.object)),
            EventType::Modified => match (was, now) {
                (true, true) => Some(("MODIFIED", &ev.object)),
                (false, true) => Some(("ADDED", &ev.object)),
                (true, false) => Some(("DELETED", &ev.object)),
                (false, false) => None,
            },
        }
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// ValidateListOptions for streaming lists (apimachinery/pkg/apis/meta/internalversion/validation).
fn validate(p: &WatchParams) -> Result<(), ApiError> {
    if p.send_initial_events.is_some() {
        let mut errs = Vec::new();
        if p.rv_match.as_deref() != Some("NotOlderThan") {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if p.send_initial_events == Some(true) && !p.bookmarks {
            errs.push(FieldError::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is set",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs));
        }
    } else if p.rv_match.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch",
            )],
        ));
    }
    Ok(())
}

/// Starts a watch and returns the streaming response.
pub fn serve(
    sh: Arc<Shared>,
    def: ResourceDef,
    version: String,
    ns: Option<String>,
    opts: ListOpts,
    p: WatchParams,
) -> Result<Response, ApiError> {
    validate(&p)?;
    ops::check_field_selector(&def, &opts.field)?;
    let scope = Scope {
        def,
        version,
        ns,
        opts,
        table: p.table.clone(),
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let (rx, start_rv) = {
        let st = lock(&sh.state);
        let requested = match p.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            // storage.ParseResourceVersion's storage.InvalidError is no APIStatus: a 500
            // with no reason.
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                let detail = format!("strconv.ParseUint: parsing {s:?}: invalid syntax");
                ApiError::unknown(
                    FieldError::invalid("resourceVersion", json!(s), detail).message(),
                )
            })?),
        };
        let synthetic = p.send_initial_events == Some(true) || requested.is_none();
        if synthetic {
            for (_, o) in st.objects(&scope.def.group, &scope.def.resource) {
                if scope.matches(o) {
                    initial.push(line("ADDED", scope.object(&sh, o)));
                }
            }
            if p.send_initial_events == Some(true) {
                initial.push(bookmark(&scope, st.rv, true));
            }
        } else if let Some(rv) = requested {
            match st.events_since(&scope.def.group, &scope.def.resource, rv) {
                Some(evs) => {
                    for ev in evs {
                        if let Some((k, o)) = scope.translate(&ev) {
                            initial.push(line(k, scope.object(&sh, o)));
                        }
                    }
                }
                None => {
                    // cacher.Watch: a too-old resourceVersion is not an HTTP error but an
                    // ERROR event in a 200 stream (newErrWatcher), with a 410 Expired Status.
                    let e = ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        st.oldest_resumable(&scope.def.group, &scope.def.resource) + 1
                    ));
                    initial.push(line("ERROR", e.to_status()));
                    return Ok(stream_response(sh.clone(), initial, None, scope, p, 0));
                }
            }
        }
        (st.subscribe(), st.rv)
    };
    Ok(stream_response(sh, initial, Some(rx), scope, p, start_rv))
}

fn bookmark(scope: &Scope, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": scope.def.kind, "apiVersion": scope.def.group_version(&scope.version), "metadata": meta}),
    )
}

fn stream_response(
    sh: Arc<Shared>,
    initial: Vec<Bytes>,
    rx: Option<broadcast::Receiver<Arc<StoredEvent>>>,
    scope: Scope,
    p: WatchParams,
    start_rv: u64,
) -> Response {
    let (tx, mut out) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for b in initial {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        let mut drop_rx = sh.drop_watches.subscribe();
        let timeout = tokio::time::sleep(p.timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(timeout);
        let mut tick = tokio::time::interval(sh.bookmark_interval);
        tick.tick().await;
        let mut last_rv = start_rv;
        loop {
            tokio::select! {
                _ = &mut timeout => return,
                _ = drop_rx.changed() => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {
                    if p.bookmarks && tx.send(bookmark(&scope, last_rv, false)).await.is_err() {
                        return;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        last_rv = ev.rv;
                        if let Some((k, o)) = scope.translate(&ev) {
                            if tx.send(line(k, scope.object(&sh, o))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Lagging behind or shut down: end the stream; the client resumes.
                    Err(_) => return,
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        out.poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::convert::Infallible>))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
