//! Test helpers shared by the kubelet tests: a throwaway CA that issues leaves for a request's
//! key with rcgen, and the Issued status a signer would write.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SubjectPublicKeyInfo};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// A leaf for `spki_der` valid over [not_before, not_after], as PEM.
    pub fn leaf(
        &self,
        spki_der: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let spki = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        params.signed_by(&spki, &self.issuer).unwrap().pem()
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Whole seconds, as certificates and the API carry them.
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

/// The status a signer writes to issue: one Issued condition, the chain and the three times.
/// Lifetime 2 h, backdated 1 min, refresh at notBefore + 1 h.
pub fn issued_status(ca: &TestCa, spki_der: &[u8], now: OffsetDateTime) -> Value {
    let nb = whole_seconds(now) - Duration::minutes(1);
    let na = nb + Duration::hours(2);
    let bra = nb + Duration::hours(1);
    status_with(ca.leaf(spki_der, nb, na), nb, na, bra)
}

pub fn status_with(
    chain: String,
    nb: OffsetDateTime,
    na: OffsetDateTime,
    bra: OffsetDateTime,
) -> Value {
    json!({
        "conditions": [{
            "type": "Issued",
            "status": "True",
            "reason": "Issued",
            "message": "issued by the test signer",
            "lastTransitionTime": rfc3339(whole_seconds(OffsetDateTime::now_utc())),
        }],
        "certificateChain": chain,
        "notBefore": rfc3339(nb),
        "notAfter": rfc3339(na),
        "beginRefreshAt": rfc3339(bra),
    })
}

pub fn denied_status(reason: &str, message: &str) -> Value {
    json!({
        "conditions": [{
            "type": "Denied",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(whole_seconds(OffsetDateTime::now_utc())),
        }],
    })
}

/// A minimal signer for end-to-end tests: polls PodCertificateRequests as an administrator and
/// answers each pending one (Issued with a leaf for the request's key, or Denied for pods in
/// `deny`); requests of pods in `hold` are left pending until released.
pub mod signer {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use der::{Decode, Encode};
    use kube::api::{Api, ListParams, Patch, PatchParams};
    use kube::core::DynamicObject;
    use kube::Client;
    use podcert_testkit::kubelet::issuance::terminal_condition;
    use podcert_testkit::kubelet::objects::pcr_resource;
    use podcert_testkit::kubelet::{Clock, PcrVersion};
    use serde_json::{json, Value};

    use super::{denied_status, issued_status, TestCa};

    #[derive(Clone, Default)]
    pub struct Controls {
        pub deny: Arc<Mutex<HashSet<String>>>,
        pub hold: Arc<Mutex<HashSet<String>>>,
        /// Requests answered so far.
        pub answered: Arc<Mutex<Vec<String>>>,
    }

    pub struct FakeSigner {
        pub controls: Controls,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeSigner {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// The requester's SPKI from either carrier.
    pub fn request_spki(spec: &Value) -> Option<Vec<u8>> {
        if let Some(p) = spec.get("pkixPublicKey").and_then(Value::as_str) {
            return B64.decode(p).ok();
        }
        let csr = B64.decode(spec.get("stubPKCS10Request")?.as_str()?).ok()?;
        let req = x509_cert::request::CertReq::from_der(&csr).ok()?;
        req.info.public_key.to_der().ok()
    }

    /// Starts the signer on `version`, using `clock` for the certificate times.
    pub fn spawn(
        client: Client,
        version: PcrVersion,
        clock: Clock,
        controls: Controls,
    ) -> FakeSigner {
        let ca = TestCa::new();
        let c = controls.clone();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            use kube::runtime::{watcher, WatchStreamExt};
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &pcr_resource(version));
            let mut events = Box::pin(
                watcher(api.clone(), watcher::Config::default())
                    .default_backoff()
                    .applied_objects(),
            );
            // A periodic relist answers requests whose pod was released from `hold`.
            let mut relist = tokio::time::interval(std::time::Duration::from_millis(250));
            loop {
                tokio::select! {
                    Some(Ok(obj)) = events.next() => answer(&client, version, &ca, &clock, &c, obj).await,
                    _ = relist.tick() => {
                        if let Ok(list) = api.list(&ListParams::default()).await {
                            for obj in list.items {
                                answer(&client, version, &ca, &clock, &c, obj).await;
                            }
                        }
                    }
                }
            }
        });
        FakeSigner { controls, task }
    }

    async fn answer(
        client: &Client,
        version: PcrVersion,
        ca: &TestCa,
        clock: &Clock,
        c: &Controls,
        obj: DynamicObject,
    ) {
        let v = serde_json::to_value(&obj).unwrap();
        if v.get("status")
            .is_some_and(|s| terminal_condition(s).is_some())
        {
            return;
        }
        let (Some(ns), Some(name)) = (obj.metadata.namespace.clone(), obj.metadata.name.clone())
        else {
            return;
        };
        let pod = v["spec"]["podName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if c.hold.lock().unwrap().contains(&pod) {
            return;
        }
        let status = if c.deny.lock().unwrap().contains(&pod) {
            denied_status("PolicyDenied", "this pod may not have a certificate")
        } else {
            let Some(spki) = request_spki(&v["spec"]) else {
                return;
            };
            issued_status(ca, &spki, clock.now())
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &pcr_resource(version));
        let patch = json!({ "status": status });
        if api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            c.answered.lock().unwrap().push(format!("{ns}/{name}"));
        }
    }
}
