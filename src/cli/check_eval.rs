//! `podcert-signer check`, the pure half: what was read from the cluster and the signer's
//! `/metrics` ([`Observed`]) in, one [`Check`] per line out. `check` does the reading.

use std::collections::BTreeMap;

use serde::Serialize;

/// How one check came out. Only `Fail` makes `check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    /// linkerd check's marks.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "√",
            Status::Warn => "‼",
            Status::Fail => "×",
            Status::Skip => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The category it is printed under.
    pub category: &'static str,
    /// Stable id; also the README anchor `#check-<id>`.
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do, for a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn new(category: &'static str, id: &'static str, status: Status, message: String) -> Self {
        Check {
            category,
            id,
            status,
            message,
            hint: None,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The README anchor a failure points to.
    pub fn anchor(&self) -> String {
        format!("README.md#check-{}", self.id)
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (and OpenMetrics text, which the signer serves):
/// comments and blank lines are skipped; a line that does not parse is an error naming it.
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_sample(line).ok_or_else(|| format!("line {}: {line:?}", n + 1))?);
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// What the dry-run pod's `clusterTrustBundle` source came back as.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    Kept,
    Dropped,
    /// The dry run could not be made (no permission, an admission webhook refused it...).
    Unknown(String),
}

/// One permission the signer's service account needs, and whether a SubjectAccessReview allowed it.
#[derive(Debug, Clone)]
pub struct Permission {
    /// `verb resource[/subresource] [name] [in namespace]`, as `kubectl auth can-i` takes it.
    pub what: String,
    /// Why the signer needs it.
    pub why: &'static str,
    /// The `kubectl auth can-i` command line that asks the same.
    pub can_i: String,
    pub allowed: Result<bool, String>,
}

#[derive(Debug, Clone)]
pub enum Bundle {
    /// No ClusterTrustBundle is published (trust bundle off).
    Off,
    Missing,
    Found {
        signer_name: Option<String>,
        /// SHA-256 (lowercase hex) of each certificate it holds.
        fingerprints: Vec<String>,
    },
    Error(String),
}

#[derive(Debug, Clone)]
pub enum Lease {
    /// Leader election off: the scraped replica's `podcert_leader` decides.
    Off,
    Missing,
    Found {
        holder: Option<String>,
        /// Unix seconds of the last renewal (or acquisition).
        renewed: Option<i64>,
        duration_seconds: Option<i64>,
    },
    Error(String),
}

/// One active-active member Lease (labelled `podcert.dev/member-of=<lease>`).
#[derive(Debug, Clone)]
pub struct Member {
    /// Empty or None: released by a replica that stopped.
    pub holder: Option<String>,
    /// Unix seconds of the last renewal.
    pub renewed: Option<i64>,
    pub duration_seconds: Option<i64>,
}

/// How far the cluster's clock may be from this machine's before a member counts as silent:
/// members renew every 0.5 s with a 2 s duration, and `check` judges by its own clock.
const MEMBER_CLOCK_SLACK: i64 = 10;

/// A PodCertificateRequest for the signer: when it was created and how it ended (if it did).
#[derive(Debug, Clone)]
pub struct Request {
    pub created: Option<i64>,
    /// The True condition among Issued, Denied, Failed: (type, reason).
    pub outcome: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kubelet_version: String,
}

/// Thresholds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A CA expiring within this fails (seconds).
    pub ca_expiry_warning: i64,
    /// A request pending longer than this fails (seconds).
    pub pending_max_age: i64,
    /// A rotation step this late is stalled (seconds).
    pub rotation_overdue: i64,
}

/// Everything `check` read.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Unix seconds.
    pub now: i64,
    pub signer_name: String,
    pub namespace: String,
    pub lease_name: String,
    pub bundle_name: String,
    /// The server's minor version (`/version`), if read.
    pub server_minor: Option<u32>,
    /// Served versions, or the error discovery gave.
    pub pcr_versions: Result<Vec<String>, String>,
    pub ctb_versions: Result<Vec<String>, String>,
    /// Whether the signer publishes a ClusterTrustBundle.
    pub trust_bundle: bool,
    pub projection: Projection,
    pub permissions: Vec<Permission>,
    /// The signer's `/metrics`: None when no `--metrics-url` was given.
    pub metrics: Option<Result<Vec<Sample>, String>>,
    pub metrics_url: Option<String>,
    pub bundle: Bundle,
    pub lease: Lease,
    /// Active-active member Leases; None with leader election off.
    pub members: Option<Result<Vec<Member>, String>>,
    pub requests: Result<Vec<Request>, String>,
    pub nodes: Result<Vec<Node>, String>,
}

const API: &str = "kubernetes-api";
const GATES: &str = "feature-gates";
const RBAC: &str = "rbac";
const SIGNER: &str = "signer";
const REQUESTS: &str = "requests";
const NODES: &str = "nodes";

/// The PodCertificateRequest versions a kubelet of `minor` writes, most preferred first
/// (v1alpha1 was removed in 1.35, v1 arrived in 1.37).
pub fn kubelet_pcr_versions(minor: u32) -> &'static [&'static str] {
    match minor {
        0..=33 => &[],
        34 => &["v1alpha1"],
        35 | 36 => &["v1beta1"],
        _ => &["v1", "v1beta1"],
    }
}

/// `v1.35.4` (or `1.35`) -> 35.
pub fn minor_of(version: &str) -> Option<u32> {
    let mut it = version.trim().trim_start_matches('v').split('.');
    if it.next()? != "1" {
        return None;
    }
    let minor: String = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    minor.parse().ok()
}

fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 2 * 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Every check, in report order.
pub fn evaluate(o: &Observed, limits: &Limits) -> Vec<Check> {
    let mut out = Vec::new();
    out.extend(api_checks(o));
    out.push(projection_check(o));
    out.extend(permission_checks(o));
    out.extend(signer_checks(o, limits));
    out.extend(request_checks(o, limits));
    out.push(skew_check(o));
    out
}

fn api_checks(o: &Observed) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match &o.pcr_versions {
        Err(e) => Check::new(API, "pcr-api", Status::Fail, format!("cannot discover PodCertificateRequest: {e}"))
            .hint("check the kubeconfig and that the API server is reachable"),
        Ok(v) if v.is_empty() => Check::new(API, "pcr-api", Status::Fail, "PodCertificateRequest is not served (certificates.k8s.io v1, v1beta1, v1alpha1)".into())
            .hint("enable the PodCertificateRequest feature gate and its API on kube-apiserver (--runtime-config=certificates.k8s.io/v1beta1/podcertificaterequests=true on 1.35-1.36) and the PodCertificateProjection gate on kube-apiserver and every kubelet"),
        Ok(v) => {
            let mut writers = Vec::new();
            if v.iter().any(|x| x == "v1alpha1") {
                writers.push("1.34");
            }
            if v.iter().any(|x| x == "v1beta1") {
                writers.push("1.35-1.37");
            } else if v.iter().any(|x| x == "v1") {
                writers.push("1.37");
            }
            let signer_reads = ["v1beta1", "v1", "v1alpha1"]
                .into_iter()
                .find(|p| v.iter().any(|x| x == p))
                .unwrap_or("?");
            Check::new(API, "pcr-api", Status::Ok, format!(
                "PodCertificateRequest served in {}: kubelets {} can request certificates; the signer watches {signer_reads}",
                v.join(", "), writers.join(" and ")
            ))
        }
    });
    if o.trust_bundle {
        out.push(match &o.ctb_versions {
            Err(e) => Check::new(API, "ctb-api", Status::Fail, format!("cannot discover ClusterTrustBundle: {e}"))
                .hint("check the kubeconfig and that the API server is reachable"),
            Ok(v) if v.is_empty() => Check::new(API, "ctb-api", Status::Fail, "ClusterTrustBundle is not served: the signer cannot publish its trust anchors".into())
                .hint("enable the ClusterTrustBundle feature gate and API on kube-apiserver (--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true), or run the signer with --trust-bundle=false --trust-bundle-configmap-namespace NS and mount the ConfigMap"),
            Ok(v) => Check::new(API, "ctb-api", Status::Ok, format!(
                "ClusterTrustBundle served in {}: the signer publishes in {}",
                v.join(", "),
                v.first().map(String::as_str).unwrap_or("?")
            )),
        });
    }
    out
}

fn projection_check(o: &Observed) -> Check {
    if !o.trust_bundle {
        return Check::new(
            GATES,
            "ctb-projection",
            Status::Skip,
            "ClusterTrustBundle projection not checked: the signer publishes no ClusterTrustBundle"
                .into(),
        );
    }
    match &o.projection {
        Projection::Kept => Check::new(GATES, "ctb-projection", Status::Ok, "ClusterTrustBundle projection enabled (a dry-run pod kept its clusterTrustBundle source)".into()),
        Projection::Dropped => Check::new(GATES, "ctb-projection", Status::Fail, "ClusterTrustBundle projection is off: a dry-run pod's clusterTrustBundle source came back dropped, so pods get no trust bundle".into())
            .hint("enable the ClusterTrustBundleProjection feature gate on kube-apiserver and every kubelet, or publish the bundle as a ConfigMap (--trust-bundle-configmap-namespace) and mount that instead"),
        Projection::Unknown(e) => Check::new(GATES, "ctb-projection", Status::Warn, format!("cannot tell whether ClusterTrustBundle projection is enabled: {e}"))
            .hint(format!("the check creates a dry-run pod in namespace {}: it needs `create pods` there", o.namespace)),
    }
}

fn permission_checks(o: &Observed) -> Vec<Check> {
    o.permissions
        .iter()
        .map(|p| match &p.allowed {
            Ok(true) => Check::new(RBAC, "rbac", Status::Ok, format!("can {} ({})", p.what, p.why)),
            Ok(false) => Check::new(RBAC, "rbac", Status::Fail, format!("cannot {} ({})", p.what, p.why))
                .hint(format!(
                    "grant it to the signer's service account (the chart's ClusterRole and Role do); verify with {}",
                    p.can_i
                )),
            Err(e) => Check::new(RBAC, "rbac", Status::Warn, format!("cannot review {}: {e}", p.what))
                .hint("the check asks SubjectAccessReviews: it needs `create subjectaccessreviews.authorization.k8s.io`"),
        })
        .collect()
}

/// The samples of `name` for the signer. Its label is `signer_name`; signers built before
/// 2026-12-08 called it `signer`, which is still read so that `check` works mid-upgrade.
fn series<'a>(metrics: &'a [Sample], name: &str, signer: &str) -> Vec<&'a Sample> {
    metrics
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels
                    .get("signer_name")
                    .or_else(|| s.labels.get("signer"))
                    .map(String::as_str)
                    == Some(signer)
        })
        .collect()
}

fn signer_checks(o: &Observed, limits: &Limits) -> Vec<Check> {
    let mut out = Vec::new();
    let metrics = match &o.metrics {
        None => {
            out.push(Check::new(SIGNER, "ca", Status::Skip, "CA, rotation and denials not checked: pass --metrics-url (the signer's /metrics, e.g. through kubectl port-forward)".into()));
            None
        }
        Some(Err(e)) => {
            out.push(Check::new(SIGNER, "ca", Status::Fail, format!("cannot read the signer's metrics at {}: {e}", o.metrics_url.as_deref().unwrap_or("?")))
                .hint(format!("is a signer running? kubectl -n {} get pods; then kubectl -n {} port-forward deploy/podcert-signer 8080 and --metrics-url http://127.0.0.1:8080/metrics", o.namespace, o.namespace)));
            None
        }
        Some(Ok(m)) => Some(m.as_slice()),
    };
    let mut ca_fingerprints = Vec::new();
    if let Some(m) = metrics {
        let not_after = series(m, "podcert_ca_not_after_timestamp_seconds", &o.signer_name)
            .first()
            .map(|s| s.value as i64);
        out.push(match not_after {
            None => Check::new(SIGNER, "ca", Status::Fail, format!("no CA loaded for {} (the signer reports no podcert_ca_not_after_timestamp_seconds)", o.signer_name))
                .hint("the signer is not ready: read its log (kubectl logs) and its /readyz; the CA Secret or files may be missing or unreadable"),
            Some(t) if t - o.now <= limits.ca_expiry_warning => Check::new(SIGNER, "ca", Status::Fail, format!(
                "the signing CA expires {} ({}), within {}",
                date(t),
                if t > o.now { format!("in {}", ago(t - o.now)) } else { format!("{} ago", ago(o.now - t)) },
                ago(limits.ca_expiry_warning)
            ))
            .hint(format!("rotate it: podcert-signer ca rotate --secret {}/<CA Secret> (bootstrapped CA), or replace the CA material; see CA rotation in the README", o.namespace)),
            Some(t) => Check::new(SIGNER, "ca", Status::Ok, format!("CA loaded, valid until {} ({} left)", date(t), ago(t - o.now))),
        });
        for s in series(
            m,
            "podcert_ca_certificate_not_after_timestamp_seconds",
            &o.signer_name,
        ) {
            if let (Some(role), Some(fp)) = (s.labels.get("role"), s.labels.get("fingerprint")) {
                if role == "active" || role == "next" {
                    ca_fingerprints.push((role.clone(), fp.clone()));
                }
            }
        }
        let phase = series(m, "podcert_ca_rotation_phase", &o.signer_name)
            .into_iter()
            .find(|s| s.value == 1.0)
            .and_then(|s| s.labels.get("phase").cloned());
        let next = series(
            m,
            "podcert_ca_rotation_next_step_timestamp_seconds",
            &o.signer_name,
        )
        .first()
        .map(|s| s.value as i64)
        .filter(|t| *t > 0);
        out.push(match (phase, next) {
            (None, _) => Check::new(SIGNER, "rotation", Status::Ok, "no rotation state reported (the CA is not rotated by the signer)".into()),
            (Some(p), Some(t)) if o.now - t > limits.rotation_overdue => Check::new(SIGNER, "rotation", Status::Fail, format!(
                "CA rotation stalled in phase {p}: its next step was due {} ({} ago)", date(t), ago(o.now - t)
            ))
            .hint("only the leader rotates: check that a leader is present and its log for rotation errors (Events on the CA Secret)"),
            (Some(p), Some(t)) => Check::new(SIGNER, "rotation", Status::Ok, format!("CA rotation phase {p}, next step {}", date(t))),
            (Some(p), None) => Check::new(SIGNER, "rotation", Status::Ok, format!("CA rotation phase {p}, nothing scheduled")),
        });
        let mut denied: Vec<(String, f64)> = series(m, "podcert_denied_total", &o.signer_name)
            .into_iter()
            .filter(|s| s.value > 0.0)
            .map(|s| (s.labels.get("reason").cloned().unwrap_or_default(), s.value))
            .collect();
        denied.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.push(if denied.is_empty() {
            Check::new(SIGNER, "denials", Status::Ok, "no requests denied since the signer started".into())
        } else {
            Check::new(SIGNER, "denials", Status::Warn, format!(
                "requests denied since the signer started: {}",
                denied.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
            ))
            .hint("each denied request has an Event naming why (kubectl get events --field-selector reason=Denied); see What is checked in the README")
        });
    }
    if o.trust_bundle {
        out.push(bundle_check(o, &ca_fingerprints));
    }
    out.push(leader_check(o, metrics));
    if let Some(c) = members_check(o) {
        out.push(c);
    }
    out
}

fn bundle_check(o: &Observed, ca: &[(String, String)]) -> Check {
    let name = &o.bundle_name;
    let hint = "only the leader publishes: check that a leader is present, its log, and its RBAC (create/get/update clustertrustbundles, attest on the signer name)";
    match &o.bundle {
        Bundle::Off => Check::new(
            SIGNER,
            "bundle",
            Status::Skip,
            "no trust bundle published".into(),
        ),
        Bundle::Error(e) => Check::new(
            SIGNER,
            "bundle",
            Status::Warn,
            format!("cannot read ClusterTrustBundle {name}: {e}"),
        ),
        Bundle::Missing => Check::new(
            SIGNER,
            "bundle",
            Status::Fail,
            format!("ClusterTrustBundle {name} is not published"),
        )
        .hint(hint),
        Bundle::Found {
            signer_name,
            fingerprints,
        } => {
            if signer_name.as_deref() != Some(o.signer_name.as_str()) {
                return Check::new(SIGNER, "bundle", Status::Fail, format!(
                    "ClusterTrustBundle {name} has spec.signerName {:?}, not {}", signer_name.as_deref().unwrap_or(""), o.signer_name
                ))
                .hint("pods select bundles by signer name: delete the object and let the signer re-create it");
            }
            let missing: Vec<String> = ca
                .iter()
                .filter(|(_, fp)| !fingerprints.iter().any(|f| f.starts_with(fp.as_str())))
                .map(|(role, fp)| format!("the {role} CA {fp}"))
                .collect();
            if !missing.is_empty() {
                return Check::new(
                    SIGNER,
                    "bundle",
                    Status::Fail,
                    format!(
                        "ClusterTrustBundle {name} does not hold {}",
                        missing.join(" or ")
                    ),
                )
                .hint(hint);
            }
            let compared = if ca.is_empty() {
                " (not compared with the CA: no metrics)"
            } else {
                ", including the signing CA"
            };
            Check::new(
                SIGNER,
                "bundle",
                Status::Ok,
                format!(
                    "ClusterTrustBundle {name} published with {} root(s){compared}",
                    fingerprints.len()
                ),
            )
        }
    }
}

/// Active-active: the replicas that renew their member Lease. None with leader election off.
fn members_check(o: &Observed) -> Option<Check> {
    let members = match o.members.as_ref()? {
        Err(e) => {
            return Some(Check::new(
                SIGNER,
                "members",
                Status::Warn,
                format!("cannot list member Leases: {e}"),
            ))
        }
        Ok(m) => m,
    };
    if members.is_empty() {
        return Some(Check::new(
            SIGNER,
            "members",
            Status::Skip,
            format!(
                "no member Leases of {}: leader mode (--ha-mode leader), the leader decides every request",
                o.lease_name
            ),
        ));
    }
    let held: Vec<&Member> = members
        .iter()
        .filter(|m| m.holder.as_deref().is_some_and(|h| !h.is_empty()))
        .collect();
    let live: Vec<&str> = held
        .iter()
        .filter(|m| {
            m.renewed
                .is_some_and(|r| o.now - r <= m.duration_seconds.unwrap_or(2) + MEMBER_CLOCK_SLACK)
        })
        .filter_map(|m| m.holder.as_deref())
        .collect();
    let silent = held.len() - live.len();
    let silent_note = if silent > 0 {
        format!(
            "; {silent} held but silent (a killed replica's, free for a new one after 2 minutes)"
        )
    } else {
        String::new()
    };
    let check = if live.is_empty() {
        Check::new(
            SIGNER,
            "members",
            Status::Fail,
            format!("no active-active member renews its Lease{silent_note}"),
        )
        .hint(format!(
            "no replica is running or none can write Leases: kubectl -n {} get pods,lease -l podcert.dev/member-of={}",
            o.namespace, o.lease_name
        ))
    } else {
        let mut names = live.clone();
        names.sort_unstable();
        Check::new(
            SIGNER,
            "members",
            Status::Ok,
            format!(
                "{} active-active member(s) share the requests: {}{silent_note}",
                live.len(),
                names.join(", ")
            ),
        )
    };
    Some(check)
}

fn leader_check(o: &Observed, metrics: Option<&[Sample]>) -> Check {
    let lease = format!("Lease {}/{}", o.namespace, o.lease_name);
    let hint = format!(
        "no signer replica is running or can reach the API: kubectl -n {} get pods,lease; read the signer's log",
        o.namespace
    );
    match &o.lease {
        Lease::Off => match metrics.map(|m| {
            m.iter()
                .any(|s| s.name == "podcert_leader" && s.value == 1.0)
        }) {
            Some(true) => Check::new(
                SIGNER,
                "leader",
                Status::Ok,
                "the scraped replica leads (leader election off)".into(),
            ),
            Some(false) => Check::new(
                SIGNER,
                "leader",
                Status::Fail,
                "the scraped replica does not lead (leader election off)".into(),
            )
            .hint(hint),
            None => Check::new(
                SIGNER,
                "leader",
                Status::Skip,
                "leader election off: pass --metrics-url to see whether the replica leads".into(),
            ),
        },
        Lease::Error(e) => Check::new(
            SIGNER,
            "leader",
            Status::Warn,
            format!("cannot read {lease}: {e}"),
        ),
        Lease::Missing => Check::new(
            SIGNER,
            "leader",
            Status::Fail,
            format!("no leader: {lease} does not exist"),
        )
        .hint(hint),
        Lease::Found {
            holder,
            renewed,
            duration_seconds,
        } => {
            let holder = holder.as_deref().filter(|h| !h.is_empty());
            let duration = duration_seconds.unwrap_or(0);
            match (holder, renewed) {
                (Some(h), Some(r)) if o.now - r <= duration => Check::new(
                    SIGNER,
                    "leader",
                    Status::Ok,
                    format!("leader {h} ({lease} renewed {} ago)", ago(o.now - r)),
                ),
                (Some(h), Some(r)) => Check::new(
                    SIGNER,
                    "leader",
                    Status::Fail,
                    format!(
                        "no leader: {lease} was last renewed by {h} {} ago (lease {duration}s)",
                        ago(o.now - r)
                    ),
                )
                .hint(hint),
                _ => Check::new(
                    SIGNER,
                    "leader",
                    Status::Fail,
                    format!("no leader: {lease} is not held"),
                )
                .hint(hint),
            }
        }
    }
}

fn request_checks(o: &Observed, limits: &Limits) -> Vec<Check> {
    let requests = match &o.requests {
        Err(e) => {
            return vec![Check::new(
                REQUESTS,
                "pending",
                Status::Warn,
                format!("cannot list PodCertificateRequests: {e}"),
            )]
        }
        Ok(r) => r,
    };
    let pending: Vec<i64> = requests
        .iter()
        .filter(|r| r.outcome.is_none())
        .map(|r| r.created.map_or(0, |c| o.now - c))
        .collect();
    let oldest = pending.iter().copied().max().unwrap_or(0);
    let mut out = vec![if pending.is_empty() {
        Check::new(
            REQUESTS,
            "pending",
            Status::Ok,
            "no requests pending".into(),
        )
    } else if oldest > limits.pending_max_age {
        Check::new(REQUESTS, "pending", Status::Fail, format!(
            "{} request(s) pending, the oldest for {} (over {})", pending.len(), ago(oldest), ago(limits.pending_max_age)
        ))
        .hint("no signer is deciding them: check the leader, the signer's log and podcert_errors_total; `sign` permission on the signer name")
    } else {
        Check::new(
            REQUESTS,
            "pending",
            Status::Ok,
            format!(
                "{} request(s) pending, the oldest for {}",
                pending.len(),
                ago(oldest)
            ),
        )
    }];
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for (t, reason) in requests.iter().filter_map(|r| r.outcome.as_ref()) {
        if t != "Issued" {
            *by_reason.entry(format!("{t}/{reason}")).or_default() += 1;
        }
    }
    out.push(if by_reason.is_empty() {
        Check::new(
            REQUESTS,
            "outcomes",
            Status::Ok,
            format!(
                "{} decided request(s) in the cluster, none denied or failed",
                requests.len() - pending.len()
            ),
        )
    } else {
        Check::new(
            REQUESTS,
            "outcomes",
            Status::Warn,
            format!(
                "denied or failed requests in the cluster: {}",
                by_reason
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .hint("kubectl get podcertificaterequests -A -o wide; each denial has an Event naming why")
    });
    out
}

fn skew_check(o: &Observed) -> Check {
    let nodes = match &o.nodes {
        Err(e) => {
            return Check::new(
                NODES,
                "skew",
                Status::Warn,
                format!("cannot list nodes: {e}"),
            )
        }
        Ok(n) => n,
    };
    if nodes.is_empty() {
        return Check::new(NODES, "skew", Status::Ok, "no nodes".into());
    }
    let served = o.pcr_versions.as_ref().map(Vec::as_slice).unwrap_or(&[]);
    let mut problems = Vec::new();
    for n in nodes {
        let Some(minor) = minor_of(&n.kubelet_version) else {
            problems.push(format!(
                "{} (kubelet {:?}: unknown version)",
                n.name, n.kubelet_version
            ));
            continue;
        };
        if o.server_minor.is_some_and(|s| minor > s) {
            problems.push(format!(
                "{} (kubelet {} is newer than the API server 1.{}: unsupported skew)",
                n.name,
                n.kubelet_version,
                o.server_minor.unwrap_or(0)
            ));
            continue;
        }
        let writes = kubelet_pcr_versions(minor);
        if !writes.iter().any(|w| served.iter().any(|s| s == w)) {
            problems.push(format!(
                "{} (kubelet {} writes PodCertificateRequest {}, the server serves {})",
                n.name,
                n.kubelet_version,
                if writes.is_empty() {
                    "in no version".to_string()
                } else {
                    writes.join(" or ")
                },
                if served.is_empty() {
                    "none".to_string()
                } else {
                    served.join(", ")
                }
            ));
        }
    }
    let mut versions: Vec<&str> = nodes.iter().map(|n| n.kubelet_version.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    if problems.is_empty() {
        Check::new(
            NODES,
            "skew",
            Status::Ok,
            format!(
                "{} node(s), kubelets {}: every one can request certificates",
                nodes.len(),
                versions.join(", ")
            ),
        )
    } else {
        Check::new(NODES, "skew", Status::Fail, format!("{} of {} node(s) cannot get pod certificates: {}", problems.len(), nodes.len(), problems.join("; ")))
            .hint("serve the PodCertificateRequest version those kubelets write (v1beta1 for 1.35-1.37, v1alpha1 for 1.34) or upgrade them; a kubelet must not be newer than the API server")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            ca_expiry_warning: 7 * 86400,
            pending_max_age: 120,
            rotation_overdue: 600,
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn healthy() -> Observed {
        let fp = "ab".repeat(32);
        let metrics = format!(
            "# TYPE podcert_ca_not_after_timestamp_seconds gauge\n\
             podcert_ca_not_after_timestamp_seconds{{signer_name=\"x.dev/y\"}} {}\n\
             podcert_ca_certificate_not_after_timestamp_seconds{{signer_name=\"x.dev/y\",role=\"active\",fingerprint=\"{}\"}} 1\n\
             podcert_ca_rotation_phase{{signer_name=\"x.dev/y\",phase=\"Stable\"}} 1\n\
             podcert_ca_rotation_phase{{signer_name=\"x.dev/y\",phase=\"Prepared\"}} 0\n\
             podcert_ca_rotation_next_step_timestamp_seconds{{signer_name=\"x.dev/y\"}} {}\n\
             podcert_leader 1\n# EOF\n",
            NOW + 100 * 86400,
            &fp[..16],
            NOW + 50 * 86400
        );
        Observed {
            now: NOW,
            signer_name: "x.dev/y".into(),
            namespace: "ns".into(),
            lease_name: "l".into(),
            bundle_name: "x.dev:y:live".into(),
            server_minor: Some(37),
            pcr_versions: Ok(vec!["v1".into(), "v1beta1".into()]),
            ctb_versions: Ok(vec!["v1".into()]),
            trust_bundle: true,
            projection: Projection::Kept,
            permissions: vec![Permission {
                what: "sign signers x.dev/y".into(),
                why: "decide requests",
                can_i: "kubectl auth can-i sign signers.certificates.k8s.io/x.dev/y --as u".into(),
                allowed: Ok(true),
            }],
            metrics: Some(parse_metrics(&metrics)),
            metrics_url: Some("http://m".into()),
            bundle: Bundle::Found {
                signer_name: Some("x.dev/y".into()),
                fingerprints: vec![fp],
            },
            lease: Lease::Found {
                holder: Some("a".into()),
                renewed: Some(NOW - 1),
                duration_seconds: Some(8),
            },
            members: None,
            requests: Ok(vec![Request {
                created: Some(NOW - 10),
                outcome: Some(("Issued".into(), "Issued".into())),
            }]),
            nodes: Ok(vec![Node {
                name: "n".into(),
                kubelet_version: "v1.37.2".into(),
            }]),
        }
    }

    fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks.iter().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn a_healthy_set_up_passes_every_check() {
        let checks = evaluate(&healthy(), &limits());
        for c in &checks {
            assert_eq!(c.status, Status::Ok, "{c:?}");
        }
        assert_eq!(checks.len(), 12, "{checks:#?}");
    }

    #[test]
    fn parses_labels_escapes_and_openmetrics_markers() {
        let m = parse_metrics(
            "# HELP a x\na_total{k=\"v \\\"q\\\"\",r=\"x\\\\y\"} 3 1700000000\nb +Inf\n# EOF\n",
        )
        .unwrap();
        assert_eq!(m[0].name, "a_total");
        assert_eq!(m[0].labels["k"], "v \"q\"");
        assert_eq!(m[0].labels["r"], "x\\y");
        assert_eq!(m[0].value, 3.0);
        assert!(m[1].value.is_infinite());
        assert!(parse_metrics("a{k=\"v} 1").is_err());
        assert!(parse_metrics("a notanumber").is_err());
    }

    #[test]
    fn an_expiring_ca_fails() {
        let mut o = healthy();
        let text = format!(
            "podcert_ca_not_after_timestamp_seconds{{signer_name=\"x.dev/y\"}} {}\n",
            NOW + 3 * 86400
        );
        o.metrics = Some(parse_metrics(&text));
        let c = evaluate(&o, &limits());
        let ca = by_id(&c, "ca");
        assert_eq!(ca.status, Status::Fail);
        assert!(ca.message.contains("in 3d"), "{}", ca.message);
        assert!(ca.hint.as_deref().unwrap().contains("ca rotate"));
    }

    fn member(holder: &str, renewed_ago: i64) -> Member {
        Member {
            holder: Some(holder.into()).filter(|h: &String| !h.is_empty()),
            renewed: Some(NOW - renewed_ago),
            duration_seconds: Some(2),
        }
    }

    #[test]
    fn members_live_silent_and_absent() {
        let mut o = healthy();
        let c = evaluate(&o, &limits());
        assert!(
            c.iter().all(|c| c.id != "members"),
            "no check with election off"
        );

        o.members = Some(Ok(vec![member("b", 1), member("a", 0), member("", 900)]));
        let c = by_id(&evaluate(&o, &limits()), "members").clone();
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.message
                .starts_with("2 active-active member(s) share the requests: a, b"),
            "{}",
            c.message
        );

        // A SIGKILLed replica's Lease stays held until a new replica reuses it.
        o.members = Some(Ok(vec![member("a", 0), member("dead", 60)]));
        let c = by_id(&evaluate(&o, &limits()), "members").clone();
        assert_eq!(c.status, Status::Ok);
        assert!(c.message.contains("1 held but silent"), "{}", c.message);

        o.members = Some(Ok(vec![member("dead", 60)]));
        let c = by_id(&evaluate(&o, &limits()), "members").clone();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.hint
                .as_deref()
                .unwrap()
                .contains("podcert.dev/member-of=l"),
            "{:?}",
            c.hint
        );

        o.members = Some(Ok(vec![]));
        let c = by_id(&evaluate(&o, &limits()), "members").clone();
        assert_eq!(c.status, Status::Skip);
        assert!(c.message.contains("leader mode"), "{}", c.message);
    }

    #[test]
    fn a_signer_of_before_the_label_rename_is_still_read() {
        let mut o = healthy();
        let text = format!(
            "podcert_ca_not_after_timestamp_seconds{{signer=\"x.dev/y\"}} {}\n",
            NOW + 3 * 86400
        );
        o.metrics = Some(parse_metrics(&text));
        let ca = by_id(&evaluate(&o, &limits()), "ca").clone();
        assert_eq!(ca.status, Status::Fail);
        assert!(ca.message.contains("in 3d"), "{}", ca.message);
    }

    #[test]
    fn an_overdue_rotation_step_is_stalled() {
        let mut o = healthy();
        let text = format!(
            "podcert_ca_rotation_phase{{signer_name=\"x.dev/y\",phase=\"Prepared\"}} 1\n\
             podcert_ca_rotation_next_step_timestamp_seconds{{signer_name=\"x.dev/y\"}} {}\n",
            NOW - 3600
        );
        o.metrics = Some(parse_metrics(&text));
        let c = by_id(&evaluate(&o, &limits()), "rotation").clone();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.message.contains("stalled in phase Prepared"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_bundle_without_the_active_ca_fails() {
        let mut o = healthy();
        o.bundle = Bundle::Found {
            signer_name: Some("x.dev/y".into()),
            fingerprints: vec!["cd".repeat(32)],
        };
        let c = by_id(&evaluate(&o, &limits()), "bundle").clone();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.message.contains("the active CA abababab"),
            "{}",
            c.message
        );
    }

    #[test]
    fn an_expired_lease_is_no_leader() {
        let mut o = healthy();
        o.lease = Lease::Found {
            holder: Some("a".into()),
            renewed: Some(NOW - 60),
            duration_seconds: Some(8),
        };
        let c = by_id(&evaluate(&o, &limits()), "leader").clone();
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.starts_with("no leader"), "{}", c.message);
    }

    #[test]
    fn old_pending_requests_fail_and_denials_are_counted() {
        let mut o = healthy();
        o.requests = Ok(vec![
            Request {
                created: Some(NOW - 300),
                outcome: None,
            },
            Request {
                created: Some(NOW - 30),
                outcome: None,
            },
            Request {
                created: Some(NOW),
                outcome: Some(("Denied".into(), "InvalidProof".into())),
            },
        ]);
        let c = evaluate(&o, &limits());
        let p = by_id(&c, "pending");
        assert_eq!(p.status, Status::Fail);
        assert!(
            p.message
                .starts_with("2 request(s) pending, the oldest for 5m (over 2m)"),
            "{}",
            p.message
        );
        let d = by_id(&c, "outcomes");
        assert_eq!(d.status, Status::Warn);
        assert!(d.message.contains("Denied/InvalidProof 1"), "{}", d.message);
    }

    #[test]
    fn kubelet_skew_against_the_served_versions() {
        let mut o = healthy();
        o.pcr_versions = Ok(vec!["v1".into()]);
        o.nodes = Ok(vec![
            Node {
                name: "old".into(),
                kubelet_version: "v1.35.4".into(),
            },
            Node {
                name: "new".into(),
                kubelet_version: "v1.37.0".into(),
            },
            Node {
                name: "ahead".into(),
                kubelet_version: "v1.38.0".into(),
            },
        ]);
        let c = by_id(&evaluate(&o, &limits()), "skew").clone();
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.starts_with("2 of 3"), "{}", c.message);
        assert!(
            c.message.contains(
                "old (kubelet v1.35.4 writes PodCertificateRequest v1beta1, the server serves v1)"
            ),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("ahead (kubelet v1.38.0 is newer"),
            "{}",
            c.message
        );
        assert_eq!(minor_of("1.34"), Some(34));
        assert_eq!(minor_of("v2.0.0"), None);
    }

    #[test]
    fn without_a_trust_bundle_its_checks_are_skipped() {
        let mut o = healthy();
        o.trust_bundle = false;
        o.projection = Projection::Dropped;
        o.bundle = Bundle::Off;
        let c = evaluate(&o, &limits());
        assert!(
            c.iter().all(|c| c.id != "ctb-api" && c.id != "bundle"),
            "{c:#?}"
        );
        assert_eq!(by_id(&c, "ctb-projection").status, Status::Skip);
        assert!(c.iter().all(|c| c.status != Status::Fail), "{c:#?}");
    }

    #[test]
    fn dropped_projection_and_missing_permission_fail_with_hints() {
        let mut o = healthy();
        o.projection = Projection::Dropped;
        o.permissions[0].allowed = Ok(false);
        let c = evaluate(&o, &limits());
        let p = by_id(&c, "ctb-projection");
        assert_eq!(p.status, Status::Fail);
        assert!(p
            .hint
            .as_deref()
            .unwrap()
            .contains("ClusterTrustBundleProjection"));
        let r = by_id(&c, "rbac");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.message, "cannot sign signers x.dev/y (decide requests)");
        assert_eq!(r.anchor(), "README.md#check-rbac");
        assert!(r.hint.as_deref().unwrap().ends_with(
            "verify with kubectl auth can-i sign signers.certificates.k8s.io/x.dev/y --as u"
        ));
    }
}
