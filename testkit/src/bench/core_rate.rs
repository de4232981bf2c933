//! The signing core measured in-process on one thread: `core` is what the controller does per
//! request (decode the object, check the key proof, decide, issue, encode the status); `raw`
//! is bare leaf issuance with the same CA and profile (no decoding, proof or policy), the
//! ceiling the core can approach.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use podcert_core::ca::{generate_self_signed, Ca, CaKeyType};
use podcert_core::issue::{self, LeafProfile};
use podcert_core::pipeline;
use podcert_core::policy::{self, Decision, SignerConfig};
use podcert_core::proof::{self, SubjectKey};
use podcert_core::request::{wire, ConditionType};
use podcert_core::spiffe_id::TrustDomain;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::kubelet::objects::{self, PodInfo};
use crate::kubelet::{KeySource, KeyType, KubeletConfig, KubeletVersion, PcrVersion};

const SIGNER: &str = "podcert.dev/spiffe";

/// Requests ready to be decided: distinct keys, as the signer would see them in its cache.
pub struct Fixture {
    ca: Ca,
    cfg: SignerConfig,
    requests: Vec<Value>,
    decided: Vec<(SubjectKey, LeafProfile)>,
    now: OffsetDateTime,
}

impl Fixture {
    /// `count` requests with fresh `key_type` keys (stub PKCS#10 carrier, as 1.36+ kubelets
    /// send) under a fresh CA of `ca_key_type`.
    pub fn new(key_type: KeyType, ca_key_type: CaKeyType, count: usize) -> anyhow::Result<Self> {
        let now = OffsetDateTime::now_utc();
        let generated = generate_self_signed(
            ca_key_type,
            Some("cluster.local"),
            time::Duration::days(30),
            now,
        )?;
        let ca = Ca::from_pem(&generated.cert_pem, &generated.key_pem, None, now)?;
        let cfg = SignerConfig::new(SIGNER, TrustDomain::new("cluster.local")?)?;
        let kcfg = KubeletConfig {
            kube_version: KubeletVersion::V1_37,
            signer_name: SIGNER.into(),
            ..KubeletConfig::default()
        };
        let keys = KeySource::rsa_pool(4);
        let mut requests = Vec::with_capacity(count);
        let mut decided = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let info = PodInfo {
                index: i,
                namespace: "bench".into(),
                pod: format!("pod-{i}"),
                pod_uid: format!("00000000-0000-4000-8000-{i:012}"),
                service_account: "default".into(),
                service_account_uid: "00000000-0000-4000-9000-000000000001".into(),
                node: "node-0".into(),
                node_uid: "00000000-0000-4000-a000-000000000001".into(),
                key_type,
                user_annotations: Default::default(),
            };
            let key = keys.key(key_type)?;
            let mut obj = objects::pcr(&kcfg, PcrVersion::V1, &info, &key)?;
            obj["metadata"]["name"] = json!(format!("req-{i}"));
            obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-b000-{i:012}"));
            obj["metadata"]["resourceVersion"] = json!((1000 + i).to_string());
            obj["metadata"]["generation"] = json!(1);
            obj["metadata"]["creationTimestamp"] = json!(wire::format_time(now));
            let req = wire::from_value(obj.clone()).context("decoding a bench request")?;
            let subject = proof::extract_subject_key(&req.request)
                .map_err(|e| anyhow::anyhow!("bench request key refused: {e}"))?;
            let Decision::Issue(profile) = policy::decide(&req.request, &subject, &cfg) else {
                bail!("the bench request for a {key_type:?} key was denied");
            };
            requests.push(obj);
            decided.push((subject, profile));
        }
        Ok(Fixture {
            ca,
            cfg,
            requests,
            decided,
            now,
        })
    }

    /// One request through the whole core; returns the encoded status's length.
    pub fn core_once(&self, i: usize) -> anyhow::Result<usize> {
        let raw = self.requests[i % self.requests.len()].clone();
        let req = wire::from_value(raw)?;
        let outcome = pipeline::process(&req.request, &self.cfg, &self.ca, self.now)?;
        if outcome.status.condition != ConditionType::Issued {
            bail!(
                "bench request {i} was not issued: {}",
                outcome.status.message
            );
        }
        let status = wire::status_json(&outcome.status, req.generation(), self.now);
        Ok(serde_json::to_vec(&status)?.len())
    }

    /// Decoding alone (what the controller does before anything else).
    pub fn decode_once(&self, i: usize) -> anyhow::Result<usize> {
        let raw = self.requests[i % self.requests.len()].clone();
        Ok(wire::from_value(raw)?.request.name.len())
    }

    /// Key extraction and proof (or stub CSR signature) verification alone.
    pub fn proof_once(&self, i: usize) -> anyhow::Result<usize> {
        let raw = &self.requests[i % self.requests.len()];
        let req = wire::from_value(raw.clone())?;
        let key = proof::extract_subject_key(&req.request)
            .map_err(|e| anyhow::anyhow!("bench request key refused: {e}"))?;
        Ok(key.spki_der.len())
    }

    /// One bare leaf issuance; returns the leaf's DER length.
    pub fn raw_once(&self, i: usize) -> anyhow::Result<usize> {
        let (key, profile) = &self.decided[i % self.decided.len()];
        Ok(issue::issue_leaf(&self.ca, key, profile, self.now)?
            .leaf_der
            .len())
    }
}

/// Operations per second of `op`, run on this thread for about `budget`.
pub fn per_second(
    budget: Duration,
    mut op: impl FnMut(usize) -> anyhow::Result<usize>,
) -> anyhow::Result<f64> {
    // Warm-up: caches, lazy statics, the allocator.
    for i in 0..16 {
        op(i)?;
    }
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < budget || n == 0 {
        std::hint::black_box(op(n)?);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Per-second rates of the core and its parts, each on one thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreRates {
    /// The whole core (`Fixture::core_once`).
    pub core: f64,
    /// Bare leaf issuance (`Fixture::raw_once`).
    pub raw: f64,
    /// Key extraction and proof verification (`Fixture::proof_once`).
    pub proof: f64,
}

/// The core, raw and proof rates for one key type and CA key type.
pub fn measure(
    key_type: KeyType,
    ca_key_type: CaKeyType,
    budget: Duration,
) -> anyhow::Result<CoreRates> {
    let f = Fixture::new(key_type, ca_key_type, 256)?;
    let raw = per_second(budget, |i| f.raw_once(i))?;
    let core = per_second(budget, |i| f.core_once(i))?;
    let proof = per_second(budget, |i| f.proof_once(i))?;
    Ok(CoreRates { core, raw, proof })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_issues_through_core_and_raw() {
        for kt in [KeyType::Ed25519, KeyType::EcdsaP256] {
            let f = Fixture::new(kt, CaKeyType::EcdsaP256, 3).unwrap();
            for i in 0..3 {
                assert!(f.core_once(i).unwrap() > 0);
                assert!(f.raw_once(i).unwrap() > 0);
            }
        }
    }
}
