//! podcert-core: the pure signing core of podcert-signer.
//!
//! From a PodCertificateRequest as the apiserver serves it to the status to write: decode
//! (`request`), check the proof of possession (`proof`), decide (`policy`), issue the leaf
//! (`issue`) with CA material (`ca`), all driven by `pipeline`; plus the CA rotation state
//! machine (`rotation`). Synchronous, clock passed in, no Kubernetes client, no I/O: what the
//! offline `sign` command, the benches and the fuzz targets build.

#![forbid(unsafe_code)]

pub mod ca;
pub mod duration;
pub mod issue;
pub mod key_type;
pub mod pipeline;
pub mod policy;
pub mod proof;
pub mod request;
pub mod rotation;
pub mod spiffe_bundle;
pub mod spiffe_id;
