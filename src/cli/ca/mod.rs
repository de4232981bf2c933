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
    /// Write a fresh self-signed CA (ca.crt, and ca.key with mode 0600) into a directory; with
    /// --ca-key pkcs11:..., only ca.crt, for a key in the token (made there with --generate).
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
    /// ML-DSA (FIPS 204): leaves then verify only with ML-DSA-aware peers.
    #[value(name = "mldsa44")]
    MlDsa44,
    #[value(name = "mldsa65")]
    MlDsa65,
    #[value(name = "mldsa87")]
    MlDsa87,
}

impl From<KeyTypeArg> for CaKeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::EcdsaP256 => CaKeyType::EcdsaP256,
            KeyTypeArg::EcdsaP384 => CaKeyType::EcdsaP384,
            KeyTypeArg::Ed25519 => CaKeyType::Ed25519,
            KeyTypeArg::Rsa3072 => CaKeyType::Rsa3072,
            KeyTypeArg::MlDsa44 => CaKeyType::MlDsa44,
            KeyTypeArg::MlDsa65 => CaKeyType::MlDsa65,
            KeyTypeArg::MlDsa87 => CaKeyType::MlDsa87,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write ca.crt and ca.key into (created 0700 if missing; an existing one is
    /// kept as it is, with a warning if group or others can access it; existing files are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The key type generated (ignored for an existing PKCS#11 key: the token's key decides).
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyTypeArg,
    /// A key in a PKCS#11 token (`pkcs11:token=...;object=...?module-path=...&pin-source=file:...`,
    /// RFC 7512): write a self-signed CA certificate for it, and no ca.key.
    #[arg(long, value_name = "PKCS11-URI")]
    pub ca_key: Option<String>,
    /// With --ca-key: first generate the key inside the token (CKA_SENSITIVE, not extractable);
    /// refused if the token has a key under that label already.
    #[arg(long, requires = "ca_key")]
    pub generate: bool,
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
    if let Some(uri) = &args.ca_key {
        return init_pkcs11(&args, uri);
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

/// `ca init --ca-key pkcs11:...`: the certificate is signed by the token; only it is written.
fn init_pkcs11(args: &InitArgs, uri: &str) -> anyhow::Result<()> {
    use podcert_pkcs11::{Pkcs11Key, Pkcs11Uri};
    let parsed = Pkcs11Uri::parse(uri)?;
    // Checked before generating: a key made for a certificate that cannot be written would
    // block the next attempt under the same label.
    let cert_path = args.out.join("ca.crt");
    if cert_path.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it",
            cert_path.display()
        );
    }
    let key = if args.generate {
        podcert_pkcs11::generate(&parsed, None, args.key_type.into(), 1)
            .context("generating the CA key in the token")?
    } else {
        Pkcs11Key::open(&parsed, None, 1).context("opening the CA key in the token")?
    };
    let key_type = key.key_type();
    let key: podcert_core::ca::RemoteKey = std::sync::Arc::new(key);
    let cert = generate::self_signed_for_key(
        &key,
        args.trust_domain.as_deref(),
        args.validity,
        OffsetDateTime::now_utc(),
    )
    .context("signing the CA certificate with the token")?;
    if let Some(warning) = files::dir_access_warning(&args.out) {
        eprintln!("{warning}");
    }
    let path = files::write_ca_cert(&args.out, &cert)
        .with_context(|| format!("writing the CA certificate into {}", args.out.display()))?;
    let what = if args.generate { "generated in" } else { "in" };
    println!(
        "wrote {} ({} key {what} the token: {parsed})",
        path.display(),
        key_type.name()
    );
    Ok(())
}
