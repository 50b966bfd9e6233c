#!/usr/bin/env bash
# Benchmark: the node, end to end, on a real booted Debian node (agent/tests/node.rs).
#  - from `live` + assignment to `redis-cli ping` → PONG on the node, and the part of it
#    that is apt (the agent logs `packages installed` with its seconds);
#  - a configuration-only change (no package work), from the promotion to redis answering on
#    the new configuration, with the agent's poll interval at 1 s (target <= 2 s beyond it);
#  - the node test's wall time (target <= 4 min in CI).
# Runs the node test RUNS times (default 3) and prints median, min and max of each figure.
# Needs root, mmdebstrap and systemd-container (apt-get install -y mmdebstrap systemd-container)
# and Debian's package mirror (the node installs redis, openssh-server and the base packages).
#
#   bench/node.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
cd "$here"
cargo test -q -p module-agent --test node --no-run 2>/dev/null
log=$(mktemp "${TMPDIR:-/tmp}/node-bench.XXXXXX")
trap 'rm -f "$log"' EXIT
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  cargo test -q -p module-agent --test node -- --nocapture --test-threads 1 >"$log.run" 2>&1 \
    || { cat "$log.run" >&2; echo "bench/node.sh: run $i failed" >&2; exit 1; }
  end=$(date +%s.%N)
  grep '^node:' "$log.run" >>"$log"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "wall %.2f\n", b - a }' >>"$log"
  echo "run $i: $(grep '^node:' "$log.run" | tr '\n' ' ')" >&2
done
rm -f "$log.run"
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "median %.2f s, min %.2f s, max %.2f s (%d runs)\n", v[int((NR + 1) / 2)], v[1], v[NR], NR }'; }
echo "live + assignment -> PONG:   $(sed -n 's/^node: live + assignment -> applied (PONG) in \([0-9.]*\) s.*/\1/p' "$log" | stats)"
echo "  of which apt:              $(sed -n 's/.*of which apt \([0-9.]*\) s.*/\1/p' "$log" | stats)"
echo "config change -> restarted:  $(sed -n 's/^node: promotion of a config change -> redis on it in \([0-9.]*\) s.*/\1/p' "$log" | stats)"
echo "node test wall time:         $(sed -n 's/^wall \([0-9.]*\)/\1/p' "$log" | stats)"
