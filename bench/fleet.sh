#!/usr/bin/env bash
# Benchmarks of the fleet side, on a real fleet (the machine is 2 cores):
# 0. compose 50 modules x 2,000 files: desired state + merged composefs digest
#    (core/examples/compose_bench.rs; FLEET_COMPOSE=0 skips it);
# then, on SQLite (one receiver) and on PostgreSQL (two replicas on one database), each
# seeded through the API with the same fleet (bench/fleet_seed.py): MODULES modules
# (default 100) released for real with `module-builder release` into a local docker-registry
# (signed, ingested by the receivers from the registry, promoted to live through the API);
# TEMPLATES templates (default 200) of PER_TEMPLATE modules (default 20) drawn from them;
# INSTANCES instances (default 10,000) each reporting its template's served state: every
# module's composefs digest, the merged digest, the pinned packages at the versions dpkg has
# installed here and the modules' units (every 20th instance a failed unit, every 20th a
# package at another version):
# 1. GET desired-state with a matching If-None-Match, wrk with 32 connections (16 per replica;
#    FLEET_CONNECTIONS), as fast as wrk sends and at a steady rate (FLEET_POLL_PACE_MS=2
#    between a connection's requests: about 13,000/s)
#    (target >= 10,000 responses/s, p99 <= 10 ms);
# 2. instance reports, each durable before its answer (target >= 3,000/s);
# 3. the fleet drift summary over every instance (GET /api/v1/drift; target <= 100 ms);
# 4. one promotion to live of a module 10 templates use, through the API (on the first
#    replica), until every node of those templates polling (on the second replica) has been
#    served the new state (target <= 2 s).
# Each figure is taken RUNS times (default 3; drift 11 times); the summary prints the median
# with min and max.
#
#   bench/fleet.sh [SECONDS] [INSTANCES] [TEMPLATES] [RUNS]   (defaults 10 s, 10000, 200, 3)
#   env: MODULES=100 PER_TEMPLATE=20 FILES=50 (files per module) FLEET_COMPOSE=1 FLEET_BUILD=1
#        FLEET_CONNECTIONS=32 (wrk's, split between the receivers) FLEET_RUST_LOG=warn (the receivers' RUST_LOG) FLEET_LOGS=DIR (their logs kept there)
#        FLEET_BACKENDS="sqlite postgres" (also: sqlite-normal, SQLite with
#        ?synchronous=NORMAL) DATABASE_URL (a PostgreSQL server; default the local
#        one at 127.0.0.1:5432, skipped when it does not answer)
# Needs wrk, curl, openssl, python3, docker-registry (apt-get install -y wrk docker-registry).
set -euo pipefail
secs=${1:-10}
count=${2:-10000}
templates=${3:-200}
runs=${4:-3}
modules=${MODULES:-100}
per_template=${PER_TEMPLATE:-20}
files=${FILES:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
for tool in wrk curl openssl python3 docker-registry; do
  command -v $tool >/dev/null || { echo "bench/fleet.sh needs $tool: apt-get install -y $tool" >&2; exit 1; }
done

if [ "${FLEET_COMPOSE:-1}" != 0 ]; then
  echo "== compose 50 x 2,000 files"
  cargo run --release -q -p powernode-module --example compose_bench --manifest-path "$here/Cargo.toml"
fi

# FLEET_BUILD=0: use the release binaries already built (a commit alone rebuilds both: their
# build script names the commit).
if [ "${FLEET_BUILD:-1}" != 0 ]; then
  cargo build --release -q -p module-webhook -p module-builder --manifest-path "$here/Cargo.toml"
fi
mw="$here/target/release/module-webhook"
export MODULE_BUILDER="$here/target/release/module-builder"
seed="$here/bench/fleet_seed.py"
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-fleet.XXXXXX")
pids=""   # receivers
regpid=""
pg=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
dbname=""
cleanup() {
  set +e
  [ -n "$pids$regpid" ] && { kill $pids $regpid; wait $pids $regpid; } 2>/dev/null
  [ -n "$dbname" ] && psql "$pg" -qc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1
  [ -n "${FLEET_LOGS:-}" ] && mkdir -p "$FLEET_LOGS" && cp "$work"/*.log "$FLEET_LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The figures of the runs in $work: median (min–max) per figure, against its target.
cat > "$work/summary.py" <<'PY'
import glob, json, os, re, statistics, sys
work, runs, only = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
def wrk(prefix):
    rps, p99, non = 0.0, 0.0, 0
    for p in sorted(glob.glob(prefix + ".*")):
        t = open(p).read()
        rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
        p99 = max(p99, ms(dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))["99"]))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        non += int(m.group(1)) if m else 0
    return rps, p99, non
def fig(xs, fmt):
    return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"
def verdict(ok):
    return "met" if ok else "MISSED"
for label, name in (("sqlite", "SQLite (synchronous=FULL, the default), one receiver"),
                    ("sqlite-normal", "SQLite (synchronous=NORMAL), one receiver"),
                    ("postgres2", "PostgreSQL, two replicas on one database")):
    if not os.path.exists(os.path.join(work, f"{label}-promote-{runs}")) or (only and label not in only):
        continue
    print(f"== {name}: median (min–max) of {runs} runs")
    for what, target in (("poll", 10_000), ("pollpaced", 10_000), ("report", 3_000)):
        rs = [wrk(os.path.join(work, f"{label}-{what}-{r}")) for r in range(1, runs + 1)]
        rps, p99 = [x[0] for x in rs], [x[1] for x in rs]
        non = sum(x[2] for x in rs)
        if what.startswith("poll"):
            if not os.path.exists(os.path.join(work, f"{label}-{what}-1.1")):
                continue
            ok = statistics.median(rps) >= target and statistics.median(p99) <= 10
            how = "as fast as wrk sends" if what == "poll" else "at a steady rate"
            print(f"  If-None-Match polls, {how}: {fig(rps, lambda v: f'{v:,.0f}/s')}, p99 {fig(p99, lambda v: f'{v:.2f} ms')}"
                  f" (target >= 10,000/s, p99 <= 10 ms: {verdict(ok)}); non-2xx/3xx {non}")
        else:
            ok = statistics.median(rps) >= target
            print(f"  reports: {fig(rps, lambda v: f'{v:,.0f}/s')}, p99 {fig(p99, lambda v: f'{v:.2f} ms')}"
                  f" (target >= 3,000/s: {verdict(ok)}); non-2xx {non}")
    d = [float(x) * 1000 for x in open(os.path.join(work, f"{label}-drift"))]
    counts = json.load(open(os.path.join(work, f"{label}-drift.json")))["counts"]
    print(f"  drift summary: {fig(d, lambda v: f'{v:.1f} ms')} of {len(d)} requests"
          f" (target <= 100 ms: {verdict(statistics.median(d) <= 100)}); counts {json.dumps(counts)}")
    p = [json.loads(open(os.path.join(work, f"{label}-promote-{r}")).read()) for r in range(1, runs + 1)]
    alls = [x["all_ms"] for x in p]
    print(f"  promotion → every node of {p[0]['templates']} templates ({p[0]['nodes']} nodes) served the new state:"
          f" {fig(alls, lambda v: f'{v:.0f} ms')} (target <= 2,000 ms: {verdict(statistics.median(alls) <= 2000)});"
          f" API answered in {fig([x['api_ms'] for x in p], lambda v: f'{v:.0f} ms')},"
          f" first node {fig([x['first_ms'] for x in p], lambda v: f'{v:.0f} ms')};"
          f" the {p[0]['templates']} new states committed at {'; '.join(str(x['states_committed_ms'][0]) + '…' + str(x['states_committed_ms'][-1]) for x in p)} ms;"
          f" a poll sweep of every node took {fig([x['sweep_ms'] for x in p], lambda v: f'{v:.0f} ms')}")
PY
summary() { python3 "$work/summary.py" "$work" "$runs" "$@"; }

# A real registry (Debian's docker-registry, CNCF Distribution) with its own storage.
rport=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$rport
YAML
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
regpid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$rport/v2/" >/dev/null && break; sleep 0.1; done

echo "== releasing $modules modules ($files files, a unit and two packages each) into the registry"
python3 "$seed" release "$work" "127.0.0.1:$rport" "$modules" "$files"

# One signing key for every receiver: replicas must share it.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/receiver-key.pem" 2>/dev/null
chmod 600 "$work/receiver-key.pem"
ops="bench-operator-token-0123456789"

# start NAME DB: a receiver on a free port, its URL in $url and its PID appended to $pids.
# It finds the releases by listing the registry on start (the reconciler).
start() {
  local name=$1 db=$2
  local port=$(free_port)
  cat > "$work/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "$db"
data_dir = "$work/data-$name"
[registry]
url = "http://127.0.0.1:$rport"
repositories = ["acme/*"]
[hooks]
gitea_secrets = ["fixture-webhook-secret"]
[[api.tokens]]
name = "bench"
token = "$ops"
role = "operator"
[ingest]
reconcile_interval_secs = 3600
[fleet]
signing_key = "$work/receiver-key.pem"
# The per-instance report budget still runs on every report; its default (20 a minute)
# would refuse instances that report every few seconds, as they do here.
max_reports = 100000
# Operator promotions through the API take effect at once (no approval by a reviewer).
[promotion.live]
min_approvals = 0
TOML
  cat "$work/modules.toml" >> "$work/$name.toml"
  RUST_LOG=${FLEET_RUST_LOG:-warn} DATABASE_URL= "$mw" serve --config "$work/$name.toml" 2>"$work/$name.log" &
  pids="$pids $!"
  url="http://127.0.0.1:$port"
  for _ in $(seq 300); do curl -fs "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "receiver $name did not come up:" >&2; cat "$work/$name.log" >&2; exit 1
}

# wrk_all MODE OUT URL...: wrk against every URL at once, $conns connections split between
# them.
conns=${FLEET_CONNECTIONS:-32}
# The paced poll run: each connection waits this long between requests, so the receivers see
# a steady load (32 connections, 2 ms: about 13,000/s) instead of as much as wrk can send;
# its p99 is the poll latency at the target's rate rather than at saturation.
pace_ms=${FLEET_POLL_PACE_MS:-2}
wrk_all() {
  local mode=$1 out=$2; shift 2
  local n=$# k=0 w=""
  for u in "$@"; do
    k=$((k + 1))
    MODE=$mode wrk -t$((3 - n)) -c$((conns / n)) -d"${secs}s" --latency -s "$here/bench/fleet.lua" "$u" > "$out.$k" &
    w="$w $!"
  done
  wait $w
}

# measure LABEL URL...: seed through the first receiver, then every figure.
measure() {
  local label=$1; shift
  echo "== $label: seeding $templates templates x $per_template modules, $count instances"
  python3 "$seed" seed "$work" "$1" "$templates" "$per_template" "$count"
  export FLEET_TOKENS="$work/tokens" FLEET_BODIES="$work/bodies"
  for r in $(seq "$runs"); do
    echo "== $label: If-None-Match polls, run $r"
    wrk_all poll "$work/$label-poll-$r" "$@"
    cat "$work/$label-poll-$r".*
    echo "== $label: If-None-Match polls at a steady rate (each connection waits ${pace_ms} ms between requests), run $r"
    FLEET_DELAY_MS=$pace_ms wrk_all poll "$work/$label-pollpaced-$r" "$@"
    cat "$work/$label-pollpaced-$r".*
    echo "== $label: reports, run $r"
    wrk_all report "$work/$label-report-$r" "$@"
    cat "$work/$label-report-$r".*
  done
  echo "== $label: drift summary over the fleet (11 requests)"
  for _ in $(seq 11); do
    curl -fs -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $ops" "$1/api/v1/drift"
  done > "$work/$label-drift"
  echo "seconds:" $(cat "$work/$label-drift")
  curl -fs -H "Authorization: Bearer $ops" "$1/api/v1/drift?limit=3" > "$work/$label-drift.json"
  local last=${*: -1}
  for r in $(seq "$runs"); do
    echo "== $label: promotion to live on $1, polled on $last, run $r"
    python3 "$seed" promote "$work" "$1" "$last" "1.0.$r" | tee "$work/$label-promote-$r"
  done
}

stop_receivers() {
  kill $pids 2>/dev/null; wait $pids 2>/dev/null || true
  pids=""
}

for backend in ${FLEET_BACKENDS:-sqlite postgres}; do
  case $backend in
    sqlite)
      start sqlite "sqlite://$work/fleet.db"
      measure sqlite "$url"
      stop_receivers
      summary sqlite
      ;;
    sqlite-normal)
      start sqlite-normal "sqlite://$work/fleet-normal.db?synchronous=normal"
      measure sqlite-normal "$url"
      stop_receivers
      summary sqlite-normal
      ;;
    postgres)
      if ! python3 -c 'import socket; socket.create_connection(("127.0.0.1",5432),1)' 2>/dev/null \
        && [ -z "${DATABASE_URL:-}" ]; then
        echo "== no PostgreSQL at 127.0.0.1:5432: skipped"; continue
      fi
      dbname="mw_fleet_$$"
      psql "$pg" -qc "CREATE DATABASE $dbname" >/dev/null
      start pg-a "${pg%/*}/$dbname"; a=$url
      start pg-b "${pg%/*}/$dbname"; b=$url
      measure postgres2 "$a" "$b"
      stop_receivers
      summary postgres2
      psql "$pg" -qc "DROP DATABASE $dbname WITH (FORCE)" >/dev/null; dbname=""
      ;;
  esac
done

echo "== summary"
summary
