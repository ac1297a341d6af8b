#!/usr/bin/env bash
# make vuln: govulncheck ($1) against the Go vulnerability database (GOVULNDB, default
# https://vuln.go.dev; a file:// URL names a local copy). It fails when the code reaches a
# known vulnerability, or when govulncheck cannot finish. When the database cannot be
# reached at all (no network), nothing can be checked: it warns that nothing was, and exits
# 0 without claiming a clean result. Not part of `make test`, which must pass offline.
set -euo pipefail
cd "$(dirname "$0")/.."
govulncheck=$1
db=${GOVULNDB:-https://vuln.go.dev}
db=${db%/}

case $db in
  file://*) ;; # a local copy: govulncheck reports it if it is not one
  *)
    command -v curl >/dev/null || { echo "vuln: curl is required to reach $db" >&2; exit 1; }
    # The first endpoint govulncheck fetches: if it cannot be, neither can the rest.
    status=0
    reason=$(curl -fsS --max-time 15 -o /dev/null "$db/index/db.json.gz" 2>&1) || status=$?
    case $status in
      0) ;;
      22) # an HTTP error: something answered, but not a vulnerability database
        echo "vuln: $db is not a vulnerability database: $reason" >&2
        exit 1 ;;
      *)
        echo "vuln: WARNING: the vulnerability database $db is unreachable (${reason:-no answer})." >&2
        echo "vuln: WARNING: the dependencies were NOT checked for known vulnerabilities; run make vuln online." >&2
        exit 0 ;;
    esac
    ;;
esac
# govulncheck exits 3 when the code reaches a vulnerability and 1 on an error: both fail.
exec "$govulncheck" -db "$db" ./...
