//! The `podcert-signer` command line without a cluster (`sign`, `sign --signer FILE`, `ca init`,
//! `inspect`), and CA material made by the `openssl` CLI. The shared fixtures are in
//! `tests/fixtures/`.

#[path = "../fixtures/mod.rs"]
mod fixtures;

mod ca_openssl;
mod ml_dsa_go;
mod sign_cli;
mod sign_signer_policy;
