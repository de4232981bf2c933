//! podcert-signer: a Kubernetes PodCertificate signer issuing SPIFFE X.509-SVIDs.
//!
//! `api`, `proof`, `policy`, `issue`, `ca` and `rotation` are pure and synchronous: no Kubernetes client.

pub mod api;
pub mod ca;
pub mod ca_rotation;
pub mod ca_secret;
pub mod ca_source;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod http;
pub mod issue;
pub mod key_type;
pub mod leader;
pub mod namespaces;
pub mod policy;
pub mod proof;
pub mod request_cache;
pub mod request_events;
pub mod rotation;
pub mod signer;
pub mod signers;
pub mod spiffe_id;
pub mod telemetry;
pub mod trust_bundle;
