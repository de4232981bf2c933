#!/usr/bin/env bash
# Checks that the PKCS#11 image loads a token vendor's module and signs with a key that never
# leaves the token: builds podcert-signer:<tag>-pkcs11-softhsm2 from Dockerfile.pkcs11 with
# Debian's softhsm2 added (as a user adds the vendor's package), then, inside it, as UID 65532
# with the root file system as the image has it: initialises a token, `ca init --generate`s an
# ECDSA P-256 CA key in it, and `sign`s a kubelet-made request. On the host: the decision is
# Issued, the leaf verifies against the CA certificate with openssl, and no key file was written.
#
# Usage: scripts/check-pkcs11-image.sh [--tool buildah|docker] [--tag TAG] [build-images.sh flags]
# (the flags after --tool/--tag go to scripts/build-images.sh, e.g. --debootstrap-base, --profile dev
# --reuse-host-build). Needs python3 and openssl on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=buildah
tag=dev
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
image="podcert-signer:$tag-pkcs11-softhsm2"

bash scripts/build-images.sh --tool "$tool" --tag "$tag" --pkcs11-only \
  --pkcs11-packages softhsm2 --pkcs11-tag "$tag-pkcs11-softhsm2" ${rest[@]+"${rest[@]}"}

work="$(mktemp -d)"
ctr=""
cleanup() {
  if [ -n "$ctr" ]; then buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A request as a 1.37 kubelet makes it (Go's crypto; stub PKCS#10, v1).
python3 - "$work/request.json" <<'PY'
import json, sys
vectors = json.load(open("testdata/kubelet-vectors/vectors.json"))
v = next(v for v in vectors if v["name"] == "ECDSAP256-stub-v1")
json.dump(v["object"], open(sys.argv[1], "w"))
PY
signer_name="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"]["signerName"])' "$work/request.json")"
mkdir -p "$work/tokens"
printf 'directories.tokendir = /work/tokens\nobjectstore.backend = file\n' > "$work/softhsm2.conf"
(umask 077; printf '1234\n' > "$work/pin")
chown -R 65532:65532 "$work"

key='pkcs11:token=podcert;object=ca-image?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/work/pin'
script="set -e
softhsm2-util --init-token --free --label podcert --so-pin 5678 --pin 1234 >/dev/null
podcert-signer ca init --ca-key '$key' --generate --key-type ecdsa-p256 --trust-domain cluster.local --out /work/ca
podcert-signer sign --ca-cert /work/ca/ca.crt --ca-key '$key' --trust-domain cluster.local \
  --signer-name '$signer_name' < /work/request.json > /work/decided.json"

echo "== SoftHSM2 inside $image (UID 65532)"
if [ "$tool" = buildah ]; then
  ctr="$(buildah --storage-driver vfs from "$image")"
  buildah run --isolation chroot --storage-driver vfs --user 65532:65532 \
    --volume "$work:/work" --env SOFTHSM2_CONF=/work/softhsm2.conf "$ctr" -- sh -c "$script"
else
  docker run --rm --user 65532:65532 -v "$work:/work" -e SOFTHSM2_CONF=/work/softhsm2.conf \
    --entrypoint sh "$image" -c "$script"
fi

python3 - "$work/decided.json" "$work/leaf.pem" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))["status"]
conds = [c["type"] for c in status.get("conditions", [])]
if "Issued" not in conds:
    sys.exit(f"check-pkcs11-image: not issued: {status}")
chain = status["certificateChain"]
open(sys.argv[2], "w").write(chain[: chain.index("-----END CERTIFICATE-----") + 26])
PY
openssl verify -CAfile "$work/ca/ca.crt" "$work/leaf.pem"
for f in "$work"/ca/*; do
  case "$(basename "$f")" in
    ca.crt) ;;
    *) echo "check-pkcs11-image: ca init wrote more than ca.crt: $f" >&2; exit 1 ;;
  esac
done
echo "check-pkcs11-image: ok ($image loaded libsofthsm2.so, generated the CA key in the token and issued a leaf that verifies)"
