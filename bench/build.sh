#!/usr/bin/env bash
# Benchmark: `module-builder build` (tar + sha256 + composefs digest, one command) against
# GNU tar + sha256sum on the same tree: 10,000 small files (1–8 KiB) and one 512 MiB file.
# Reports the ratio of medians (target ≤ 0.35) and module-builder's peak RSS (target ≤ 64 MiB).
#
#   bench/build.sh [RUNS]        (default 10 runs each; needs hyperfine and GNU time)
set -euo pipefail
runs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
command -v hyperfine >/dev/null || { echo "bench/build.sh needs hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/build.sh needs GNU time: apt-get install -y time" >&2; exit 1; }
cargo build --release -q -p module-builder --manifest-path "$here/Cargo.toml"
mb="$here/target/release/module-builder"

work=$(mktemp -d "${TMPDIR:-/tmp}/mb-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mod="$work/module"
mkdir -p "$mod/rootfs/srv/big" "$mod/rootfs/srv/small"
bench_module "$mod"
python3 - "$mod/rootfs/srv/small" <<'PY'
import os, random, sys
random.seed(1)
root = sys.argv[1]
for i in range(10_000):
    d = os.path.join(root, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.conf"), "wb") as f:
        f.write(random.randbytes(random.randint(1024, 8192)))
PY
head -c $((512 << 20)) /dev/urandom > "$mod/rootfs/srv/big/blob.bin"
sync

cd "$work"
# `sync` before each run so neither command pays for the previous run's writeback.
hyperfine --runs "$runs" --warmup 1 --prepare sync --export-json "$work/result.json" \
  -n module-builder "$mb build $mod -o $work/dist --source-date-epoch 0" \
  -n tar+sha256sum "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf $work/out.tar -C $mod rootfs && sha256sum $work/out.tar"

/usr/bin/time -f '%M' -o "$work/rss" "$mb" build "$mod" -o "$work/dist" --source-date-epoch 0 >/dev/null
python3 - "$work/result.json" "$work/rss" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ours, theirs = r["module-builder"]["median"], r["tar+sha256sum"]["median"]
rss_mib = int(open(sys.argv[2]).read().split()[-1]) / 1024
print(f"median module-builder build: {ours:.3f} s")
print(f"median tar + sha256sum:      {theirs:.3f} s")
print(f"ratio (target <= 0.35):      {ours / theirs:.2f}")
print(f"peak RSS module-builder:     {rss_mib:.1f} MiB (target <= 64)")
PY
