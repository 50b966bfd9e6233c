#!/usr/bin/env bash
# Benchmark: acknowledged webhook deliveries per second and ack latency (p50/p99), each
# delivery durably recorded before its 202. Loads POST /hooks/gitea on loopback with wrk,
# the Gitea package fixture (valid HMAC) and unique delivery ids; SQLite, then PostgreSQL
# when DATABASE_URL (or the local server at 127.0.0.1:5432) is reachable.
# Target: ≥ 8,000 deliveries/s with p99 ≤ 10 ms on SQLite (group commit: many deliveries per
# transaction, each committed before its 202).
#
#   bench/hooks.sh [SECONDS] [CONNECTIONS]     (defaults 10 s, 16 connections; needs wrk)
set -euo pipefail
secs=${1:-10}
conns=${2:-16}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
command -v wrk >/dev/null || { echo "bench/hooks.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p module-webhook --manifest-path "$here/Cargo.toml"
mw="$here/target/release/module-webhook"
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-bench.XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
# One signing key for every receiver of the run: replicas must share it (a replica whose key
# differs from the one recorded in the database refuses to start).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/receiver-key.pem" 2>/dev/null
chmod 600 "$work/receiver-key.pem"
export HOOK_BODY="$here/webhook/tests/data/package-created-container.json"
export HOOK_SIGNATURE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["X-Gitea-Signature"])' "$here/webhook/tests/data/package-created-container.headers.json")

# start NAME DB: a receiver on a free port, its URL in $url and its PID appended to $pid.
start() {
  local name=$1 db=$2
  local port=$(free_port)
  cat > "$work/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "$db"
data_dir = "$work/data-$name"
[registry]
url = "http://127.0.0.1:9"
repositories = ["acme/*"]
[hooks]
gitea_secrets = ["fixture-webhook-secret"]
[ingest]
workers = 1
max_attempts = 1
backoff_base_ms = 1000
backoff_cap_ms = 1000
signature_timeout_secs = 3600
reconcile_interval_secs = 3600
lease_secs = 120
max_artifact_bytes = 1
[fleet]
signing_key = "$work/receiver-key.pem"
TOML
  RUST_LOG=warn DATABASE_URL= "$mw" serve --config "$work/$name.toml" 2>"$work/$name.log" &
  pid="$pid $!"
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$url/readyz" >/dev/null && break; sleep 0.1; done
}

stop() { [ -n "$pid" ] && kill $pid; wait $pid 2>/dev/null || true; pid=""; }

# run NAME DB: one receiver, wrk with $conns connections.
run() {
  start "$1" "$2"
  echo "== $1 ($2)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$here/bench/hooks.lua" "$url" | tee "$work/$1.wrk"
  stop
}

# run_replicas NAME DB: two receivers on one database, half the connections each, at once.
run_replicas() {
  start "$1-a" "$2"; local a=$url
  start "$1-b" "$2"; local b=$url
  echo "== $1: two replicas ($2)"
  HOOK_PREFIX=a wrk -t1 -c$((conns / 2)) -d"${secs}s" --latency -s "$here/bench/hooks.lua" "$a" > "$work/$1-a.wrk" &
  local w=$!
  HOOK_PREFIX=b wrk -t1 -c$((conns / 2)) -d"${secs}s" --latency -s "$here/bench/hooks.lua" "$b" > "$work/$1-b.wrk"
  wait $w
  cat "$work/$1-a.wrk" "$work/$1-b.wrk"
  stop
}

run sqlite "sqlite://$work/bench.db"
# The same with commits that survive a process crash but not a power loss (the trade-off in
# RELIABILITY.md, "Durability").
run sqlite-normal "sqlite://$work/bench-normal.db?synchronous=normal"
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if python3 -c 'import socket; socket.create_connection(("127.0.0.1",5432),1)' 2>/dev/null && command -v psql >/dev/null; then
  dbname="mw_bench_$$"
  psql "$pg" -qc "CREATE DATABASE $dbname" >/dev/null
  run postgres "${pg%/*}/$dbname"
  run_replicas postgres2 "${pg%/*}/$dbname"
  psql "$pg" -qc "DROP DATABASE $dbname" >/dev/null || true
fi
python3 - "$work" "$work/bench.db" <<'PY'
import re, sys, os, sqlite3
work = sys.argv[1]
n = sqlite3.connect(sys.argv[2]).execute("select count(*) from deliveries").fetchone()[0]
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
for name, files in (("sqlite (synchronous=full)", ["sqlite"]),
                    ("sqlite (synchronous=normal)", ["sqlite-normal"]), ("postgres", ["postgres"]),
                    ("postgres, two replicas", ["postgres2-a", "postgres2-b"])):
    paths = [os.path.join(work, f + ".wrk") for f in files]
    if not all(os.path.exists(p) for p in paths):
        continue
    rps, p50, p99, non2xx = 0.0, 0.0, 0.0, 0
    for p in paths:
        t = open(p).read()
        rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
        lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
        p50, p99 = max(p50, ms(lat["50"])), max(p99, ms(lat["99"]))
        n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        non2xx += int(n2.group(1)) if n2 else 0
    print(f"{name}: {rps:,.0f} deliveries/s acknowledged, p50 {p50:.2f}ms, p99 {p99:.2f}ms (worst replica), non-2xx {non2xx}")
print(f"sqlite deliveries durably recorded: {n}")
PY
