#!/usr/bin/env bash
# Builds every Kubernetes overlay of deploy/kubernetes with kustomize (or
# kubectl kustomize) when one is installed, which catches what
# kubectl apply -k would refuse to build. Needs no cluster. Not part of
# `make test`, which builds the same overlays with kustomize's Go API and
# checks every object against the schemas in deploy/kubernetes/schemas
# (cmd/shop/kube_test.go); the components (autoscaling/keda,
# autoscaling/hpa) are built through the overlays that list them.
#
# The overlays read git-ignored secrets.env files (dev/secrets.env,
# prod/secrets.env): they are built from a copy in which a missing one is
# made from its secrets.env.example, or holds a throwaway JWT_SECRET.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every overlay; cmd/shop/kube_test.go checks this list is complete.
overlays=(base dev hpa-only observability prod)

if command -v kustomize >/dev/null 2>&1; then
  build() { kustomize build "$1"; }
elif command -v kubectl >/dev/null 2>&1; then
  build() { kubectl kustomize "$1"; }
else
  echo "neither kustomize nor kubectl installed; skipping"
  exit 0
fi

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -R deploy/kubernetes "$copy/"
for dir in dev prod; do
  secrets="$copy/kubernetes/$dir/secrets.env"
  [ -f "$secrets" ] && continue
  if [ -f "$secrets.example" ]; then
    cp "$secrets.example" "$secrets"
  else
    echo "JWT_SECRET=$(head -c 32 /dev/urandom | base64)" >"$secrets"
  fi
done

for overlay in "${overlays[@]}"; do
  n=$(build "$copy/kubernetes/$overlay" | grep -c '^kind:')
  echo "deploy/kubernetes/$overlay: ok ($n objects)"
done
