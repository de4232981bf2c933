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
#                                [--pkcs11 [--pkcs11-base IMAGE | --debootstrap-base]
#                                          [--pkcs11-packages "PKG ..."] [--pkcs11-tag TAG]
#                                          [--pkcs11-only]]
# Defaults: buildah when installed, else docker; release; dev. --stage-only stops after staging
# the binaries (demo/kind.sh uses it inside a Linux container on macOS, then runs docker build).
# --reuse-host-build (CI): links the binaries statically from the host (gnu) build's
# dependencies instead of building everything again for a separate target: seconds, not minutes.
# buildah needs no daemon and no registry (rootful here): --isolation chroot --storage-driver vfs.
#
# --pkcs11 also builds podcert-signer:<tag>-pkcs11 from Dockerfile.pkcs11: the host's dynamically
# linked binary on Debian slim, which can load a PKCS#11 module (the static one in an empty image
# cannot). Its base is --pkcs11-base (default debian:bookworm-slim, from a registry), or with
# --debootstrap-base a Debian minbase root file system made by debootstrap from Debian's package
# archive (no registry needed; cached as a tar under ~/.cache/podcert-signer) and imported as
# localhost/podcert-base:<suite>-slim, of the host's Debian suite so that its glibc matches the
# build's. --pkcs11-packages adds Debian packages to that image (e.g. softhsm2); --pkcs11-tag
# names it (default <tag>-pkcs11); --pkcs11-only builds that image alone (implies --no-workload).
# scripts/check-pkcs11-image.sh tests it with SoftHSM2.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=""
profile=release
tag=dev
workload=1
stage_only=0
reuse=0
pkcs11=0
pkcs11_base=debian:bookworm-slim
debootstrap_base=0
pkcs11_packages=""
pkcs11_tag=""
pkcs11_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --no-workload) workload=0; shift ;;
    --stage-only) stage_only=1; shift ;;
    --reuse-host-build) reuse=1; shift ;;
    --pkcs11) pkcs11=1; shift ;;
    --pkcs11-base) pkcs11_base="$2"; shift 2 ;;
    --debootstrap-base) debootstrap_base=1; shift ;;
    --pkcs11-packages) pkcs11_packages="$2"; shift 2 ;;
    --pkcs11-tag) pkcs11_tag="$2"; shift 2 ;;
    --pkcs11-only) pkcs11=1; pkcs11_only=1; workload=0; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
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

ctx=target/image-context
if [ "$pkcs11_only" = 0 ]; then
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
fi

if [ "$stage_only" = 1 ]; then
  echo "   staged in $ctx"
  exit 0
fi

images=()
if [ "$pkcs11_only" = 0 ]; then
  images+=("podcert-signer:$tag")
fi
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
if [ "$pkcs11_only" = 0 ]; then
  build_image "podcert-signer:$tag" Dockerfile
fi
if [ -n "$workload_pkg" ]; then
  build_image "podcert-workload:$tag" workload/Dockerfile
fi

containers=()
cleanup() {
  for c in ${containers[@]+"${containers[@]}"}; do
    buildah --storage-driver vfs rm "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
run_version() { # image
  echo "== podcert-signer --version inside $1"
  if [ "$tool" = buildah ]; then
    local c
    c="$(buildah --storage-driver vfs from "$1")"
    containers+=("$c")
    buildah run --isolation chroot --storage-driver vfs "$c" -- /podcert-signer --version
  else
    docker run --rm "$1" --version
  fi
}
if [ "$pkcs11_only" = 0 ]; then
  run_version "podcert-signer:$tag"
fi

if [ "$pkcs11" = 1 ]; then
  pkcs11_image="podcert-signer:${pkcs11_tag:-$tag-pkcs11}"
  echo "== dynamic link for $pkcs11_image (profile $profile)"
  # The same host build the tests use, linked normally (dynamic glibc): seconds, as above.
  cargo rustc --locked --profile "$profile" -p podcert-signer --bin podcert-signer
  case "$profile" in dev) dyn="target/debug/podcert-signer" ;; *) dyn="target/$profile/podcert-signer" ;; esac
  case "$(file -b "$dyn")" in
    *"dynamically linked"*) ;;
    *) echo "build-images: $dyn is not dynamically linked: $(file -b "$dyn")" >&2; exit 1 ;;
  esac
  pctx=target/image-context-pkcs11
  rm -rf "$pctx"
  mkdir -p "$pctx"
  if command -v strip >/dev/null 2>&1; then strip -o "$pctx/podcert-signer" "$dyn"; else cp "$dyn" "$pctx/podcert-signer"; fi
  if [ "$debootstrap_base" = 1 ]; then
    # A Debian slim base without a registry: debootstrap's minbase, pruned as the slim images
    # are, of the host's suite (the binary needs the host's glibc or newer).
    suite=bookworm
    if grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
      suite="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)"
      suite="${suite:-bookworm}"
    fi
    pkcs11_base="localhost/podcert-base:$suite-slim"
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/podcert-signer"
    tarball="$cache/debian-$suite-minbase.tar"
    if [ ! -s "$tarball" ]; then
      command -v debootstrap >/dev/null 2>&1 || { echo "build-images: --debootstrap-base needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
      echo "== debootstrap --variant=minbase $suite (cached in $tarball)"
      rootfs="$(mktemp -d)"
      debootstrap --variant=minbase "$suite" "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; exit 1; }
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
             "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
      mkdir -p "$cache"
      tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs" "$rootfs.log"
    fi
    if [ "$tool" = buildah ] && buildah --storage-driver vfs inspect --type image "$pkcs11_base" >/dev/null 2>&1 \
       && [ "$tarball" -ot "$cache/.base-imported-$suite" ]; then
      echo "== base image $pkcs11_base (imported before from $tarball)"
    elif [ "$tool" = buildah ]; then
      echo "== base image $pkcs11_base from $tarball"
      buildah --storage-driver vfs rmi "$pkcs11_base" >/dev/null 2>&1 || true
      c="$(buildah --storage-driver vfs from scratch)"
      containers+=("$c")
      buildah --storage-driver vfs add --quiet "$c" "$tarball" /
      buildah --storage-driver vfs config --cmd /bin/bash "$c"
      buildah --storage-driver vfs commit --quiet "$c" "$pkcs11_base" >/dev/null
      touch "$cache/.base-imported-$suite"
    else
      docker import "$tarball" "$pkcs11_base" >/dev/null
    fi
  fi
  echo "== image $pkcs11_image from Dockerfile.pkcs11 (base $pkcs11_base${pkcs11_packages:+, packages: $pkcs11_packages})"
  args=(--build-arg "BASE=$pkcs11_base" --build-arg "PKCS11_PACKAGES=$pkcs11_packages")
  if [ "$tool" = buildah ]; then
    buildah --storage-driver vfs rmi "$pkcs11_image" >/dev/null 2>&1 || true
    buildah bud --quiet --isolation chroot --storage-driver vfs "${args[@]}" -t "$pkcs11_image" -f Dockerfile.pkcs11 "$pctx"
  else
    docker build --quiet "${args[@]}" -t "$pkcs11_image" -f Dockerfile.pkcs11 "$pctx"
  fi
  images+=("$pkcs11_image")
  run_version "$pkcs11_image"
fi

echo "== image sizes"
for image in "${images[@]}"; do
  if [ "$tool" = buildah ]; then
    buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}}  {{.Size}}' "$image"
  else
    docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$image"
  fi
done
