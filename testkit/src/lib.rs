//! podcert-testkit: a strict in-memory Kubernetes API emulator and a kubelet emulator, the
//! instruments podcert-signer is tested with (no kube-apiserver runs on our machines).

pub mod api_status;
pub mod apiserver;
pub mod bench;
pub mod chaos;
pub mod demo;
pub mod kubelet;
pub mod rules;
