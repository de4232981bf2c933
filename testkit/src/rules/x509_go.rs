//! Certificate parsing as strict as Go's `x509.ParseCertificate`, which kube-apiserver uses for
//! PodCertificateRequest chains and ClusterTrustBundles: x509-parser alone accepts bytes after
//! the certificate (Go: "x509: trailing data") and negative serial numbers (Go 1.23+:
//! "x509: negative serial number"), which kube-apiserver refuses with 422.

use x509_parser::certificate::X509Certificate;

/// Parses one DER certificate, refusing what Go's parser refuses.
pub fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    // DER INTEGER: a set top bit of the first content byte is a negative number.
    if cert.raw_serial().first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    Some(cert)
}
