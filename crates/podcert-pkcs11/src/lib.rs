//! CA keys in a PKCS#11 token (a hardware HSM, a cloud HSM's client library, SoftHSM2).
//!
//! [`Pkcs11Key`] implements rcgen's [`rcgen::SigningKey`]: rcgen builds each certificate and
//! the token signs it (C_Sign); the private key never enters the process. Sessions are pooled
//! (one per concurrent signature); a session lost or a token removed is reopened and the
//! signature retried once, and failures are reported (never a panic) so the caller retries
//! later. [`Pkcs11Resolver`] plugs this into podcert-core as a [`podcert_core::ca::KeyResolver`]
//! for `pkcs11:` key references.

#![forbid(unsafe_code)]

pub mod ca;
mod error;
mod key;
mod module;
mod pubkey;
mod resolver;
pub mod uri;

pub use error::Pkcs11Error;
pub use key::{generate, Pin, Pkcs11Key};
pub use resolver::Pkcs11Resolver;
pub use uri::{is_pkcs11_uri, Pkcs11Uri, UriError};
pub mod softhsm;
