//! `podcert-signer ca ...`: CA material for files mode, and rotation requests for a
//! bootstrapped CA Secret.

mod rotate;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;

use podcert_core::ca::{generate, CaKeyType};
use podcert_core::spiffe_id::TrustDomain;
use podcert_runtime::ca_files as files;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write a fresh self-signed CA (ca.crt, and ca.key with mode 0600) into a directory.
    Init(InitArgs),
    /// Ask the signer's leader to rotate the CA in a bootstrapped CA Secret now (annotates
    /// the Secret; the leader acts on each request once), or, for an externally managed CA,
    /// to drop an earlier root from the trust bundle at once (--emergency --fingerprint).
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyTypeArg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "ed25519")]
    Ed25519,
    #[value(name = "rsa3072")]
    Rsa3072,
}

impl From<KeyTypeArg> for CaKeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::EcdsaP256 => CaKeyType::EcdsaP256,
            KeyTypeArg::EcdsaP384 => CaKeyType::EcdsaP384,
            KeyTypeArg::Ed25519 => CaKeyType::Ed25519,
            KeyTypeArg::Rsa3072 => CaKeyType::Rsa3072,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write ca.crt and ca.key into (created 0700 if missing; an existing one is
    /// kept as it is, with a warning if group or others can access it; existing files are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyTypeArg,
    /// Trust domain named in the CA's subject (informational).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// How long the CA is valid.
    #[arg(long, default_value = "365d", value_parser = super::parse_duration)]
    pub validity: time::Duration,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The CA Secret, NAMESPACE/NAME (as given to `run --ca-secret`).
    #[arg(
        long,
        value_name = "NS/NAME",
        required_unless_present = "trust_bundle",
        conflicts_with = "trust_bundle"
    )]
    pub secret: Option<String>,
    /// CA files mode (`run --ca-cert/--ca-key`): the signer's ClusterTrustBundle to annotate
    /// instead of a Secret (only with --emergency --fingerprint, to drop an earlier root).
    #[arg(long, value_name = "NAME")]
    pub trust_bundle: Option<String>,
    /// Drop a compromised CA from the trust bundle at once (default: the active CA) instead
    /// of rotating with a propagation delay. Pods holding its certificates fail mTLS until
    /// they are refreshed.
    #[arg(long)]
    pub emergency: bool,
    /// With --emergency: the SHA-256 fingerprint of the CA to drop (active, next or retired);
    /// required for an externally managed CA (an earlier root: the active one is replaced by
    /// its owner).
    #[arg(long, requires = "emergency", value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "PODCERT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init(args) => init(args),
        CaCommand::Rotate(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let text = rt.block_on(rotate::rotate(args))?;
            println!("{text}");
            Ok(())
        }
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    if let Some(td) = &args.trust_domain {
        TrustDomain::new(td)?;
    }
    let generated = generate::generate_self_signed(
        args.key_type.into(),
        args.trust_domain.as_deref(),
        args.validity,
        OffsetDateTime::now_utc(),
    )
    .context("generating the CA")?;
    if let Some(warning) = files::dir_access_warning(&args.out) {
        eprintln!("{warning}");
    }
    let (cert, key) = files::write_ca_dir(&args.out, &generated)
        .with_context(|| format!("writing the CA into {}", args.out.display()))?;
    println!("wrote {} and {} (mode 0600)", cert.display(), key.display());
    Ok(())
}
