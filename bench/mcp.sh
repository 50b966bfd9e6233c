#!/usr/bin/env bash
# Measure: the latency of the MCP tool system_list_module_versions, called by the official
# Python MCP SDK over streamable HTTP, and of the same question over REST, against a release
# build of the receiver (SQLite, one module with 20 versions).
#
#   bench/mcp.sh [CALLS]     (default 500)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/target/mcp-venv/bin/python"
if [ ! -x "$py" ]; then
  python3 -m venv "$here/target/mcp-venv"
  "$here/target/mcp-venv/bin/pip" install -q "mcp==2.3.*"
fi
cargo build --release -q --manifest-path "$here/Cargo.toml" -p module-webhook --example mcp_server
out=$(mktemp)
"$here/target/release/examples/mcp_server" 20 >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do
  url=$(sed -n 's/^listening //p' "$out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "bench/mcp.sh: the receiver did not start" >&2; exit 1; }
"$py" "$here/bench/mcp_latency.py" "$url" "${1:-500}"
