#!/usr/bin/env bash
# Benchmark: module-agent applying a template of 10 modules x 1,000 files.
#  - warm apply: one module has a new version; only its changed objects are fetched
#    (target <= 1 s; median of 3 new versions);
#  - unchanged apply: the desired state is what runs — one conditional request
#    (target <= 10 ms; hyperfine median of the whole `module-agent apply --once` process).
# Real docker-registry, module-webhook and module-builder release, all on loopback.
#
#   bench/agent.sh        (needs docker-registry, hyperfine, curl)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
for c in docker-registry hyperfine curl; do
  command -v $c >/dev/null || { echo "bench/agent.sh needs $c: apt-get install -y $c" >&2; exit 1; }
done
cargo build --release -q -p module-builder -p module-webhook -p module-agent --manifest-path "$here/Cargo.toml"
bin="$here/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-bench.XXXXXX")
pids=()
# The agent mounts each generation's composefs image (as on a node): unmounted before the
# work directory goes.
unmount_generations() { awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; }
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; unmount_generations; rm -rf "$work"' EXIT
rport=$(free_port); wport=$(free_port)
ops="bench-operator-token-0123456789"
COSIGN_PASSWORD=bench "$bin/module-builder" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null

cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$rport}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)

{
  cat <<TOML
listen = "127.0.0.1:$wport"
database_url = "sqlite://$work/receiver.db"
data_dir = "$work/data"
[registry]
url = "http://127.0.0.1:$rport"
repositories = ["bench/*"]
[hooks]
gitea_secrets = ["fixture-webhook-secret"]
[[api.tokens]]
name = "bench"
token = "$ops"
role = "operator"
[ingest]
reconcile_interval_secs = 1
[promotion.live]
min_approvals = 0
TOML
  for i in $(seq 0 9); do
    printf '[[modules]]\nname = "bench-m%d"\nrepository = "bench/m%d"\nkeys = ["%s"]\n' "$i" "$i" "$work/cosign.pub"
  done
} > "$work/receiver.toml"
RUST_LOG=warn "$bin/module-webhook" serve --config "$work/receiver.toml" 2>"$work/receiver.log" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$wport/readyz" >/dev/null && curl -fs "http://127.0.0.1:$rport/v2/" >/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$wport/api/v1"
call() { curl -fsS -H "Authorization: Bearer $ops" -H 'Content-Type: application/json' "$@"; }

python3 - "$work/modules" <<'PY'
import os, random, sys
random.seed(7)
for m in range(10):
    d = os.path.join(sys.argv[1], f"m{m}")
    os.makedirs(os.path.join(d, "rootfs", "srv", f"m{m}"), exist_ok=True)
    open(os.path.join(d, "manifest.yaml"), "w").write(
        f"schema_version: 1\nidentity:\n  name: bench-m{m}\n  category: userland\n  variety: subscription\n"
        f"  description: bench\nfile_spec:\n  include: [\"/srv/m{m}/**\"]\n")
    for i in range(1000):
        sub = os.path.join(d, "rootfs", "srv", f"m{m}", f"d{i // 100}")
        os.makedirs(sub, exist_ok=True)
        open(os.path.join(sub, f"f{i:04d}.conf"), "wb").write(random.randbytes(random.randint(200, 4000)))
PY

release() { # module-index version
  COSIGN_PASSWORD=bench "$bin/module-builder" release "$work/modules/m$1" --ref "127.0.0.1:$rport/bench/m$1" \
    --version "$2" --key "$work/cosign.key" --source-date-epoch 0 >/dev/null
  local id="v-bench-m$1-$2"
  for _ in $(seq 300); do
    call "$api/versions/$id" 2>/dev/null | grep -q '"lifecycle":"draft"' && break
    sleep 0.1
  done
  for to in staging blessed live; do call -X POST -d "{\"to\":\"$to\"}" "$api/versions/$id/promote" >/dev/null; done
}
echo "== releasing 10 modules x 1,000 files"
for i in $(seq 0 9); do release $i 1.0.0; done
call -X POST -d '{"id":"bench","platform":"bench"}' "$api/templates" >/dev/null
for i in $(seq 0 9); do call -X POST -d "{\"module_name\":\"bench-m$i\"}" "$api/templates/bench/assignments" >/dev/null; done
call -X POST -d '{"id":"node-1","template_id":"bench"}' "$api/instances" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' > "$work/token"
curl -fs "$api/signing-key" > "$work/receiver.pub"
agent=("$bin/module-agent" apply --once --receiver "http://127.0.0.1:$wport" --instance node-1
       --token-file "$work/token" --receiver-key "$work/receiver.pub" --state-dir "$work/state" --root "$work/root")

ms() { python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / 1e6:.0f}")' "$1" "$2"; }
t0=$(date +%s%N); RUST_LOG=warn "${agent[@]}" >/dev/null; t1=$(date +%s%N)
echo "cold apply (10 modules, 10,000 files, empty object store): $(ms $t0 $t1) ms"

warm=()
for v in 1.0.1 1.0.2 1.0.3; do
  echo "changed $v" > "$work/modules/m0/rootfs/srv/m0/d0/f0000.conf"
  release 0 $v
  # The recomputation runs as a job right after the promotion: wait until it is served.
  for _ in $(seq 100); do
    state=$(call "$api/templates/bench" | python3 -c 'import json,sys; m=json.load(sys.stdin)["template"]["desired_state"]["document"]["modules"]; print([x["version"] for x in m if x["name"] == "bench-m0"][0])')
    [ "$state" = "$v" ] && break
    sleep 0.1
  done
  [ "$state" = "$v" ] || { echo "the desired state never showed bench-m0 $v" >&2; exit 1; }
  t0=$(date +%s%N); RUST_LOG=warn "${agent[@]}" >/dev/null; t1=$(date +%s%N)
  warm+=($(ms $t0 $t1))
  echo "warm apply (bench-m0 $v): ${warm[-1]} ms"
done
hyperfine --runs 20 --warmup 2 -N --export-json "$work/unchanged.json" "$(printf '%q ' "${agent[@]}")" >/dev/null
python3 - "$work/unchanged.json" "${warm[@]}" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
warm = [float(x) for x in sys.argv[2:]]
print(f"warm apply median: {statistics.median(warm):.0f} ms (target <= 1000)")
print(f"unchanged apply median: {r['median'] * 1000:.1f} ms (min {r['min'] * 1000:.1f}; whole process; target <= 10)")
PY
