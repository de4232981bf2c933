//! `podcert-signer sign`: the controller's decision for one request, offline.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use time::OffsetDateTime;

use crate::api::wire;
use crate::ca::Ca;
use crate::key_type::KeyType;
use crate::policy::SignerConfig;
use crate::signer;
use crate::spiffe_id::TrustDomain;

/// Largest request accepted on stdin; a real one is a few KiB.
const MAX_INPUT: u64 = 4 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The signing certificate, followed by any intermediates (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// The signing key: PKCS#8, SEC1 or PKCS#1 PEM.
    #[arg(long, value_name = "FILE")]
    pub ca_key: PathBuf,
    /// Root certificate(s) the chain leads to, when the signing CA is an intermediate.
    #[arg(long, value_name = "FILE")]
    pub trust_anchors: Option<PathBuf>,
    /// SPIFFE trust domain of the issued IDs.
    #[arg(long)]
    pub trust_domain: String,
    /// The signer name this signer answers for (e.g. example.com/spiffe).
    #[arg(long)]
    pub signer_name: String,
    /// Longest lifetime issued (the request's maxExpirationSeconds may lower it).
    #[arg(long, default_value = "24h", value_parser = super::parse_duration)]
    pub max_lifetime: time::Duration,
    /// Key types issued for (default: all six the API allows).
    #[arg(long, value_delimiter = ',')]
    pub key_types: Vec<KeyType>,
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let cfg = config(&args)?;
    let ca = load_ca(&args, now)?;

    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .context("reading the request from stdin")?;
    if input.len() as u64 > MAX_INPUT {
        bail!(
            "the request on stdin is larger than {} MiB",
            MAX_INPUT / 1024 / 1024
        );
    }
    let obj = wire::decode(&input).context("reading the PodCertificateRequest on stdin")?;
    let outcome = signer::process(&obj.request, &cfg, &ca, now)?;
    let out = wire::with_status(&obj.raw, &outcome.status, now);
    let text = serde_json::to_string_pretty(&out).context("encoding the result")?;
    println!("{text}");
    Ok(())
}

fn config(args: &SignArgs) -> anyhow::Result<SignerConfig> {
    let td = TrustDomain::new(&args.trust_domain)?;
    let mut cfg = SignerConfig::new(&args.signer_name, td)?;
    cfg.max_lifetime = args.max_lifetime;
    if !args.key_types.is_empty() {
        cfg.allowed_key_types = args.key_types.iter().copied().collect();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn load_ca(args: &SignArgs, now: OffsetDateTime) -> anyhow::Result<Ca> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let cert = read(&args.ca_cert)?;
    let key = read(&args.ca_key)?;
    let anchors = args.trust_anchors.as_ref().map(read).transpose()?;
    Ca::from_pem(&cert, &key, anchors.as_deref(), now).with_context(|| {
        format!(
            "loading the CA from {} and {}",
            args.ca_cert.display(),
            args.ca_key.display()
        )
    })
}
