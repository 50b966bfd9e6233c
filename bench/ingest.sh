#!/usr/bin/env bash
# Benchmark: ingest latency of a 100 MiB module, from the registry's notification that makes
# it ingestible (the signature push, after the unsigned artifact is pending) to the committed
# `draft` version (download, verification, composefs digest, commit), with a real
# docker-registry notifying a release build of module-webhook (SQLite). Target median ≤ 1 s.
#
#   bench/ingest.sh [RUNS]     (default 5; needs docker-registry)
set -euo pipefail
runs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
cargo build --release -q -p module-webhook -p module-builder --manifest-path "$here/Cargo.toml"
mb="$here/target/release/module-builder"
mw="$here/target/release/module-webhook"
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-ingest.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT
rport=$(free_port); wport=$(free_port)
COSIGN_PASSWORD=bench "$mb" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null
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
        Authorization: [Bearer bench-token]
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
repositories = ["bench/*"]
[hooks]
distribution_token = "bench-token"
[[modules]]
name = "bench"
repository = "bench/bench-module"
keys = ["$work/cosign.pub"]
[ingest]
workers = 2
max_attempts = 5
backoff_base_ms = 200
backoff_cap_ms = 2000
signature_timeout_secs = 3600
reconcile_interval_secs = 3600
lease_secs = 120
max_artifact_bytes = 1073741824
TOML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)
RUST_LOG=warn DATABASE_URL= "$mw" serve --config "$work/webhook.toml" 2>"$work/webhook.log" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$rport/v2/" >/dev/null && curl -fs "http://127.0.0.1:$wport/readyz" >/dev/null && break; sleep 0.1; done

mod="$work/module"
bench_module "$mod"
python3 - "$work/webhook.db" "$mb" "$mod" "127.0.0.1:$rport/bench/bench-module" "$runs" <<'PY'
import os, sqlite3, statistics, subprocess, sys, time
db, mb, mod, repo, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def q(sql, *a):
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute(sql, a).fetchall()
    finally:
        c.close()
lat = []
for i in range(1, runs + 1):
    with open(os.path.join(mod, "rootfs/srv/blob.bin"), "wb") as f:
        f.write(os.urandom(100 << 20))
    env = dict(os.environ, COSIGN_PASSWORD="bench")
    run = lambda *a: subprocess.run([mb, *a], check=True, env=env, capture_output=True, text=True).stdout
    run("build", mod, "--version", f"1.0.{i}")
    ref = run("push", mod, "--ref", repo).strip()
    # Unsigned: the artifact's notification leaves it pending_signature.
    deadline = time.time() + 60
    while not q("select 1 from versions where version = ? and lifecycle = 'pending_signature'", f"1.0.{i}"):
        if time.time() > deadline:
            sys.exit(f"1.0.{i} never became pending_signature")
        time.sleep(0.01)
    run("sign", ref, "--key", os.path.join(os.path.dirname(db), "cosign.key"))
    deadline = time.time() + 60
    while True:
        row = q("select lifecycle, updated_at from versions where version = ?", f"1.0.{i}")
        if row and row[0][0] == "draft":
            break
        if time.time() > deadline:
            sys.exit(f"1.0.{i} not ingested: {row}")
        time.sleep(0.01)
    # When the signature notification was recorded: its job is created in the same
    # transaction as the delivery.
    sig_at = q("select max(created_at) from jobs where kind = 'signature'")[0][0]
    if os.environ.get("BENCH_DEBUG"):
        print(q("select kind, payload, state, created_at, updated_at from jobs order by created_at"), row, sig_at)
    lat.append((row[0][1] - sig_at) / 1000)
    print(f"1.0.{i}: {lat[-1]*1000:.0f} ms from the signature notification to draft")
print(f"median ingest latency, 100 MiB artifact: {statistics.median(lat)*1000:.0f} ms (target <= 1000)")
PY
