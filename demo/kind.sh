#!/usr/bin/env bash
# The kind demo: a local cluster with PodCertificateRequest and ClusterTrustBundle projection on,
# podcert-signer installed from the chart, and two workloads in different namespaces talking
# mTLS with certificates the signer issued.
#
#   demo/kind.sh up [--k8s 1.35] [--name podcert-demo] [--skip-build]
#   demo/kind.sh down [--name podcert-demo]
#
# Needs: docker (a running engine), kind, kubectl, helm. Kubernetes 1.34 to 1.37 (1.35 default).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

cmd="${1:-}"
[ $# -gt 0 ] && shift
k8s=1.35
name=podcert-demo
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --k8s) k8s="${2:-}"; shift 2 ;;
    --name) name="${2:-}"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kind.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$k8s" in
  1.34|1.35|1.36|1.37) ;;
  *) echo "kind.sh: --k8s must be one of 1.34 1.35 1.36 1.37 (got $k8s)" >&2; exit 2 ;;
esac

namespace=podcert-system
signer=podcert.dev/spiffe
tag=dev

# kindest/node image per Kubernetes minor. These tags must be checked against the release
# notes of the kind version you use (each kind release lists the node images built for it,
# with digests; prefer the @sha256 form it gives). Override with KIND_NODE_IMAGE.
node_image() {
  case "$1" in
    1.34) echo "kindest/node:v1.34.0" ;;
    1.35) echo "kindest/node:v1.35.0" ;;
    1.36) echo "kindest/node:v1.36.0" ;;
    1.37) echo "kindest/node:v1.37.0" ;;
  esac
}

# API versions to switch on (reference/podcertificate-contract.md): PodCertificateRequest is
# v1alpha1 on 1.34, v1beta1 on 1.35/1.36, v1 on 1.37 (GA, on by default) where v1beta1 stays
# served when asked for (the signer prefers it: a 1.35 kubelet's pkix+proof is visible there).
# ClusterTrustBundle is v1beta1 from 1.34, v1 on 1.37.
# Checked against the releases' own code (pkg/features/kube_features.go and
# pkg/registry/certificates/rest/storage_certificates.go of k8s.io/kubernetes v1.35.4 and
# v1.37.2, which conformance/ builds): on 1.35 all three gates are beta and off by default, so
# they must be set; on 1.37 they are GA, on by default and not yet locked (locking comes in 1.38),
# so setting them true is accepted; v1beta1 storage for both resources still exists on 1.37 and is
# served only when runtime-config asks for it, as below.
runtime_config() {
  case "$1" in
    1.34) printf '%s\n' \
      '  "certificates.k8s.io/v1alpha1/podcertificaterequests": "true"' \
      '  "certificates.k8s.io/v1beta1/clustertrustbundles": "true"' ;;
    1.35|1.36|1.37) printf '%s\n' \
      '  "certificates.k8s.io/v1beta1/podcertificaterequests": "true"' \
      '  "certificates.k8s.io/v1beta1/clustertrustbundles": "true"' ;;
  esac
}

need() {
  local missing=()
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "kind.sh: please install: ${missing[*]}" >&2
    exit 1
  fi
}

kctl() { kubectl --context "kind-$name" "$@"; }

write_config() { # file
  cat >"$1" <<EOF
# Written by demo/kind.sh for Kubernetes $k8s.
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $name
# kind applies these gates to every component: kube-apiserver, kube-controller-manager
# (the PodCertificateRequest cleaner), kube-scheduler, kube-proxy and the kubelets.
featureGates:
  PodCertificateRequest: true
  ClusterTrustBundle: true
  ClusterTrustBundleProjection: true
runtimeConfig:
$(runtime_config "$k8s")
nodes:
  - role: control-plane
  # Two workers: the signer's two replicas prefer different nodes.
  - role: worker
  - role: worker
EOF
}

build_images() {
  if [ "$(uname -s)" = Linux ]; then
    scripts/build-images.sh --tool docker --tag "$tag"
  else
    # Static Linux binaries need a Linux toolchain: build them in a container, then the images.
    docker run --rm -v "$PWD:/src" -w /src rust:1-bookworm scripts/build-images.sh --stage-only
    docker build -t "podcert-signer:$tag" -f Dockerfile target/image-context
    docker build -t "podcert-workload:$tag" -f workload/Dockerfile target/image-context
  fi
}

up() {
  need docker kind kubectl helm
  local image
  image="${KIND_NODE_IMAGE:-$(node_image "$k8s")}"
  [ -f workload/Dockerfile ] || { echo "kind.sh: workload/Dockerfile is missing" >&2; exit 1; }

  echo "== cluster $name (Kubernetes $k8s, $image)"
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    echo "   already exists; reusing it"
  else
    local config
    config="$(mktemp "${TMPDIR:-/tmp}/podcert-kind.XXXXXX")"
    write_config "$config"
    kind create cluster --config "$config" --image "$image" --wait 3m
    rm -f "$config"
  fi

  if [ "$build" = 1 ]; then
    echo "== images"
    build_images
  fi
  echo "== loading podcert-signer:$tag and podcert-workload:$tag into the nodes"
  kind load docker-image --name "$name" "podcert-signer:$tag" "podcert-workload:$tag"

  echo "== podcert-signer (chart) in $namespace"
  kctl create namespace "$namespace" --dry-run=client -o yaml | kctl apply -f -
  # The chart's pods pass the "restricted" Pod Security Standard: enforce it.
  kctl label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=restricted
  helm --kube-context "kind-$name" upgrade --install podcert-signer charts/podcert-signer \
    --namespace "$namespace" --set image.tag="$tag" --set signer.name="$signer" \
    --wait --timeout 3m
  echo "   trust bundle published by the leader:"
  for _ in $(seq 30); do
    kctl get clustertrustbundles -l podcert.dev/trust-bundle=live -o name 2>/dev/null | grep -q . && break
    sleep 2
  done
  kctl get clustertrustbundles -l podcert.dev/trust-bundle=live

  echo "== workloads: server in demo-a, client in demo-b"
  kctl apply -f demo/manifests/
  # A pod starts only once the kubelet holds its certificate: rollout = issued.
  kctl -n demo-a rollout status deployment/server --timeout 3m
  kctl -n demo-b rollout status deployment/client --timeout 3m
  echo "   certificates requested from $signer:"
  kctl get podcertificaterequests --all-namespaces 2>/dev/null || true

  echo "== letting them talk for 15 s"
  sleep 15
  echo "== server log (demo-a)"
  kctl -n demo-a logs deployment/server --tail 8
  echo "== client log (demo-b)"
  kctl -n demo-b logs deployment/client --tail 8
  echo "== signer log (the leader's decisions; JSON lines)"
  kctl -n "$namespace" logs -l app.kubernetes.io/name=podcert-signer --prefix --tail 200 \
    | grep -E '"message":"(issued|denied|became leader)"' | tail -6 || true
  echo
  echo "Done. Follow the exchange: kubectl --context kind-$name -n demo-b logs -f deployment/client"
  echo "Remove everything: demo/kind.sh down${name:+ --name $name}"
}

down() {
  need kind
  kind delete cluster --name "$name"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  config) write_config /dev/stdout ;; # prints the kind config (for inspection and tests)
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
