//! podcert-runtime: the controller that runs podcert-core against a cluster.
//!
//! The request controller (`controller`, `request_cache`, `request_events`), the manager of
//! PodCertificateSigner objects (`signer_manager`), the CA backends behind one trait and the
//! rotation driver (`ca_backend`; bounded, permission-checked file I/O in `ca_files`), the trust bundle
//! publisher (`trust_bundle`), leader election (`leader`), namespace labels (`namespaces`),
//! pods and Services for pod-aware policies (`pod_lookup`),
//! API discovery (`discovery`), metrics and logs (`telemetry`) and the operations endpoint
//! (`http`).

#![forbid(unsafe_code)]

pub mod app;
pub mod bundle_preview;
pub mod ca_backend;
pub mod ca_files;
pub mod client;
pub mod context;
pub mod controller;
pub mod discovery;
pub mod http;
pub mod leader;
pub mod membership;
pub mod namespaces;
pub mod pod_lookup;
pub mod request_cache;
pub mod request_events;
pub mod signer_manager;
pub mod tasks;
pub mod telemetry;
pub mod trust_bundle;
