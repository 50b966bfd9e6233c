#!/usr/bin/env bash
# Disk use of a node's state directory as versions go by: my-redis released and applied
# APPLIES times (default 50) with keep_generations = 1, through a real receiver and registry
# (agent/tests/gc.rs with GC_APPLIES). Prints the state directory's size after each apply;
# without collection it would grow by a generation (tree + image) and the new objects each time.
#
#   bench/gc.sh [APPLIES]     (root; docker-registry)
set -euo pipefail
cd "$(dirname "$0")/.."
GC_APPLIES=${1:-50} cargo test -q -p module-agent --test gc -- --nocapture 2>&1 | grep 'state directory after'
