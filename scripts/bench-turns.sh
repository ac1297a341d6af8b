#!/usr/bin/env bash
# Runs a benchmark in turns against the code of another commit, as BENCHMARKS.md asks of
# every change's effect: on this 2-core kind of machine, speed drifts by 15-30 % within
# minutes, so a figure means something only beside the code before it, measured in turns.
# The other commit is checked out in a temporary git worktree; each turn runs COMMAND there
# and in this tree (odd turns there first, even turns here first), and prints the lines of
# its output that GREP matches.
# Usage: scripts/bench-turns.sh REF TURNS COMMAND...
#   e.g. scripts/bench-turns.sh HEAD~1 3 env RATE=300 PHASES=orders scripts/bench-reads.sh 15
#   GREP="p50|ms/order|Requests/sec|99%|tps =" (extended regular expression) selects the lines.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,10p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ref=$1 turns=$2; shift 2
pattern=${GREP:-p50|ms/order|Requests/sec|99%|tps =}
here=$(pwd)
there=$(mktemp -d)
git worktree add -q --detach "$there" "$ref"
trap 'git -C "$here" worktree remove --force "$there"' EXIT
echo "== $(nproc) cores; $(date -u '+%F %T') UTC; before: $ref ($(git rev-parse --short "$ref")), after: this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ', with changes'))"
for turn in $(seq "$turns"); do
  # Odd turns run before then after, even turns after then before: a drift
  # that goes one way for the whole run favours neither side.
  sides="before after"; [ $((turn % 2)) = 0 ] && sides="after before"
  for side in $sides; do
    dir=$here; [ $side = before ] && dir=$there
    echo "-- turn $turn, $side"
    (cd "$dir" && "$@" 2>&1) | grep -E "$pattern" || echo "   (no line matched; the command's output did not have \"$pattern\")"
  done
done
