#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for MINUTES each (fractions allowed: 0.5 = 30 s) and
# prints executions per target. Seeds come from the project's real inputs: the example
# modules' manifests and built module.tar files, the webhook fixtures, Sigstore's trust root.
#   bench/fuzz.sh 10                 # ten minutes per target
#   bench/fuzz.sh 0.5 manifest       # one target, 30 s (what CI runs for each)
# A crash stops with libFuzzer's report; the input is saved under fuzz/artifacts/TARGET/:
# turn it into a regression test before fixing it. Needs a nightly toolchain (rustup's
# `nightly`, else RUSTC_BOOTSTRAP=1 on stable) and cargo-fuzz (installed when missing).
# Built with `--dev` (see fuzz/Cargo.toml) and no sanitizer: the project forbids `unsafe`, so
# what is looked for is panics, overflows (debug assertions are on) and runaway allocation;
# FUZZ_SANITIZER=address adds AddressSanitizer for the dependencies' unsafe code.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
minutes=${1:?usage: bench/fuzz.sh MINUTES [TARGET...]}
shift
secs=$(python3 -c "print(max(1, int(float('$minutes') * 60)))")
all=(manifest artifact hook_distribution hook_gitea hook_harbor comment trusted_root rekor_bundle desired_state)
targets=("${@:-${all[@]}}")
[ $# -gt 0 ] || targets=("${all[@]}")

fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $fuzz_version" ]; then
  echo "bench/fuzz.sh: installing cargo-fuzz $fuzz_version (about a minute)" >&2
  quick_install cargo-fuzz "$fuzz_version" >&2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  # No nightly here: stable's compiler, allowed nightly flags (libFuzzer's -Zsanitizer).
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# Seed corpora (fuzz/corpus is not committed: it grows as the fuzzer learns).
corpus=fuzz/corpus
mkdir -p "$corpus"
seed() { mkdir -p "$corpus/$1"; }
seed manifest
for m in templates/example-modules/*/manifest.yaml; do cp "$m" "$corpus/manifest/$(basename "$(dirname "$m")").yaml"; done
seed artifact
if [ ! -s "$corpus/artifact/my-redis.tar" ]; then
  # The suite's build (cargo test --workspace) already made it; `cargo build -p module-builder`
  # alone would resolve features differently and rebuild half the tree.
  [ -x target/debug/module-builder ] || cargo build --locked -q -p module-builder
  for m in my-redis chrony; do
    t=$(mktemp -d)
    target/debug/module-builder build "templates/example-modules/$m" -o "$t" >/dev/null
    cp "$t/module.tar" "$corpus/artifact/$m.tar"
    rm -rf "$t"
  done
fi
seed hook_distribution
cp webhook/tests/data/*.envelope.json "$corpus/hook_distribution/"
seed hook_harbor
for f in webhook/tests/data/push-artifact*.json; do
  { printf '\x00'; cat "$f"; } > "$corpus/hook_harbor/json-$(basename "$f")"
  { printf '\x01'; cat "$f"; } > "$corpus/hook_harbor/ce-$(basename "$f")"
done
seed hook_gitea
for f in package-created-container issue-comment-created-on-pull-request pull-request-review-approved pull-request-review-rejected status-success; do
  for pick in 0 1 2 3 4 5 6 7; do
    { printf "\\x$(printf %02x $pick)"; cat "webhook/tests/data/$f.json"; } > "$corpus/hook_gitea/$f-$pick"
  done
done
for t in comment trusted_root rekor_bundle desired_state; do
  seed "$t"
  cp fuzz/seeds/$t/* "$corpus/$t/"
done

printf '%-20s %12s %10s %s\n' target executions per_sec result
status=0
for t in "${targets[@]}"; do
  log=$(mktemp)
  if "${fuzz[@]}" run --dev -s "${FUZZ_SANITIZER:-none}" --fuzz-dir fuzz "$t" "$corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -max_len=1048576 -rss_limit_mb=2048 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$t/)"
    status=1
    tail -40 "$log" >&2
  fi
  execs=$(awk -F: '/stat::number_of_executed_units/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
  rate=$(awk -F: '/stat::average_exec_per_sec/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
  if [ -z "$execs" ]; then
    tail -40 "$log" >&2
    result="did not run (build failed?)"
    status=1
  fi
  printf '%-20s %12s %10s %s\n' "$t" "${execs:-0}" "${rate:-0}" "$result"
  rm -f "$log"
done
exit $status
