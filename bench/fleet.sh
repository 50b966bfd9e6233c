#!/usr/bin/env bash
# Benchmarks of the fleet side (medians; the machine is 2 cores):
# 1. compose 50 modules x 2,000 files: desired state + merged composefs digest
#    (target <= 200 ms);
# 2. GET desired-state with a matching If-None-Match, 10,000 instances registered, wrk with
#    32 connections (target >= 10,000 responses/s, p99 <= 10 ms on SQLite);
# 3. instance reports, each durable before its answer (target >= 3,000/s on SQLite);
# 4. the fleet drift summary over 10,000 instances (target <= 100 ms).
#
#   bench/fleet.sh [SECONDS] [INSTANCES]      (defaults 10 s, 10000; needs wrk and curl)
set -euo pipefail
secs=${1:-10}
count=${2:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
command -v wrk >/dev/null || { echo "bench/fleet.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench/fleet.sh needs curl: apt-get install -y curl" >&2; exit 1; }

echo "== compose 50 x 2,000 files"
cargo run --release -q -p powernode-module --example compose_bench --manifest-path "$here/Cargo.toml"

cargo build --release -q -p module-webhook --manifest-path "$here/Cargo.toml"
mw="$here/target/release/module-webhook"
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-fleet.XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
port=$(free_port)
ops="bench-operator-token-0123456789"
cat > "$work/fleet.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "sqlite://$work/fleet.db"
data_dir = "$work/data"
[registry]
url = "http://127.0.0.1:9"
repositories = ["acme/*"]
[hooks]
gitea_secrets = ["fixture-webhook-secret"]
[[api.tokens]]
name = "bench"
token = "$ops"
role = "operator"
[ingest]
reconcile_interval_secs = 3600
TOML
RUST_LOG=warn DATABASE_URL= "$mw" serve --config "$work/fleet.toml" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/api/v1"

echo "== registering $count instances"
python3 - "$base" "$ops" "$count" "$work/tokens" <<'PY'
import http.client, json, sys, urllib.parse
base, ops, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
def post(path, body):
    c.request("POST", u.path + path, json.dumps(body), {"Authorization": "Bearer " + ops, "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    assert r.status in (200, 201), (path, r.status, data)
    return json.loads(data)
post("/templates", {"id": "edge", "platform": "bench"})
with open(out, "w") as f:
    for i in range(count):
        t = post("/instances", {"id": f"node-{i:06d}", "template_id": "edge"})["token"]
        f.write(f"node-{i:06d} {t}\n")
PY
state=$(curl -fs -H "Authorization: Bearer $ops" "$base/templates/edge" | python3 -c 'import json,sys; print(json.load(sys.stdin)["template"]["desired_state"]["state_id"])')
export FLEET_TOKENS="$work/tokens" STATE_ID="$state"

echo "== GET desired-state, If-None-Match matching ($count instances, 32 connections)"
MODE=poll wrk -t2 -c32 -d"${secs}s" --latency -s "$here/bench/fleet.lua" "http://127.0.0.1:$port" | tee "$work/poll.wrk"
echo "== POST report (32 connections)"
MODE=report wrk -t2 -c32 -d"${secs}s" --latency -s "$here/bench/fleet.lua" "http://127.0.0.1:$port" | tee "$work/report.wrk"

echo "== drift summary over $count instances (11 runs)"
for _ in $(seq 11); do
  curl -fs -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $ops" "$base/drift?template=edge"
done > "$work/drift.times"
reported=$(sqlite3 "$work/fleet.db" "select count(*) from instances where last_report_at is not null" 2>/dev/null || echo "?")

python3 - "$work" "$reported" <<'PY'
import re, sys, os, statistics
work, reported = sys.argv[1], sys.argv[2]
for name, what in (("poll", "desired-state 304s"), ("report", "durable reports")):
    t = open(os.path.join(work, name + ".wrk")).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    print(f"{what}: {rps:,.0f}/s, p50 {lat.get('50')}, p99 {lat.get('99')}, non-2xx/3xx {non.group(1) if non else 0}")
times = [float(x) for x in open(os.path.join(work, "drift.times"))]
print(f"drift summary: median {statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")
print(f"instances with a durable report: {reported}")
PY
