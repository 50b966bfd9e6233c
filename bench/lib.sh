# Shared by the bench scripts (source it).

# A free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_module DIR: a module named "bench" shipping everything under rootfs/srv/.
bench_module() {
  mkdir -p "$1/rootfs/srv"
  cat > "$1/manifest.yaml" <<'YAML'
schema_version: 1
identity:
  name: bench
  category: userland
  variety: subscription
  cosign_identity_regexp: '^https://git\.example\.org/acct/modules/bench-module@.*$'
  cosign_issuer_regexp: '^https://gitea\.example\.org$'
file_spec:
  include: ["/srv/**"]
YAML
}
