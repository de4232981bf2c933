//! podcert-signer: a Kubernetes PodCertificate signer issuing SPIFFE X.509-SVIDs.
//!
//! `api`, `proof`, `policy`, `issue`, `ca` and `rotation` are pure and synchronous: no Kubernetes client.
//! They are all that is built without the default `controller` feature (the fuzz targets).

pub mod api;
pub mod ca;
#[cfg(feature = "controller")]
pub mod ca_rotation;
#[cfg(feature = "controller")]
pub mod ca_secret;
#[cfg(feature = "controller")]
pub mod ca_source;
#[cfg(feature = "controller")]
pub mod cli;
#[cfg(feature = "controller")]
pub mod controller;
#[cfg(feature = "controller")]
pub mod crd;
#[cfg(feature = "controller")]
pub mod discovery;
#[cfg(feature = "controller")]
pub mod http;
pub mod issue;
pub mod key_type;
#[cfg(feature = "controller")]
pub mod leader;
#[cfg(feature = "controller")]
pub mod namespaces;
pub mod policy;
pub mod proof;
#[cfg(feature = "controller")]
pub mod request_cache;
#[cfg(feature = "controller")]
pub mod request_events;
pub mod rotation;
pub mod signer;
#[cfg(feature = "controller")]
pub mod signers;
pub mod spiffe_id;
#[cfg(feature = "controller")]
pub mod telemetry;
#[cfg(feature = "controller")]
pub mod trust_bundle;
