//! `podcert-signer inspect FILE`: describes a certificate, chain, credential bundle or
//! PodCertificateRequest. Private keys are never printed: only their type and whether they
//! match the leaf.

use std::fmt::Write as _;
use std::path::PathBuf;

use ::time::OffsetDateTime;
use anyhow::{bail, Context};
use clap::Args;
use x509_parser::prelude::*;

use podcert_core::request::wire;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The file to describe (`-` for stdin): PEM or DER certificate(s), a credential bundle
    /// (private key + chain, as the kubelet writes it), or a PodCertificateRequest (JSON/YAML).
    pub file: PathBuf,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let cap = podcert_runtime::ca_files::MAX_INPUT_BYTES;
    let data = if args.file.as_os_str() == "-" {
        podcert_runtime::ca_files::read_bounded(std::io::stdin().lock(), cap)
            .context("reading stdin")?
    } else {
        podcert_runtime::ca_files::read_file_bounded(&args.file, cap)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    print!("{}", describe(&data, OffsetDateTime::now_utc())?);
    Ok(())
}

/// Describes `data` in a few readable lines.
pub fn describe(data: &[u8], now: OffsetDateTime) -> anyhow::Result<String> {
    let trimmed = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &data[i..])
        .unwrap_or(&[]);
    // A request (JSON or YAML) may itself hold PEM in its status, so recognise it first.
    let looks_like_object = trimmed.first() == Some(&b'{')
        || std::str::from_utf8(trimmed).is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"))
        });
    if looks_like_object {
        return describe_request(data, now);
    }
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        return describe_pem(data, now);
    }
    if trimmed.first() == Some(&0x30) {
        return describe_certs(&[data.to_vec()], now);
    }
    bail!("not a certificate, credential bundle or PodCertificateRequest (neither PEM, DER, JSON nor YAML)")
}

fn describe_request(data: &[u8], now: OffsetDateTime) -> anyhow::Result<String> {
    let obj = wire::decode(data)?;
    let r = &obj.request;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "PodCertificateRequest {}/{} ({})",
        esc(&r.namespace),
        esc(&r.name),
        r.api_version.api_version()
    );
    let _ = writeln!(out, "  signer:          {}", esc(&r.signer_name));
    let _ = writeln!(
        out,
        "  pod:             {} (uid {})",
        esc(&r.pod_name),
        esc(&r.pod_uid)
    );
    let _ = writeln!(out, "  service account: {}", esc(&r.service_account_name));
    let _ = writeln!(out, "  node:            {}", esc(&r.node_name));
    let carrier = if r.stub_pkcs10_request.is_some() {
        "stub PKCS#10 request"
    } else {
        "pkixPublicKey + proofOfPossession"
    };
    let _ = writeln!(out, "  key carrier:     {carrier}");
    let _ = writeln!(out, "  max expiration:  {}s", r.max_expiration_seconds);
    for (k, v) in &r.unverified_user_annotations {
        let _ = writeln!(
            out,
            "  user annotation: {}=\"{}\" (unverified)",
            esc(k),
            esc(v)
        );
    }
    let status = obj.raw.get("status");
    let cond = status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array())
        .and_then(|c| c.first());
    match cond {
        None => {
            let _ = writeln!(out, "  status:          pending");
        }
        Some(c) => {
            let field = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let _ = writeln!(
                out,
                "  status:          {} ({}): {}",
                esc(field("type")),
                esc(field("reason")),
                esc(field("message"))
            );
        }
    }
    if let Some(refresh) = status
        .and_then(|s| s.get("beginRefreshAt"))
        .and_then(|v| v.as_str())
    {
        let _ = writeln!(out, "  refresh at:      {}", esc(refresh));
    }
    if let Some(chain) = status
        .and_then(|s| s.get("certificateChain"))
        .and_then(|v| v.as_str())
    {
        out.push_str(&describe_pem(chain.as_bytes(), now)?);
    }
    Ok(out)
}

fn describe_pem(data: &[u8], now: OffsetDateTime) -> anyhow::Result<String> {
    let blocks = ::pem::parse_many(data).context("reading PEM")?;
    let mut certs = Vec::new();
    let mut key: Option<(String, Vec<u8>)> = None;
    let mut out = String::new();
    for b in &blocks {
        match b.tag() {
            "CERTIFICATE" => certs.push(b.contents().to_vec()),
            tag @ ("PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY") => {
                key = Some((tag.to_string(), ::pem::encode(b).into_bytes()));
            }
            "CERTIFICATE REQUEST" => {
                let (_, csr) = X509CertificationRequest::from_der(b.contents()).map_err(|e| {
                    anyhow::anyhow!("the CERTIFICATE REQUEST block does not parse: {e}")
                })?;
                let info = &csr.certification_request_info;
                let _ = writeln!(out, "certificate request");
                let _ = writeln!(out, "  subject:  {}", display_name(&info.subject));
                let _ = writeln!(out, "  key:      {}", describe_spki(&info.subject_pki));
            }
            other => bail!("unexpected PEM block {other:?}"),
        }
    }
    if let Some((tag, key_pem)) = &key {
        let _ = writeln!(
            out,
            "credential bundle: private key ({tag}) + {} certificate(s)",
            certs.len()
        );
        // rcgen reads every classical key (P-521 too); the core's CA key reader adds ML-DSA.
        let matches = std::str::from_utf8(key_pem).ok().and_then(|p| {
            rcgen::KeyPair::from_pem(p)
                .map(|kp| rcgen::PublicKeyData::subject_public_key_info(&kp))
                .ok()
                .or_else(|| podcert_core::ca::public_key_info_of_pem(p).ok())
        });
        if let (Some(pub_der), Some(leaf)) = (matches, certs.first()) {
            let same = X509Certificate::from_der(leaf)
                .map(|(_, c)| c.public_key().raw == pub_der.as_slice())
                .unwrap_or(false);
            let _ = writeln!(
                out,
                "  private key matches the leaf: {}",
                if same { "yes" } else { "NO" }
            );
        }
    }
    if certs.is_empty() && out.is_empty() {
        bail!("no CERTIFICATE, PRIVATE KEY or CERTIFICATE REQUEST block found");
    }
    out.push_str(&describe_certs(&certs, now)?);
    Ok(out)
}

fn describe_certs(certs: &[Vec<u8>], now: OffsetDateTime) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, der) in certs.iter().enumerate() {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| anyhow::anyhow!("certificate {} does not parse: {e}", i + 1))?;
        let role = if i == 0 && !c.is_ca() {
            "leaf"
        } else if c.is_ca() {
            "CA"
        } else {
            "certificate"
        };
        let _ = writeln!(out, "certificate {} ({role})", i + 1);
        let mut uris = Vec::new();
        let mut dns = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    _ => {}
                }
            }
        }
        if let Some(id) = uris.iter().find(|u| u.starts_with("spiffe://")) {
            let _ = writeln!(out, "  SPIFFE ID:  {}", esc(id));
        }
        if !dns.is_empty() {
            let dns: Vec<String> = dns.iter().map(|d| esc(d)).collect();
            let _ = writeln!(out, "  DNS names:  {}", dns.join(", "));
        }
        let subject = display_name(c.subject());
        if !subject.is_empty() {
            let _ = writeln!(out, "  subject:    {subject}");
        }
        let _ = writeln!(out, "  issuer:     {}", display_name(c.issuer()));
        let _ = writeln!(out, "  key:        {}", describe_spki(c.public_key()));
        let _ = writeln!(out, "  serial:     {}", c.raw_serial_as_string());
        let nb = c.validity().not_before.to_datetime();
        let na = c.validity().not_after.to_datetime();
        let _ = writeln!(out, "  not before: {}", wire::format_time(nb));
        let left = na - now;
        let state = if left.is_negative() {
            "expired".to_string()
        } else {
            format!("{} left", human(left))
        };
        let _ = writeln!(
            out,
            "  not after:  {} ({state}; lifetime {})",
            wire::format_time(na),
            human(na - nb)
        );
    }
    Ok(out)
}

fn display_name(n: &X509Name<'_>) -> String {
    esc(&n.to_string())
}

/// A field from the input made safe to print on a terminal: control characters (ESC, CR, LF,
/// ...) and the Unicode bidirectional overrides are escaped (`\n`, `\x1b`, `\u{202e}`), and
/// so is the backslash, so that a crafted certificate or request cannot fake a line, move the
/// cursor or reorder what is shown.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A human name for a public key, e.g. `ECDSA P-256` or `RSA 3072-bit`.
pub fn describe_spki(spki: &SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(k)) => format!("RSA {}-bit", k.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    other => format!("curve {other}"),
                })
                .unwrap_or_else(|| "unknown curve".into());
            format!("ECDSA {curve}")
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".to_string(),
            "2.16.840.1.101.3.4.3.17" => "ML-DSA-44".to_string(),
            "2.16.840.1.101.3.4.3.18" => "ML-DSA-65".to_string(),
            "2.16.840.1.101.3.4.3.19" => "ML-DSA-87".to_string(),
            other => format!("algorithm {other}"),
        },
    }
}

fn human(d: ::time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, hours, mins) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else {
        format!("{mins}m{}s", s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(esc("plain.example"), "plain.example");
        assert_eq!(esc("a\nb"), "a\\nb");
        assert_eq!(esc("\x1b[2J"), "\\x1b[2J");
        assert_eq!(esc("x\u{202e}y\u{85}"), "x\\u{202e}y\\u{85}");
        assert_eq!(esc("back\\slash"), "back\\\\slash");
    }
}
