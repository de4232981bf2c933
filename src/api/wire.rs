//! Serde wire types for PodCertificateRequest in every served version (owned by the api task).
