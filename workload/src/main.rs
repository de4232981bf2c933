//! `podcert-workload`: the mTLS demo workload. See README.md.

use clap::Parser;
use podcert_workload::identity::IdentityError;
use podcert_workload::reload::LoadError;
use podcert_workload::{serve, tls, AllowList, Client, Material, ServeConfig, WorkloadError};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Serve and call over mTLS with a projected PodCertificate bundle, authorising peers by SPIFFE ID"
)]
struct Args {
    /// The projected credential bundle: one PKCS#8 PRIVATE KEY block, then the chain, leaf first.
    #[arg(long, env = "PODCERT_WORKLOAD_CREDENTIAL_BUNDLE")]
    credential_bundle: PathBuf,
    /// PEM CA certificates peers must chain to (a ClusterTrustBundle projection).
    #[arg(long, env = "PODCERT_WORKLOAD_TRUST_BUNDLE")]
    trust_bundle: PathBuf,
    /// Serve on this address (e.g. 0.0.0.0:8443).
    #[arg(long, env = "PODCERT_WORKLOAD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Call this HOST:PORT every --interval (repeatable).
    #[arg(long = "connect", value_name = "HOST:PORT")]
    connect: Vec<String>,
    /// Time between rounds of calls.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Call each target once and exit: 0 if every call succeeded, 1 otherwise.
    #[arg(long, conflicts_with = "listen")]
    once: bool,
    /// A peer SPIFFE ID to accept, or a prefix ending in "/*" (repeatable; at least one).
    #[arg(long = "allow-spiffe-id", value_name = "ID", required = true)]
    allow_spiffe_id: Vec<String>,
    /// How often to re-read both files for rotations.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("nothing to do: give --listen, --connect or both")]
    NothingToDo,
    #[error("invalid --allow-spiffe-id: {0}")]
    Allow(#[from] IdentityError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("one or more calls failed")]
    CallsFailed,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: container logs are read as plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), MainError> {
    if args.listen.is_none() && args.connect.is_empty() {
        return Err(MainError::NothingToDo);
    }
    let allow = AllowList::parse(&args.allow_spiffe_id)?;
    let material = Material::load(&args.credential_bundle, &args.trust_bundle, tls::provider())?;
    let own = material.credential.get();
    tracing::info!(spiffe_id = %own.spiffe_id, serial = %own.serial_hex, "credential loaded");

    let client = Client::new(material.clone(), allow.clone())?;
    if args.once {
        return call_round(&client, &args.connect).await;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    material.spawn_reloader(args.reload_interval, stopped(stop_rx.clone()));
    if let Some(listen) = args.listen {
        let cfg = ServeConfig {
            listen,
            material: material.clone(),
            allow,
            events: None,
        };
        serve(cfg, stopped(stop_rx.clone())).await?;
    }
    if !args.connect.is_empty() {
        let mut stop = stop_rx.clone();
        let targets = args.connect.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(args.interval);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = ticker.tick() => { let _ = call_round(&client, &targets).await; }
                }
            }
        });
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    Ok(())
}

/// Calls every target once; failures are logged with their reason.
async fn call_round(client: &Client, targets: &[String]) -> Result<(), MainError> {
    let mut ok = true;
    for target in targets {
        match client.call(target).await {
            Ok(x) => tracing::debug!(%target, reply = %x.reply, "reply"),
            Err(e) => {
                ok = false;
                tracing::warn!(%target, reason = %e, "call failed");
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(MainError::CallsFailed)
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// SIGTERM (kubelet) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
