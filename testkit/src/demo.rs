//! `podcert-testkit demo`: the whole story in one process, no cluster needed. An emulated
//! Kubernetes API, the real signer (with the Helm chart's RBAC and a bootstrapped CA Secret),
//! emulated kubelets requesting certificates for pods of every key type, and an mTLS exchange
//! between two pods using their projected credential bundles and the published trust bundle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use podcert_k8s::crd::{convert, PodCertificateSignerSpec};
use podcert_runtime::app::AppConfig;
use tokio_util::sync::CancellationToken;

use crate::apiserver::{KubeVersion, ServerConfig, TestServer};
use crate::kubelet::{self, KeySource, KeyType, Kubelet, KubeletConfig, KubeletVersion, Phase};
use crate::rules::UserInfo;

/// The RBAC the Helm chart ships (rendered for release `podcert-signer` in `podcert-system`).
pub const CHART_RBAC: &str = include_str!("../../charts/podcert-signer/rendered/rbac.yaml");

const SIGNER: &str = "podcert.dev/spiffe";
const SIGNER_NS: &str = "podcert-system";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Emulated Kubernetes version (1.34 to 1.38).
    #[arg(long, default_value = "1.37")]
    pub kube_version: String,
    /// Pods to issue certificates for (key types round robin over all six).
    #[arg(long, default_value_t = 6)]
    pub pods: usize,
    /// Where to keep the files (kubeconfigs, credential bundles, trust bundle); default: a
    /// temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn kubelet_version(v: KubeVersion) -> KubeletVersion {
    match v {
        KubeVersion::V1_34 => KubeletVersion::V1_34,
        KubeVersion::V1_35 => KubeletVersion::V1_35,
        KubeVersion::V1_36 => KubeletVersion::V1_36,
        KubeVersion::V1_37 => KubeletVersion::V1_37,
        KubeVersion::V1_38 => KubeletVersion::V1_38,
    }
}

fn ctb_resource(version: &str) -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: version.into(),
        api_version: format!("certificates.k8s.io/{version}"),
        kind: "ClusterTrustBundle".into(),
        plural: "clustertrustbundles".into(),
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let version = KubeVersion::parse(&args.kube_version).with_context(|| {
        format!(
            "unsupported Kubernetes version {:?}: use 1.34 to 1.38",
            args.kube_version
        )
    })?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let start = Instant::now();
    let server = TestServer::start(ServerConfig {
        version,
        ..ServerConfig::default()
    })
    .await?;
    println!(
        "podcert-signer demo: an emulated Kubernetes {} in this process (no cluster needed)",
        version.git_version()
    );
    println!(
        "  api       {} (strict PodCertificateRequest rules, RBAC, NodeRestriction)",
        server.https_url()
    );

    server.load_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {SIGNER_NS} }}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{ name: podcert-signer, namespace: {SIGNER_NS} }}\n"
    ))?;
    server
        .load_yaml(CHART_RBAC)
        .context("loading the chart's RBAC")?;
    server.load_yaml(kubelet::NODE_RBAC)?;

    // The signer, in-process, as the chart's service account.
    let kubeconfig = dir.join("signer.kubeconfig");
    server.write_kubeconfig(
        &kubeconfig,
        &UserInfo::service_account(SIGNER_NS, "podcert-signer"),
    )?;
    // The chart's default signer, declared as a PodCertificateSigner object would declare it
    // and run by the runtime's composition root in this process.
    let spec: PodCertificateSignerSpec = serde_json::from_value(serde_json::json!({
        "signerName": SIGNER,
        "trustDomain": "cluster.local",
        "ca": {"secret": {"name": "podcert-signer-ca", "bootstrap": true}},
    }))?;
    let settings = convert::settings(&spec, SIGNER_NS, Duration::from_secs(5))?;
    let config = AppConfig {
        kubeconfig: Some(kubeconfig.clone()),
        signer: Some(settings),
        objects: None,
        leader_election: None,
        ha_mode: podcert_runtime::app::HaMode::Leader,
        identity: None,
        metrics_addr: "127.0.0.1:0".parse()?,
        concurrency: 32,
        events: true,
        trust_bundles: true,
        bundle_endpoint: None,
    };
    let stop = CancellationToken::new();
    let signer = tokio::spawn(podcert_runtime::app::run(config, stop.clone()));
    println!(
        "  signer    {SIGNER}, trust domain cluster.local, running with the Helm chart's RBAC"
    );

    // Emulated kubelets: pods across two namespaces and two nodes, every key type.
    let cfg = KubeletConfig {
        kube_version: kubelet_version(version),
        pods: args.pods.max(2),
        nodes: 2,
        namespaces: 2,
        name_prefix: "demo".into(),
        signer_name: SIGNER.into(),
        key_types: KeyType::ALL.to_vec(),
        out_dir: Some(dir.join("pods")),
        keys: KeySource::fresh(),
        ..KubeletConfig::default()
    };
    let clients: std::collections::HashMap<String, kube::Client> = (0..cfg.nodes)
        .map(|j| cfg.node_name(j))
        .map(|n| (n.clone(), server.client_for(&UserInfo::node(&n))))
        .collect();
    let admin = server.admin_client();
    let fallback = admin.clone();
    let fleet = Kubelet::new(cfg.clone(), admin.clone(), move |n| {
        clients.get(n).cloned().unwrap_or_else(|| fallback.clone())
    })
    .start()
    .await?;
    let summary = fleet.wait_settled(Duration::from_secs(120)).await?;
    println!(
        "  kubelets  {} pods on {} nodes requested certificates ({} carrier, {}): {} issued, {} denied in {:.1}s",
        summary.pods,
        cfg.nodes,
        if cfg.carrier() == kubelet::Carrier::StubPkcs10 { "stub PKCS#10" } else { "pkix + proof of possession" },
        fleet.pcr_version().as_str(),
        summary.issued,
        summary.denied,
        start.elapsed().as_secs_f64()
    );
    let mut states = fleet.states();
    states.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    for st in &states {
        let bundle = kubelet::bundle::bundle_path(&dir.join("pods"), &st.namespace, &st.pod);
        match &st.phase {
            Phase::Issued {
                not_after,
                refresh_at,
                ..
            } => {
                let id = spiffe_id(&bundle).unwrap_or_else(|e| format!("({e})"));
                println!(
                    "    {:<18} {:<9} {}  until {}  refresh {}",
                    format!("{}/{}", st.namespace, st.pod),
                    st.key_type.as_str(),
                    id,
                    podcert_core::request::wire::format_time(*not_after),
                    podcert_core::request::wire::format_time(*refresh_at)
                );
            }
            other => println!("    {}/{}: {:?}", st.namespace, st.pod, other),
        }
    }
    if summary.issued != summary.pods {
        bail!("not every pod got a certificate: {summary:?}");
    }

    // The published trust bundle, as a pod would project it.
    let ctb_version = version
        .default_ctb_versions()
        .first()
        .cloned()
        .unwrap_or_else(|| "v1beta1".into());
    let ctbs: Api<DynamicObject> = Api::all_with(admin.clone(), &ctb_resource(&ctb_version));
    let name = "podcert.dev:spiffe:live";
    let started = Instant::now();
    let bundle_pem = loop {
        if let Some(o) = ctbs.get_opt(name).await? {
            if let Some(pem) = o.data["spec"]["trustBundle"].as_str() {
                break pem.to_string();
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the signer never published ClusterTrustBundle {name}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trust_path = dir.join("trust-bundle.pem");
    std::fs::write(&trust_path, &bundle_pem)?;
    println!("  bundle    ClusterTrustBundle {name} ({ctb_version}) holds the CA every pod trusts");

    // mTLS between two pods of different namespaces, authorised by SPIFFE ID.
    let server_pod = &states[0];
    let client_pod = states
        .iter()
        .find(|s| s.namespace != server_pod.namespace)
        .unwrap_or(&states[1]);
    let exchange = mtls(&dir, &trust_path, server_pod, client_pod).await?;
    println!("  mtls      {exchange}");

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), signer).await;
    fleet.shutdown().await;
    server.shutdown().await;
    println!(
        "done in {:.1}s. Next: the kind demo (demo/kind.sh up) or `helm install` (see README).",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn spiffe_id(bundle: &Path) -> anyhow::Result<String> {
    let pem_bytes = std::fs::read(bundle)?;
    let provider = podcert_workload::tls::provider();
    let cred = podcert_workload::bundle::parse_credential_bundle(&pem_bytes, &provider)?;
    Ok(cred.spiffe_id.as_str().to_string())
}

async fn mtls(
    dir: &Path,
    trust: &Path,
    server_pod: &kubelet::PodState,
    client_pod: &kubelet::PodState,
) -> anyhow::Result<String> {
    use podcert_workload::identity::AllowList;
    let pods = dir.join("pods");
    let provider = podcert_workload::tls::provider();
    let s_bundle = kubelet::bundle::bundle_path(&pods, &server_pod.namespace, &server_pod.pod);
    let c_bundle = kubelet::bundle::bundle_path(&pods, &client_pod.namespace, &client_pod.pod);
    let s_id = spiffe_id(&s_bundle)?;
    let c_id = spiffe_id(&c_bundle)?;
    let s_material = podcert_workload::reload::Material::load(&s_bundle, trust, provider.clone())?;
    let c_material = podcert_workload::reload::Material::load(&c_bundle, trust, provider)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = podcert_workload::server::serve(
        podcert_workload::server::ServeConfig {
            listen: "127.0.0.1:0".parse()?,
            material: s_material,
            allow: AllowList::parse(&[c_id.as_str()])?,
            events: None,
        },
        async move {
            let _ = stop_rx.await;
        },
    )
    .await?;
    let client =
        podcert_workload::client::Client::new(c_material, AllowList::parse(&[s_id.as_str()])?)?;
    let ex = client.call_once(addr).await?;
    let _ = stop_tx.send(());
    Ok(format!(
        "{}/{} -> {}/{} over TLS 1.3, both sides verified by SPIFFE ID; server said {:?}",
        client_pod.namespace, client_pod.pod, server_pod.namespace, server_pod.pod, ex.reply
    ))
}
