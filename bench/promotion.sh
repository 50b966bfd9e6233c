#!/usr/bin/env bash
# Measure: time from an approving-review webhook to the committed transition (blessed → live,
# one approval required) with the real router, worker and Gitea client against the fake Gitea
# on loopback, and the number of Gitea API calls one promotion costs.
#
#   bench/promotion.sh [N]     (default 50 promotions)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cargo run --release -q --manifest-path "$here/Cargo.toml" -p module-webhook --example promotion_latency -- "${1:-50}"
