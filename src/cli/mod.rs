//! The command line (stable: tests and benchmarks call it).

pub mod ca;
pub mod check;
pub mod check_eval;
pub mod inspect;
pub mod run;
pub mod services_file;
pub mod sign;
pub mod signer_file;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "podcert-signer",
    version,
    about = "A Kubernetes PodCertificate signer issuing SPIFFE X.509-SVIDs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: watch PodCertificateRequests for a signer name and decide them.
    Run(Box<run::RunArgs>),
    /// Decide one PodCertificateRequest offline: reads it (JSON or YAML) on stdin, prints it with .status set, as JSON.
    Sign(sign::SignArgs),
    /// Decode a certificate, chain, credential bundle or PodCertificateRequest and describe it.
    Inspect(inspect::InspectArgs),
    /// CA material for files mode.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Print the CustomResourceDefinitions (PodCertificateSigner) as YAML.
    Crd,
    /// Check a cluster and a running signer (API versions, feature gates, RBAC, CA, trust
    /// bundle, leader, pending requests, kubelet skew); exits 1 if any check fails.
    Check(Box<check::CheckArgs>),
}

pub use podcert_core::duration::parse_duration;

/// `--ca-key` given as a PKCS#11 URI rather than a file.
pub(crate) fn pkcs11_uri(path: &std::path::Path) -> Option<&str> {
    path.to_str().filter(|s| podcert_pkcs11::is_pkcs11_uri(s))
}
