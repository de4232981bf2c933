//! Watches: resume, bookmarks, selectors, timeouts, 410s, and kube-runtime's watcher across
//! injected drops.

mod common;

use common::api_err;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use podcert_testkit::apiserver::{Faults, ServerConfig, TestServer};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

async fn start(history: usize) -> TestServer {
    TestServer::start(ServerConfig {
        watch_history: history,
        bookmark_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

/// Collects events until `n` non-bookmark events arrived (or 10 s passed).
async fn take_events(
    s: impl futures::Stream<Item = Result<WatchEvent<ConfigMap>, kube::Error>>,
    n: usize,
) -> Vec<(String, String)> {
    let fut = s
        .try_filter(|e| futures::future::ready(!matches!(e, WatchEvent::Bookmark(_))))
        .take(n)
        .map_ok(|e| match e {
            WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.unwrap()),
            WatchEvent::Error(s) => (
                "ERROR".into(),
                format!("{} {} {}", s.code, s.reason, s.message),
            ),
            WatchEvent::Bookmark(_) => unreachable!(),
        })
        .try_collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("events in time")
        .unwrap()
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    api.delete("a", &Default::default()).await.unwrap();
    let s = api.watch(&WatchParams::default(), &rv).await.unwrap();
    let evs = take_events(s, 3).await;
    assert_eq!(
        evs,
        vec![
            ("MODIFIED".into(), "a".into()),
            ("ADDED".into(), "b".into()),
            ("DELETED".into(), "a".into())
        ]
    );
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_current_state() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let s = api.watch(&WatchParams::default(), "0").await.unwrap();
    let creator = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        creator
            .create(&PostParams::default(), &cm("b", json!({})))
            .await
            .unwrap();
    });
    let evs = take_events(s, 2).await;
    assert_eq!(
        evs,
        vec![("ADDED".into(), "a".into()), ("ADDED".into(), "b".into())]
    );
}

#[tokio::test]
async fn bookmarks_are_sent_when_allowed() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut s = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Bookmark(b) => {
            assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse().unwrap())
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_ends_at_timeout_seconds() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let s = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap();
    let all: Vec<_> = tokio::time::timeout(Duration::from_secs(10), s.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(all.is_empty());
}

#[tokio::test]
async fn label_selector_transitions_become_added_and_deleted() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let o = api
        .create(&PostParams::default(), &cm("s", json!({"sel": "no"})))
        .await
        .unwrap();
    let s = api
        .watch(
            &WatchParams::default().labels("sel=yes"),
            &o.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap();
    for v in ["yes", "yes2", "yes"] {
        let l = if v == "yes2" {
            json!({"sel": "no", "other": "1"})
        } else {
            json!({"sel": v})
        };
        api.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": l}})),
        )
        .await
        .unwrap();
    }
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    // The cacher turns selector entry/exit into ADDED/DELETED (cacheWatcher.convertToWatchEvent).
    let evs = take_events(s, 4).await;
    let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, vec!["ADDED", "DELETED", "ADDED", "MODIFIED"]);
}

#[tokio::test]
async fn too_old_resource_version_is_an_error_event_410() {
    let srv = start(3).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let first = api
        .create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), json!({})))
            .await
            .unwrap();
    }
    // k8s.io/apiserver/pkg/storage/cacher/cacher.go Watch: getAllEventsSinceLocked fails with
    // NewResourceExpired("too old resource version: ..."), returned as newErrWatcher(err):
    // HTTP 200 and a single ERROR event carrying a 410 Expired Status.
    let s = api
        .watch(
            &WatchParams::default(),
            &first.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap();
    let evs = take_events(s, 1).await;
    assert_eq!(evs[0].0, "ERROR");
    assert!(
        evs[0]
            .1
            .starts_with("410 Expired too old resource version:"),
        "{}",
        evs[0].1
    );
}

#[tokio::test]
async fn expired_continue_token_is_410() {
    let srv = start(2).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("d{i}"), json!({})))
            .await
            .unwrap();
    }
    // storage/etcd3/store.go GetList: a compacted revision → errors.NewResourceExpired (410).
    let (code, reason, msg) = api_err(
        api.list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (410, "Expired"));
    assert!(
        msg.starts_with("The provided continue parameter is too old"),
        "{msg}"
    );
}

/// Runs a kube-runtime watcher and returns the set of names it has applied once `want` is
/// reached.
async fn watcher_sees(
    api: Api<ConfigMap>,
    cfg: watcher::Config,
    want: BTreeSet<String>,
    during: impl std::future::Future<Output = ()>,
) {
    use kube::runtime::WatchStreamExt;
    let mut stream = watcher(api, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    let collect = async {
        let mut seen = BTreeSet::new();
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                seen.insert(o.metadata.name.unwrap());
                if want.is_subset(&seen) {
                    return seen;
                }
            }
        }
        seen
    };
    let (seen, ()) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join(collect, during),
    )
    .await
    .expect("the watcher delivered every object in time");
    assert!(want.is_subset(&seen));
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: impl Iterator<Item = String>,
) {
    let mut want: BTreeSet<String> = want.collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !want.is_empty() {
            let n = rx.recv().await.expect("watcher alive");
            want.remove(&n);
        }
    })
    .await
    .expect("the watcher delivered every object in time")
}

#[tokio::test]
async fn runtime_watcher_survives_watch_drops_and_410() {
    use kube::runtime::WatchStreamExt;
    let srv = start(4).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                let _ = tx.send(o.metadata.name.unwrap());
            }
        }
    });
    // Phase 1: every watch connection is dropped every 150 ms while objects are created.
    srv.set_faults(Faults {
        drop_watch_every: Some(Duration::from_millis(150)),
        ..Faults::default()
    });
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("w{i}"), json!({})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    wait_for(&mut rx, (0..6).map(|i| format!("w{i}"))).await;

    // Phase 2: the watch is dropped and its re-watch stalled while 10 writes overflow the
    // 4-event history, so the resume answers 410 and the watcher must relist.
    srv.set_faults(Faults {
        stall_rate: 1.0,
        stall_for: Duration::from_millis(400),
        ..Faults::default()
    });
    srv.drop_watches();
    let yaml: String = (0..10)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x{i}\n  namespace: default\n"))
        .collect();
    srv.load_yaml(&yaml).unwrap();
    srv.set_faults(Faults::default());
    wait_for(&mut rx, (0..10).map(|i| format!("x{i}"))).await;
}

#[tokio::test]
async fn runtime_watcher_with_streaming_lists() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("pre", json!({})))
        .await
        .unwrap();
    let writer = api.clone();
    let during = async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .create(&PostParams::default(), &cm("post", json!({})))
            .await
            .unwrap();
    };
    let want = ["pre", "post"].iter().map(|s| s.to_string()).collect();
    watcher_sees(
        api,
        watcher::Config::default().streaming_lists(),
        want,
        during,
    )
    .await;
}

#[tokio::test]
async fn streaming_list_ends_initial_events_with_annotated_bookmark() {
    let srv = start(100).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    let mut s = api
        .watch(&WatchParams::streaming_lists(), "")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 1);
}

#[tokio::test]
async fn history_is_kept_per_resource() {
    let srv = start(3).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    // Busy other resources do not push configmap events out: the cacher keeps one watch
    // cache per resource type.
    let yaml: String = (0..10)
        .map(|i| format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i}\n  namespace: default\n"))
        .collect();
    srv.load_yaml(&yaml).unwrap();
    let s = api
        .watch(
            &WatchParams::default(),
            &a.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    assert_eq!(
        take_events(s, 1).await,
        vec![("ADDED".to_string(), "b".to_string())]
    );
}
