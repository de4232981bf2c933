//! Each injected fault's effect.

mod common;

use common::{api_err, raw, server};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use podcert_testkit::apiserver::Faults;
use serde_json::json;
use std::time::Duration;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

// Raw requests: kube::Client retries 429/503 on its own, which would hide the answer.
const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn error_rate_answers_5xx() {
    let srv = server().await;
    let t = srv.admin_token();
    for (code, reason) in [(503, "ServiceUnavailable"), (500, "InternalError")] {
        srv.set_faults(Faults {
            error_rate: 1.0,
            error_code: code,
            ..Faults::default()
        });
        let r = raw(&srv, "GET", CMS, Some(&t), "", "").await;
        assert_eq!(r.code, code);
        assert_eq!(r.json()["reason"], reason);
    }
    srv.set_faults(Faults::default());
    assert_eq!(raw(&srv, "GET", CMS, Some(&t), "", "").await.code, 200);
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let srv = server().await;
    srv.set_faults(Faults {
        error_rate: 1.0,
        error_code: 429,
        retry_after_seconds: 7,
        ..Faults::default()
    });
    let r = raw(
        &srv,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        Some(&srv.admin_token()),
        "",
        "",
    )
    .await;
    assert_eq!(r.code, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    let s = r.json();
    assert_eq!(s["reason"], "TooManyRequests");
    assert_eq!(s["details"]["retryAfterSeconds"], 7);
}

#[tokio::test]
async fn conflict_rate_refuses_writes_only() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    srv.set_faults(Faults {
        conflict_rate: 1.0,
        ..Faults::default()
    });
    let (code, reason, msg) = api_err(
        api.create(&PostParams::default(), &cm("c"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("the object has been modified"), "{msg}");
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let srv = server().await;
    let t = srv.admin_token();
    let faults = Faults {
        seed: 42,
        error_rate: 0.5,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        srv.set_faults(faults.clone());
        let mut outcomes = Vec::new();
        for _ in 0..16 {
            outcomes.push(raw(&srv, "GET", CMS, Some(&t), "", "").await.code);
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&503),
        "{:?}",
        runs[0]
    );
}

#[tokio::test]
async fn delay_and_stall_hold_responses_back() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    for faults in [
        Faults {
            delay: Duration::from_secs(30),
            ..Faults::default()
        },
        Faults {
            stall_rate: 1.0,
            stall_for: Duration::from_secs(30),
            ..Faults::default()
        },
    ] {
        srv.set_faults(faults);
        let held =
            tokio::time::timeout(Duration::from_millis(300), api.list(&ListParams::default()))
                .await;
        assert!(held.is_err(), "the response was not held back");
    }
    srv.set_faults(Faults::default());
    tokio::time::timeout(Duration::from_secs(10), api.list(&ListParams::default()))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn watch_connections_are_dropped() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    srv.set_faults(Faults {
        drop_watch_every: Some(Duration::from_millis(100)),
        ..Faults::default()
    });
    // A 290 s watch ends early: the server closed it.
    let s = api
        .watch(&WatchParams::default().timeout(290), "0")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.collect::<Vec<_>>())
        .await
        .expect("the watch was dropped");
}

#[tokio::test]
async fn clock_offset_shifts_server_timestamps() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    srv.set_clock_offset(time::Duration::days(1));
    let made = api.create(&PostParams::default(), &cm("t")).await.unwrap();
    let created = made.metadata.creation_timestamp.unwrap().0;
    let ahead = created.as_second() - jiff_now();
    assert!(
        ahead > 23 * 3600,
        "creationTimestamp is only {ahead}s ahead"
    );
}

fn jiff_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
