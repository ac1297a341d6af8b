#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 3s): `go test -fuzz`
# takes one target of one package per run. An input that fails is saved under its
# package's testdata/fuzz/<target>/, and from then on every `go test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
fuzztime=${FUZZTIME:-3s}

# One "./dir/file_test.go:func FuzzName(" per target.
targets=$(grep -rEo --include='*_test.go' --exclude-dir=bin --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . | sort || true)
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS= read -r target; do
  dir=$(dirname "${target%%:*}")
  name=${target##*func }
  name=${name%(}
  echo "fuzz: $dir $name ($fuzztime)"
  if ! "$go" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$dir" >"$log" 2>&1; then
    cat "$log"
    echo "fuzz: $name failed; the failing input is saved in $dir/testdata/fuzz/$name/" >&2
    exit 1
  fi
done <<<"$targets"
echo "fuzz: ok"
