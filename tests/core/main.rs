//! The pure signing core (podcert-core) and the CA file helpers, in process: no signer binary,
//! no emulated cluster. One module per topic; the shared fixtures are in `tests/fixtures/`.

#[path = "../fixtures/mod.rs"]
mod fixtures;

mod ca_files;
mod ca_generate;
mod ca_load;
mod issue_lifetime;
mod issue_profile;
mod issue_tls;
mod ml_dsa;
mod proof_refusals;
mod proof_vectors;
mod rotation_incidents;
mod rotation_lifecycle;
mod rotation_state;
mod rotation_trigger;
mod sign_vectors;
mod wire_decode;
