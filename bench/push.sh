#!/usr/bin/env bash
# Benchmark: push a 512 MiB module artifact to a local docker-registry with
# `module-builder push` and with oras-py (`oras push`), each run to a fresh repository so
# every run uploads the blob. Reports the ratio of medians (target ≤ 0.7) and
# module-builder's peak RSS (target ≤ 64 MiB). Then signs the artifact with a key and times
# `module-builder verify` (signature fetch + checks; target median ≤ 20 ms).
#
#   bench/push.sh [RUNS]        (default 5; needs docker-registry, hyperfine, GNU time, python3)
set -euo pipefail
runs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
for t in docker-registry hyperfine; do
  command -v $t >/dev/null || { echo "bench/push.sh needs $t: apt-get install -y $t" >&2; exit 1; }
done
cargo build --release -q -p module-builder --manifest-path "$here/Cargo.toml"
mb="$here/target/release/module-builder"
py="$here/target/oras-venv/bin/python"
if [ ! -x "$py" ]; then python3 -m venv "$here/target/oras-venv"; "$here/target/oras-venv/bin/pip" install -q oras; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mb-push-bench.XXXXXX")
port=$(free_port)
cat > "$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
trap 'kill $reg_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
host=127.0.0.1:$port

mod="$work/module"
bench_module "$mod"
head -c $((512 << 20)) /dev/urandom > "$mod/rootfs/srv/blob.bin"
"$mb" build "$mod" --version 1.0.0 --source-date-epoch 0 >/dev/null
tar="$mod/dist/module.tar"

cat > "$work/oras_push.py" <<PY
import sys, oras.client
c = oras.client.OrasClient(hostname="$host", insecure=True)
c.push(files=["$tar:application/vnd.powernode.module.v1+tar"], target=sys.argv[1], disable_path_validation=True)
PY

cd "$work"
hyperfine --runs "$runs" --warmup 1 --export-json "$work/push.json" \
  -n module-builder "$mb push $mod --ref $host/bench/mb-\$(date +%s%N):v1" \
  -n oras-py "$py $work/oras_push.py $host/bench/oras-\$(date +%s%N):v1"

/usr/bin/time -f '%M' -o "$work/rss" "$mb" push "$mod" --ref "$host/bench/rss:v1" >/dev/null

# Verification: sign once with a key, then time verify (fetch .sig manifest + payload + checks).
COSIGN_PASSWORD=bench "$mb" generate-key-pair --output-key-prefix "$work/cosign" >/dev/null
ref=$("$mb" push "$mod" --ref "$host/bench/verify:v1")
COSIGN_PASSWORD=bench "$mb" sign "$ref" --key "$work/cosign.key" >/dev/null 2>&1
hyperfine --runs 50 --warmup 5 --export-json "$work/verify.json" -N \
  -n verify "$mb verify $ref --key $work/cosign.pub"
# In-process: the verification itself, without process start-up (what the receiver pays).
cargo run --release -q --manifest-path "$here/Cargo.toml" -p powernode-module --example verify_latency -- \
  "$ref" "$work/cosign.pub" 200

python3 - "$work/push.json" "$work/rss" "$work/verify.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ours, theirs = r["module-builder"]["median"], r["oras-py"]["median"]
rss = int(open(sys.argv[2]).read().split()[-1]) / 1024
v = json.load(open(sys.argv[3]))["results"][0]
print(f"median module-builder push (512 MiB): {ours:.3f} s")
print(f"median oras-py push (512 MiB):        {theirs:.3f} s")
print(f"ratio (target <= 0.7):                {ours / theirs:.2f}")
print(f"peak RSS module-builder push:         {rss:.1f} MiB (target <= 64)")
print(f"median verify (whole command, incl. process start): {v['median'] * 1000:.1f} ms")
PY
