#!/usr/bin/env bash
# Soak: one release build of module-webhook (SQLite) under steady, mixed load for MINUTES
# (default 60), then checks that it held: resident memory and open file descriptors at the
# start and end (and their peaks), every job finished (none queued or running once the load
# stops), every release ingested and promoted to live.
#   - hooks: signed Gitea package deliveries, 4 connections x 1 per 10 ms (~400/s);
#   - fleet: 200 instances polling their desired state and reporting (~100/s each kind);
#   - releases: a new signed version every 20 s through a real docker-registry and its
#     notifications, ingested, then promoted staging → blessed → live by the API (each live
#     promotion recomputes the template's signed desired state).
#   bench/soak.sh [MINUTES]      (needs docker-registry, wrk, curl; not run in CI)
#   BIN_DIR=target/release bench/soak.sh 60
set -euo pipefail
minutes=${1:-60}
secs=$(python3 -c "print(max(30, int(float('$minutes') * 60)))")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
for c in docker-registry wrk curl; do
  command -v $c >/dev/null || { echo "bench/soak.sh needs $c: apt-get install -y $c" >&2; exit 1; }
done
# BIN_DIR=DIR uses binaries built elsewhere (e.g. a release's) instead of building them.
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -q -p module-webhook -p module-builder --manifest-path "$here/Cargo.toml"
  BIN_DIR="$here/target/release"
fi
mb="$BIN_DIR/module-builder"
mw="$BIN_DIR/module-webhook"
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-soak.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rport=$(free_port); wport=$(free_port)
ops="soak-operator-token-0123456789"
COSIGN_PASSWORD=soak "$mb" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null
cat > "$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$rport
notifications:
  endpoints:
    - name: receiver
      url: http://127.0.0.1:$wport/hooks/distribution
      headers:
        Authorization: [Bearer soak-distribution-token]
      timeout: 5s
      threshold: 3
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
YAML
cat > "$work/webhook.toml" <<TOML
listen = "127.0.0.1:$wport"
database_url = "sqlite://$work/webhook.db"
data_dir = "$work/data"
[registry]
url = "http://127.0.0.1:$rport"
repositories = ["bench/*", "acme/*"]
[hooks]
distribution_token = "soak-distribution-token"
gitea_secrets = ["fixture-webhook-secret"]
[[api.tokens]]
name = "soak"
token = "$ops"
role = "operator"
[[modules]]
name = "bench"
repository = "bench/bench-module"
keys = ["$work/cosign.pub"]
# Going live needs an approval by default; the soak has no Gitea to give one.
[promotion.live]
min_approvals = 0
[ingest]
workers = 2
max_attempts = 3
backoff_base_ms = 200
backoff_cap_ms = 2000
reconcile_interval_secs = 60
TOML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)
RUST_LOG=warn DATABASE_URL= "$mw" serve --config "$work/webhook.toml" 2>"$work/webhook.log" & mwpid=$!; pids+=($mwpid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$rport/v2/" >/dev/null && curl -fs "http://127.0.0.1:$wport/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$wport/api/v1"
api() { curl -fsS -H "Authorization: Bearer $ops" -H 'Content-Type: application/json' "$@"; }

mod="$work/module"
bench_module "$mod"
echo "soak release" > "$mod/rootfs/srv/release.txt"
# release N: builds, pushes and signs bench 1.0.N, waits for its draft, takes it live.
release() {
  local v="1.0.$1"
  echo "$v" > "$mod/rootfs/srv/release.txt"
  COSIGN_PASSWORD=soak "$mb" release "$mod" --ref "127.0.0.1:$rport/bench/bench-module" --version "$v" --key "$work/cosign.key" >/dev/null 2>>"$work/releases.log"
  for _ in $(seq 600); do
    api "$base/versions/v-bench-$v" 2>/dev/null | grep -q '"lifecycle":"draft"' && break
    sleep 0.1
  done
  for to in staging blessed live; do
    api -d "{\"to\":\"$to\"}" "$base/versions/v-bench-$v/promote" >/dev/null
  done
}
release 0
api -d '{"id":"edge","platform":"bench"}' "$base/templates" >/dev/null
api -d '{"module_name":"bench"}' "$base/templates/edge/assignments" >/dev/null
python3 - "$base" "$ops" 200 "$work/tokens" <<'PY'
import http.client, json, sys, urllib.parse
base, ops, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
with open(out, "w") as f:
    for i in range(count):
        c.request("POST", u.path + "/instances", json.dumps({"id": f"node-{i:04d}", "template_id": "edge"}),
                  {"Authorization": "Bearer " + ops, "Content-Type": "application/json"})
        r = c.getresponse(); body = json.loads(r.read()); assert r.status == 201, body
        f.write(f"node-{i:04d} {body['token']}\n")
PY
state=$(api "$base/templates/edge" | python3 -c 'import json,sys; print(json.load(sys.stdin)["template"]["desired_state"]["state_id"])')

sample() {  # prints: seconds rss_kib fds
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$mwpid/status)
  fds=$(ls /proc/$mwpid/fd | wc -l)
  echo "$1 $rss $fds"
}
echo "== soak: $minutes min (module-webhook pid $mwpid)"
sample 0 | tee "$work/samples"

export HOOK_BODY="$here/webhook/tests/data/package-created-container.json"
export HOOK_SIGNATURE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["X-Gitea-Signature"])' "$here/webhook/tests/data/package-created-container.headers.json")
HOOK_DELAY_MS=10 wrk -t1 -c4 -d"${secs}s" -s "$here/bench/hooks.lua" "http://127.0.0.1:$wport" > "$work/hooks.wrk" 2>&1 & pids+=($!); w1=$!
FLEET_TOKENS="$work/tokens" STATE_ID="$state" MODE=poll FLEET_DELAY_MS=20 wrk -t1 -c2 -d"${secs}s" -s "$here/bench/fleet.lua" "http://127.0.0.1:$wport" > "$work/poll.wrk" 2>&1 & pids+=($!); w2=$!
FLEET_TOKENS="$work/tokens" STATE_ID="$state" MODE=report FLEET_DELAY_MS=20 wrk -t1 -c2 -d"${secs}s" -s "$here/bench/fleet.lua" "http://127.0.0.1:$wport" > "$work/report.wrk" 2>&1 & pids+=($!); w3=$!

start=$(date +%s); n=1; next_sample=60
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
  release $n; n=$((n + 1))
  el=$(( $(date +%s) - start ))
  if [ "$el" -ge "$next_sample" ]; then sample "$el" >> "$work/samples"; next_sample=$((next_sample + 60)); fi
  sleep 20
done
wait $w1 $w2 $w3 || true
sleep 10  # let the last jobs finish
sample "$(( $(date +%s) - start ))" >> "$work/samples"

echo "== samples (seconds, RSS KiB, open fds)"
cat "$work/samples"
python3 - "$work" "$n" <<'PY'
import os, re, sqlite3, sys
work, releases = sys.argv[1], int(sys.argv[2])
s = [tuple(map(int, l.split())) for l in open(os.path.join(work, "samples"))]
db = sqlite3.connect(os.path.join(work, "webhook.db"))
jobs = dict(db.execute("select state, count(*) from jobs group by state").fetchall())
live = db.execute("select count(*) from versions where module = 'bench' and lifecycle in ('live', 'blessed', 'staging', 'yanked', 'deprecated')").fetchone()[0]
drafts = db.execute("select count(*) from versions where module = 'bench' and lifecycle = 'draft'").fetchone()[0]
deliveries = db.execute("select count(*) from deliveries").fetchone()[0]
def rate(f):
    t = open(os.path.join(work, f)).read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", t); e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return (float(m.group(1)) if m else 0.0, int(e.group(1)) if e else 0)
(h, he), (p, pe), (r, re_) = rate("hooks.wrk"), rate("poll.wrk"), rate("report.wrk")
print(f"duration {s[-1][0]} s; load: hooks {h:.0f}/s, polls {p:.0f}/s, reports {r:.0f}/s (non-2xx/3xx: {he}, {pe}, {re_})")
print(f"RSS: start {s[0][1]/1024:.1f} MiB, end {s[-1][1]/1024:.1f} MiB, peak {max(x[1] for x in s)/1024:.1f} MiB")
print(f"open fds: start {s[0][2]}, end {s[-1][2]}, peak {max(x[2] for x in s)}")
print(f"releases {releases}: promoted {live}, left in draft {drafts}; deliveries recorded {deliveries}")
print(f"jobs by state at the end: {jobs}")
stuck = jobs.get("queued", 0) + jobs.get("running", 0)
bad = stuck > 0 or drafts > 0 or live != releases
print("soak: " + ("FAILED (" + (f"{stuck} jobs stuck" if stuck else "releases not promoted") + ")" if bad else "ok"))
sys.exit(1 if bad else 0)
PY
