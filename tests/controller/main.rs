//! `podcert-signer run` end to end: the real binary against the API emulator (`podcert-testkit`),
//! plus `podcert-signer check` against healthy and broken set-ups, CA keys in a SoftHSM2 token, the CA Secret format against
//! the emulator and `podcert-testkit bench`/`chaos` with small
//! N. The harness that starts the signer is `tests/fixtures/e2e.rs`.

#[path = "../fixtures/mod.rs"]
mod fixtures;

mod bench_chaos;
mod ca;
mod ca_secret;
mod check;
mod crd;
mod e2e;
mod ha;
mod leader_stall;
mod pkcs11;
mod pod_data;
mod rotation;
