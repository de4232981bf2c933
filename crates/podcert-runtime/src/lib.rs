//! podcert-runtime: the controller that runs podcert-core against a cluster.
//!
//! The request controller (`controller`, `request_cache`, `request_events`), the manager of
//! PodCertificateSigner objects (`signer_manager`), where the CA comes from and how it is
//! rotated (`ca_source`, `ca_rotation`, `ca_files`, `ca_secret_write`), the trust bundle
//! publisher (`trust_bundle`), leader election (`leader`), namespace labels (`namespaces`),
//! API discovery (`discovery`), metrics and logs (`telemetry`) and the operations endpoint
//! (`http`).

#![forbid(unsafe_code)]

pub mod ca_files;
pub mod ca_rotation;
pub mod ca_secret_write;
pub mod ca_source;
pub mod controller;
pub mod discovery;
pub mod http;
pub mod leader;
pub mod namespaces;
pub mod request_cache;
pub mod request_events;
pub mod signer_manager;
pub mod telemetry;
pub mod trust_bundle;
