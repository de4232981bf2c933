//! Why a token operation failed (shared by the module loader, key reading and signing).

use cryptoki::error::Error as CkError;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("{0}")]
    Uri(#[from] crate::uri::UriError),
    #[error("PKCS#11 module: {0}")]
    Module(String),
    #[error("reading the PIN from {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Key(String),
    #[error("{uri}: {op}: {source}")]
    Call {
        uri: String,
        op: &'static str,
        #[source]
        source: CkError,
    },
}
