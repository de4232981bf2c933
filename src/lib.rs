//! podcert-signer: a Kubernetes PodCertificate signer issuing SPIFFE X.509-SVIDs.
//!
//! `api`, `proof`, `policy`, `issue` and `ca` are pure and synchronous: no Kubernetes client.

pub mod api;
pub mod ca;
pub mod cli;
pub mod issue;
pub mod key_type;
pub mod policy;
pub mod proof;
pub mod signer;
pub mod spiffe_id;
