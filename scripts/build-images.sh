#!/usr/bin/env bash
# Builds the container images from static binaries compiled on the host:
#   podcert-signer:<tag>    from ./Dockerfile
#   podcert-workload:<tag>  from workload/Dockerfile (when the workload crate exists)
# then runs `podcert-signer --version` inside the signer image and prints the image sizes.
#
# The binaries are static so a FROM scratch image can run them: the musl target when it is
# installed, else the gnu target with -C target-feature=+crt-static (pure Rust plus aws-lc's C
# code links statically against glibc). Both Dockerfiles get the same build context, a staging
# directory holding each binary under its own name (COPY <binary> /<binary>).
#
# Usage: scripts/build-images.sh [--tool buildah|docker] [--profile release|dev] [--tag TAG]
#                                [--no-workload] [--stage-only] [--reuse-host-build]
# Defaults: buildah when installed, else docker; release; dev. --stage-only stops after staging
# the binaries (demo/kind.sh uses it inside a Linux container on macOS, then runs docker build).
# --reuse-host-build (CI): links the binaries statically from the host (gnu) build's
# dependencies instead of building everything again for a separate target: seconds, not minutes.
# buildah needs no daemon and no registry (rootful here): --isolation chroot --storage-driver vfs.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=""
profile=release
tag=dev
workload=1
stage_only=0
reuse=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --no-workload) workload=0; shift ;;
    --stage-only) stage_only=1; shift ;;
    --reuse-host-build) reuse=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$tool" ] && [ "$stage_only" = 0 ]; then
  if command -v buildah >/dev/null 2>&1; then tool=buildah
  elif command -v docker >/dev/null 2>&1; then tool=docker
  else echo "build-images: neither buildah nor docker is installed" >&2; exit 1
  fi
fi
case "$tool" in buildah|docker|"") ;; *) echo "build-images: --tool must be buildah or docker" >&2; exit 2 ;; esac

arch="$(uname -m)"
if [ "$reuse" = 1 ]; then
  # Only the final link differs: `cargo rustc` passes +crt-static to the binary's own rustc
  # call, so the dependencies the host build (cargo test) compiles are reused as they are.
  triple="$arch-unknown-linux-gnu"
  rustflags=""
  target_dir=target
elif rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl"; then
  triple="$arch-unknown-linux-musl"
  rustflags=""
  target_dir="target/$triple"
else
  triple="$arch-unknown-linux-gnu"
  rustflags="-C target-feature=+crt-static"
  # An explicit --target keeps the flags away from build scripts and proc macros and puts the
  # output in target/<triple>/, apart from the host build the tests use.
  target_dir="target/$triple"
fi
case "$profile" in
  dev) outdir="$target_dir/debug" ;;
  *) outdir="$target_dir/$profile" ;;
esac

# The workload crate (another issue) joins the build when it is a workspace member.
workload_pkg=""
workload_bins=()
if [ "$workload" = 1 ] && [ -f workload/Cargo.toml ] && [ -f workload/Dockerfile ]; then
  meta="$(cargo metadata --no-deps --format-version 1 --locked)"
  read -r -a found <<<"$(python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
want = os.path.realpath("workload/Cargo.toml")
for p in meta["packages"]:
    if os.path.realpath(p["manifest_path"]) == want:
        print(p["name"], *[t["name"] for t in p["targets"] if "bin" in t["kind"]])
' <<<"$meta")"
  if [ "${#found[@]}" -ge 2 ]; then
    workload_pkg="${found[0]}"
    workload_bins=("${found[@]:1}")
  else
    echo "build-images: workload/ is not a workspace member with a binary; skipping its image" >&2
  fi
fi

start=$(date +%s)
if [ "$reuse" = 1 ]; then
  echo "== static link against the host build's dependencies (profile $profile)"
  cargo rustc --locked --profile "$profile" -p podcert-signer --bin podcert-signer -- -C target-feature=+crt-static
  for bin in ${workload_bins[@]+"${workload_bins[@]}"}; do
    cargo rustc --locked --profile "$profile" -p "$workload_pkg" --bin "$bin" -- -C target-feature=+crt-static
  done
else
  echo "== static build ($triple, profile $profile${rustflags:+, RUSTFLAGS=$rustflags})"
  build=(cargo build --locked --profile "$profile" --target "$triple" -p podcert-signer --bins)
  if [ -n "$workload_pkg" ]; then
    build+=(-p "$workload_pkg")
  fi
  RUSTFLAGS="$rustflags" "${build[@]}"
fi
echo "   built in $(( $(date +%s) - start )) s"

ctx=target/image-context
rm -rf "$ctx"
mkdir -p "$ctx"
# (${a[@]+"${a[@]}"} keeps an empty array safe under set -u in bash 3.2 too.)
for bin in podcert-signer ${workload_bins[@]+"${workload_bins[@]}"}; do
  src="$outdir/$bin"
  desc="$(file -b "$src")"
  case "$desc" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "build-images: $src is not static: $desc" >&2; exit 1 ;;
  esac
  if command -v strip >/dev/null 2>&1; then
    strip -o "$ctx/$bin" "$src"
  else
    cp "$src" "$ctx/$bin"
  fi
  echo "   $bin: $(du -h "$ctx/$bin" | cut -f1), $(file -b "$ctx/$bin" | cut -d, -f1-5)"
done

if [ "$stage_only" = 1 ]; then
  echo "   staged in $ctx"
  exit 0
fi

images=("podcert-signer:$tag")
if [ -n "$workload_pkg" ]; then
  images+=("podcert-workload:$tag")
fi

build_image() { # image dockerfile
  echo "== image $1 from $2"
  if [ "$tool" = buildah ]; then
    # Drop the previous build of this tag so repeated runs do not pile up untagged images.
    buildah --storage-driver vfs rmi "$1" >/dev/null 2>&1 || true
    buildah bud --quiet --isolation chroot --storage-driver vfs -t "$1" -f "$2" "$ctx"
  else
    docker build --quiet -t "$1" -f "$2" "$ctx"
  fi
}
build_image "podcert-signer:$tag" Dockerfile
if [ -n "$workload_pkg" ]; then
  build_image "podcert-workload:$tag" workload/Dockerfile
fi

echo "== podcert-signer --version inside podcert-signer:$tag"
if [ "$tool" = buildah ]; then
  ctr="$(buildah --storage-driver vfs from "podcert-signer:$tag")"
  trap 'buildah --storage-driver vfs rm "$ctr" >/dev/null' EXIT
  buildah run --isolation chroot --storage-driver vfs "$ctr" -- /podcert-signer --version
else
  docker run --rm "podcert-signer:$tag" --version
fi

echo "== image sizes"
for image in "${images[@]}"; do
  if [ "$tool" = buildah ]; then
    buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}}  {{.Size}}' "$image"
  else
    docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$image"
  fi
done
