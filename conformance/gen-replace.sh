#!/bin/sh
# Writes the staging-module replace block for k8s.io/kubernetes v$1 into modfile $2
# (reference section 1.2: k8s.io/kubernetes vX.Y.Z <=> staging modules v0.Y.Z).
set -eu
V=$1; MODFILE=$2
GOMOD=$(go mod download -json k8s.io/kubernetes@v$V | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
sed -n 's|^\t\(k8s\.io/[^ ]*\) => \./staging/src/.*|\1|p' "$GOMOD" |
  while read -r m; do go mod edit -modfile="$MODFILE" -replace="$m=$m@v0.${V#1.}"; done
go mod edit -modfile="$MODFILE" -require=k8s.io/kubernetes@v$V
