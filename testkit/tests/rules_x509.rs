//! Certificates are parsed as strictly as Go's x509.ParseCertificate (found by the
//! differential test against kube-apiserver 1.37.2, scripts/difftest.sh: trailing bytes and
//! negative serials passed the emulator and were 422 in Go).

use podcert_testkit::rules::{ctb, x509_go};
use rcgen::{CertificateParams, IsCa, KeyPair, SerialNumber};
use serde_json::json;

const SERIAL: [u8; 8] = [0x7f, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07];

fn ca_der() -> Vec<u8> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.serial_number = Some(SerialNumber::from_slice(&SERIAL));
    p.self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec()
}

/// The same certificate with its serial's sign bit set (the signature no longer matches,
/// which parsing does not check).
fn negative(der: &[u8]) -> Vec<u8> {
    let at = der.windows(SERIAL.len()).position(|w| w == SERIAL).unwrap();
    let mut d = der.to_vec();
    d[at] = 0xff;
    d
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn trailing_bytes_and_negative_serials_do_not_parse() {
    let der = ca_der();
    assert!(x509_go::parse_certificate(&der).is_some());
    let mut trailing = der.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert!(x509_go::parse_certificate(&trailing).is_none());
    assert!(x509_go::parse_certificate(&negative(&der)).is_none());
}

#[test]
fn bundles_with_such_certificates_are_refused() {
    let der = ca_der();
    let mut trailing = der.clone();
    trailing.extend_from_slice(&[0, 0]);
    for (bad, what) in [
        (trailing, "trailing bytes"),
        (negative(&der), "negative serial"),
    ] {
        let mut o = ctb::to_internal(
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "ClusterTrustBundle",
                   "metadata": {"name": "example.com:s:a"},
                   "spec": {"signerName": "example.com/s", "trustBundle": pem(&bad)}}),
            "v1",
        );
        let e = ctb::validate_create(&mut o).err().unwrap_or_default();
        assert_eq!(
            e.first().map(|e| e.message()),
            Some("spec.trustBundle: Invalid value: \"<value omitted>\": entry 0 does not parse as X.509".to_string()),
            "{what}"
        );
    }
}
