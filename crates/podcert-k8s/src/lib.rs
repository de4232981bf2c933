//! podcert-k8s: between Kubernetes objects and podcert-core's types.
//!
//! The CA Secret's format (`ca_secret`), the PodCertificateSigner CRD and its conversion to
//! what a signer runs with (`crd`, `settings`), the trust bundle objects (`trust_bundle`).
//! Objects in, core types out: no API calls (those are the runtime's).

#![forbid(unsafe_code)]

pub mod ca_secret;
pub mod crd;
pub mod settings;
pub mod trust_bundle;
