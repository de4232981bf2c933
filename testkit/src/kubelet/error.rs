//! The emulator's errors.

use super::keys::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("{action} failed: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("the API server serves no PodCertificateRequest version a {kubelet} kubelet knows ({known})")]
    NoPcrVersion { kubelet: String, known: String },
    #[error("{0} came back from the API server without metadata.uid")]
    MissingUid(String),
    #[error("building {what} failed: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the configuration is unusable: {0}")]
    Config(String),
}

impl KubeletError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        KubeletError::Api {
            action: action.into(),
            source,
        }
    }
}

/// The HTTP status code of an API error, if the error is one.
pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
