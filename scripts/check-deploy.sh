#!/usr/bin/env bash
# Builds the Kubernetes manifests (deploy/kubernetes/base, dev and observability) with
# kustomize when it is installed, which catches what kubectl apply -k would
# refuse to build. Needs no cluster. Not part of `make test`: the tests check
# the manifests against shop itself (cmd/shop/deploy_test.go).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v kustomize >/dev/null 2>&1; then
  build() { kustomize build "$1"; }
elif command -v kubectl >/dev/null 2>&1; then
  build() { kubectl kustomize "$1"; }
else
  echo "neither kustomize nor kubectl installed; skipping"
  exit 0
fi
for dir in deploy/kubernetes/base deploy/kubernetes/dev deploy/kubernetes/observability; do
  n=$(build "$dir" | grep -c '^kind:')
  echo "$dir: ok ($n objects)"
done
