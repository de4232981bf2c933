//! `podcert-signer check`: reads what the checks need from the cluster and the signer's
//! `/metrics`, evaluates it (`check_eval`, pure) and prints one line per check, linkerd
//! check style. Every read is independent: one that fails becomes its check's warning or
//! failure, never an abort of the whole report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease as LeaseObj;
use k8s_openapi::api::core::v1::{Node as NodeObj, Pod};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};

use super::check_eval::{
    self, Bundle, Check, Lease, Limits, Member, Node, Observed, Permission, Projection, Request,
    Status,
};
use podcert_core::request::GROUP;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The signer's namespace: its service account, Lease and CA Secret.
    #[arg(long, short = 'n', default_value = "podcert-system")]
    pub namespace: String,
    /// The signer name to check.
    #[arg(long, default_value = "podcert.dev/spiffe")]
    pub signer_name: String,
    /// The signer's service account (whose permissions are reviewed).
    #[arg(long, default_value = "podcert-signer")]
    pub service_account: String,
    /// Whether the signer runs with leader election, and its Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, default_value = "podcert-signer")]
    pub lease_name: String,
    /// The CA Secret (a name in --namespace), when the signer reads one.
    #[arg(long)]
    pub ca_secret: Option<String>,
    /// The signer creates and rotates that Secret (--ca-bootstrap).
    #[arg(long)]
    pub ca_bootstrap: bool,
    /// Whether the signer publishes a ClusterTrustBundle, and its name suffix.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub trust_bundle: bool,
    #[arg(long, default_value = "live")]
    pub trust_bundle_suffix: String,
    /// Namespaces the signer also writes the trust-bundle ConfigMap to.
    #[arg(long = "trust-bundle-configmap-namespace")]
    pub configmap_namespaces: Vec<String>,
    #[arg(long, default_value = "podcert-trust-bundle")]
    pub trust_bundle_configmap_name: String,
    /// Whether the signer records Events.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,
    /// The signer's /metrics (http://), e.g. after `kubectl -n NS port-forward deploy/podcert-signer 8080`.
    /// Without it the CA, rotation and denial checks are skipped.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// A CA expiring within this fails.
    #[arg(long, default_value = "7d", value_parser = super::parse_duration)]
    pub ca_expiry_warning: time::Duration,
    /// A request pending longer than this fails.
    #[arg(long, default_value = "2m", value_parser = super::parse_duration)]
    pub pending_max_age: time::Duration,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

/// Runs the checks and prints the report; Ok(false) when any check failed.
pub fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checks = rt.block_on(observe(&args))?;
    let passed = !checks.iter().any(|c| c.status == Status::Fail);
    match args.output {
        Output::Text => print!("{}", render_text(&args, &checks)),
        Output::Json => println!("{}", render_json(&args, &checks)),
    }
    Ok(passed)
}

async fn observe(args: &CheckArgs) -> anyhow::Result<Vec<Check>> {
    let client = podcert_runtime::client::connect(args.kubeconfig.as_deref()).await?;
    let bundle_name = format!(
        "{}:{}",
        args.signer_name.replace('/', ":"),
        args.trust_bundle_suffix
    );
    let server_minor = client
        .apiserver_version()
        .await
        .ok()
        .and_then(|v| v.minor.trim_end_matches('+').parse().ok());
    let pcr_versions = served(&client, "podcertificaterequests").await;
    let ctb_versions = served(&client, "clustertrustbundles").await;
    let projection = if args.trust_bundle {
        projection(&client, args).await
    } else {
        Projection::Unknown("not checked".into())
    };
    let permissions = permissions(&client, args, &bundle_name).await;
    let metrics = match &args.metrics_url {
        None => None,
        Some(url) => Some(fetch(url).await.and_then(|t| {
            check_eval::parse_metrics(&t).map_err(|e| format!("not Prometheus text: {e}"))
        })),
    };
    let bundle = if !args.trust_bundle {
        Bundle::Off
    } else {
        match ctb_versions.as_ref().ok().and_then(|v| v.first()) {
            None => Bundle::Error("ClusterTrustBundle is not served".into()),
            Some(v) => bundle(&client, v, &bundle_name).await,
        }
    };
    let (lease, members) = if args.leader_election {
        (
            lease(&client, &args.namespace, &args.lease_name).await,
            Some(members(&client, &args.namespace, &args.lease_name).await),
        )
    } else {
        (Lease::Off, None)
    };
    let pcr_version = pcr_versions.as_ref().ok().and_then(|v| {
        podcert_runtime::discovery::PCR_PREFERENCE
            .into_iter()
            .find(|p| v.iter().any(|x| x == p))
    });
    let requests = match pcr_version {
        None => Err("PodCertificateRequest is not served".into()),
        Some(v) => requests(&client, v, &args.signer_name).await,
    };
    let nodes = nodes(&client).await;
    let observed = Observed {
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        signer_name: args.signer_name.clone(),
        namespace: args.namespace.clone(),
        lease_name: args.lease_name.clone(),
        bundle_name,
        server_minor,
        pcr_versions,
        ctb_versions,
        trust_bundle: args.trust_bundle,
        projection,
        permissions,
        metrics,
        metrics_url: args.metrics_url.clone(),
        bundle,
        lease,
        members,
        requests,
        nodes,
    };
    let limits = Limits {
        ca_expiry_warning: args.ca_expiry_warning.whole_seconds(),
        pending_max_age: args.pending_max_age.whole_seconds(),
        rotation_overdue: 600,
    };
    Ok(check_eval::evaluate(&observed, &limits))
}

/// An error and its causes on one line (hyper's and kube's top-level messages say little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The versions of certificates.k8s.io serving `plural`, newest first.
async fn served(client: &kube::Client, plural: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for version in ["v1", "v1beta1", "v1alpha1"] {
        match client
            .list_api_group_resources(&format!("{GROUP}/{version}"))
            .await
        {
            Ok(list) => {
                if list.resources.iter().any(|r| r.name == plural) {
                    out.push(version.to_string());
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(chain(&e)),
        }
    }
    Ok(out)
}

/// A server-side dry run of a pod with a `clusterTrustBundle` projected source: kube-apiserver
/// drops the source when the ClusterTrustBundleProjection gate is off. The pod passes the
/// restricted Pod Security level, so that admission does not refuse it.
async fn projection(client: &kube::Client, args: &CheckArgs) -> Projection {
    let pod: Pod = match serde_json::from_value(json!({
        "metadata": {"generateName": "podcert-signer-check-"},
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "check",
                "image": "registry.k8s.io/pause:3.10",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "resources": {"limits": {"cpu": "10m", "memory": "16Mi"}},
                "volumeMounts": [{"name": "trust-bundle", "mountPath": "/var/run/trust", "readOnly": true}]
            }],
            "volumes": [{"name": "trust-bundle", "projected": {"sources": [{"clusterTrustBundle": {
                "signerName": args.signer_name,
                "labelSelector": {"matchLabels": {"podcert.dev/trust-bundle": args.trust_bundle_suffix}},
                "path": "ca.crt"
            }}]}}]
        }
    })) {
        Ok(p) => p,
        Err(e) => return Projection::Unknown(format!("building the dry-run pod: {e}")),
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &pod).await {
        Err(e) => Projection::Unknown(format!("dry-run pod refused: {}", chain(&e))),
        Ok(out) => {
            let kept = out
                .spec
                .and_then(|s| s.volumes)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.projected.as_ref())
                .flat_map(|p| p.sources.iter().flatten())
                .any(|s| s.cluster_trust_bundle.is_some());
            if kept {
                Projection::Kept
            } else {
                Projection::Dropped
            }
        }
    }
}

/// One permission to review: verb, resource, subresource, name, namespace, why.
struct Need {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    sub: &'static str,
    name: String,
    namespace: String,
    why: &'static str,
}

fn needs(args: &CheckArgs, bundle_name: &str) -> Vec<Need> {
    let need = |verb, group, resource, sub, name: &str, namespace: &str, why| Need {
        verb,
        group,
        resource,
        sub,
        name: name.to_string(),
        namespace: namespace.to_string(),
        why,
    };
    let ns = args.namespace.as_str();
    let signer = args.signer_name.as_str();
    let mut n = vec![
        need(
            "list",
            GROUP,
            "podcertificaterequests",
            "",
            "",
            "",
            "watch requests",
        ),
        need(
            "watch",
            GROUP,
            "podcertificaterequests",
            "",
            "",
            "",
            "watch requests",
        ),
        need(
            "patch",
            GROUP,
            "podcertificaterequests",
            "status",
            "",
            "",
            "write decisions",
        ),
        need(
            "sign",
            GROUP,
            "signers",
            "",
            signer,
            "",
            "write decisions for the signer name",
        ),
    ];
    if args.trust_bundle {
        n.extend([
            need(
                "get",
                GROUP,
                "clustertrustbundles",
                "",
                bundle_name,
                "",
                "read the trust bundle",
            ),
            need(
                "update",
                GROUP,
                "clustertrustbundles",
                "",
                bundle_name,
                "",
                "update the trust bundle",
            ),
            need(
                "create",
                GROUP,
                "clustertrustbundles",
                "",
                "",
                "",
                "create the trust bundle",
            ),
            need(
                "attest",
                GROUP,
                "signers",
                "",
                signer,
                "",
                "publish a bundle with spec.signerName",
            ),
        ]);
    }
    if args.leader_election {
        let lease = args.lease_name.as_str();
        n.extend([
            need(
                "get",
                "coordination.k8s.io",
                "leases",
                "",
                lease,
                ns,
                "leader election",
            ),
            need(
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                lease,
                ns,
                "leader election",
            ),
            need(
                "create",
                "coordination.k8s.io",
                "leases",
                "",
                "",
                ns,
                "leader election",
            ),
        ]);
    }
    if let Some(secret) = &args.ca_secret {
        n.push(need(
            "get",
            "",
            "secrets",
            "",
            secret,
            ns,
            "read the CA Secret",
        ));
        if args.ca_bootstrap {
            n.push(need(
                "update",
                "",
                "secrets",
                "",
                secret,
                ns,
                "write the rotation state",
            ));
            n.push(need(
                "create",
                "",
                "secrets",
                "",
                "",
                ns,
                "bootstrap the CA Secret",
            ));
        }
    }
    for cm_ns in &args.configmap_namespaces {
        let cm = args.trust_bundle_configmap_name.as_str();
        n.extend([
            need(
                "get",
                "",
                "configmaps",
                "",
                cm,
                cm_ns,
                "the trust-bundle ConfigMap",
            ),
            need(
                "update",
                "",
                "configmaps",
                "",
                cm,
                cm_ns,
                "the trust-bundle ConfigMap",
            ),
            need(
                "create",
                "",
                "configmaps",
                "",
                "",
                cm_ns,
                "the trust-bundle ConfigMap",
            ),
        ]);
    }
    if args.events {
        n.push(need(
            "create",
            "events.k8s.io",
            "events",
            "",
            "",
            "",
            "record Events",
        ));
        n.push(need(
            "patch",
            "events.k8s.io",
            "events",
            "",
            "",
            "",
            "record Events",
        ));
    }
    n
}

async fn permissions(
    client: &kube::Client,
    args: &CheckArgs,
    bundle_name: &str,
) -> Vec<Permission> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let user = format!(
        "system:serviceaccount:{}:{}",
        args.namespace, args.service_account
    );
    let groups = vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", args.namespace),
        "system:authenticated".to_string(),
    ];
    let mut out = Vec::new();
    for need in needs(args, bundle_name) {
        // kube-apiserver accepts `sign`/`attest` on `<domain>/*` too (the signer's
        // admission plugins ask for both names); RBAC matches names literally, so ask both.
        let mut names = vec![need.name.clone()];
        if need.resource == "signers" {
            if let Some((domain, _)) = need.name.split_once('/') {
                names.push(format!("{domain}/*"));
            }
        }
        let mut allowed = Ok(false);
        for name in names {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.clone()),
                    groups: Some(groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(need.verb.into()),
                        group: Some(need.group.into()),
                        resource: Some(need.resource.into()),
                        subresource: (!need.sub.is_empty()).then(|| need.sub.to_string()),
                        name: (!name.is_empty()).then_some(name),
                        namespace: (!need.namespace.is_empty()).then(|| need.namespace.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            allowed = match api.create(&PostParams::default(), &review).await {
                Ok(r) => Ok(r.status.is_some_and(|s| s.allowed)),
                Err(e) => Err(chain(&e)),
            };
            if !matches!(allowed, Ok(false)) {
                break;
            }
        }
        let resource = if need.group.is_empty() {
            need.resource.to_string()
        } else {
            format!("{}.{}", need.resource, need.group)
        };
        let mut what = format!("{} {resource}", need.verb);
        let mut can_i = format!("kubectl auth can-i {} {resource}", need.verb);
        if !need.name.is_empty() {
            what = format!("{what} {}", need.name);
            can_i = format!("{can_i}/{}", need.name);
        }
        if !need.sub.is_empty() {
            what = format!("{what} (/{})", need.sub);
            can_i = format!("{can_i} --subresource {}", need.sub);
        }
        if need.namespace.is_empty() {
            // Namespaced resources needed in every namespace; the others are cluster-scoped.
            if matches!(need.resource, "podcertificaterequests" | "events") {
                can_i.push_str(" --all-namespaces");
            }
        } else {
            what = format!("{what} in {}", need.namespace);
            can_i = format!("{can_i} -n {}", need.namespace);
        }
        can_i = format!("{can_i} --as {user}");
        out.push(Permission {
            what,
            why: need.why,
            can_i,
            allowed,
        });
    }
    out
}

/// GET of an http:// URL, bounded in time and size.
async fn fetch(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: only http:// is supported (the signer serves plain HTTP; use kubectl port-forward)"
        ));
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let get = async {
        let resp = client.get(uri).await.map_err(|e| chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 16 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .map_err(|_| "no answer within 10s".to_string())?
}

fn ctb_resource(version: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: version.into(),
        api_version: format!("{GROUP}/{version}"),
        kind: "ClusterTrustBundle".into(),
        plural: "clustertrustbundles".into(),
    }
}

async fn bundle(client: &kube::Client, version: &str, name: &str) -> Bundle {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ctb_resource(version));
    match api.get_opt(name).await {
        Err(e) => Bundle::Error(chain(&e)),
        Ok(None) => Bundle::Missing,
        Ok(Some(obj)) => {
            let pem_text = obj.data["spec"]["trustBundle"].as_str().unwrap_or("");
            let fingerprints = pem::parse_many(pem_text)
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .filter_map(|b| podcert_core::rotation::anchor_sha256(&pem::encode(&b)))
                .collect();
            Bundle::Found {
                signer_name: obj.data["spec"]["signerName"].as_str().map(String::from),
                fingerprints,
            }
        }
    }
}

async fn lease(client: &kube::Client, ns: &str, name: &str) -> Lease {
    let api: Api<LeaseObj> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Err(e) => Lease::Error(chain(&e)),
        Ok(None) => Lease::Missing,
        Ok(Some(l)) => {
            let spec = l.spec.unwrap_or_default();
            Lease::Found {
                renewed: renewed(&spec),
                holder: spec.holder_identity,
                duration_seconds: spec.lease_duration_seconds.map(i64::from),
            }
        }
    }
}

/// Unix seconds of a Lease's last renewal (or acquisition).
fn renewed(spec: &k8s_openapi::api::coordination::v1::LeaseSpec) -> Option<i64> {
    spec.renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second())
}

/// The active-active member Leases of the group `lease` (none in leader mode).
async fn members(client: &kube::Client, ns: &str, lease: &str) -> Result<Vec<Member>, String> {
    let api: Api<LeaseObj> = Api::namespaced(client.clone(), ns);
    let selector = format!("{}={lease}", podcert_runtime::membership::MEMBER_OF_LABEL);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| chain(&e))?;
    Ok(list
        .items
        .into_iter()
        .map(|l| {
            let spec = l.spec.unwrap_or_default();
            Member {
                renewed: renewed(&spec),
                holder: spec.holder_identity,
                duration_seconds: spec.lease_duration_seconds.map(i64::from),
            }
        })
        .collect())
}

async fn requests(
    client: &kube::Client,
    version: &str,
    signer: &str,
) -> Result<Vec<Request>, String> {
    let resource = ApiResource {
        group: GROUP.into(),
        version: version.into(),
        api_version: format!("{GROUP}/{version}"),
        kind: "PodCertificateRequest".into(),
        plural: "podcertificaterequests".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = api
        .list(&ListParams::default().fields(&format!("spec.signerName={signer}")))
        .await
        .map_err(|e| chain(&e))?;
    Ok(list
        .items
        .iter()
        .map(|o| Request {
            created: o
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            outcome: outcome(&o.data),
        })
        .collect())
}

/// The True Issued, Denied or Failed condition: (type, reason).
fn outcome(data: &Value) -> Option<(String, String)> {
    data.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c["status"] == "True"
                && matches!(c["type"].as_str(), Some("Issued" | "Denied" | "Failed"))
        })
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
}

async fn nodes(client: &kube::Client) -> Result<Vec<Node>, String> {
    let api: Api<NodeObj> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| chain(&e))?;
    Ok(list
        .items
        .into_iter()
        .map(|n| Node {
            name: n.metadata.name.unwrap_or_default(),
            kubelet_version: n
                .status
                .and_then(|s| s.node_info)
                .map(|i| i.kubelet_version)
                .unwrap_or_default(),
        })
        .collect())
}

fn categories(checks: &[Check]) -> Vec<(&'static str, Vec<&Check>)> {
    let mut out: Vec<(&'static str, Vec<&Check>)> = Vec::new();
    for c in checks {
        match out.iter_mut().find(|(n, _)| *n == c.category) {
            Some((_, v)) => v.push(c),
            None => out.push((c.category, vec![c])),
        }
    }
    out
}

fn render_text(args: &CheckArgs, checks: &[Check]) -> String {
    let mut s = format!(
        "podcert-signer check: signer {} in namespace {}\n",
        args.signer_name, args.namespace
    );
    for (name, list) in categories(checks) {
        s.push_str(&format!("\n{name}\n{}\n", "-".repeat(name.len())));
        for c in list {
            s.push_str(&format!("{} {}\n", c.status.mark(), c.message));
            if matches!(c.status, Status::Fail | Status::Warn) {
                if let Some(h) = &c.hint {
                    s.push_str(&format!("    hint: {h}\n"));
                }
                s.push_str(&format!("    see {}\n", c.anchor()));
            }
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let mark = if failed > 0 { Status::Fail } else { Status::Ok }.mark();
    s.push_str(&format!(
        "\nStatus check results are {mark} ({} checks: {failed} failed, {warned} warnings)\n",
        checks.len()
    ));
    s
}

fn render_json(args: &CheckArgs, checks: &[Check]) -> String {
    let cats: Vec<Value> = categories(checks)
        .into_iter()
        .map(|(name, list)| {
            let items: Vec<Value> = list
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "description": c.message,
                        "result": match c.status {
                            Status::Ok => "success",
                            Status::Warn => "warning",
                            Status::Fail => "error",
                            Status::Skip => "skipped",
                        },
                        "hint": c.hint,
                        "anchor": c.anchor(),
                    })
                })
                .collect();
            json!({"categoryName": name, "checks": items})
        })
        .collect();
    json!({
        "success": !checks.iter().any(|c| c.status == Status::Fail),
        "signerName": args.signer_name,
        "namespace": args.namespace,
        "categories": cats,
    })
    .to_string()
}
