# Shared by the bench scripts and scripts/test (source it).

# quick_install CRATE VERSION: a cargo tool installed into ~/.cargo/bin at opt-level 1, without
# LTO and debug info. It builds in a fraction of the release profile's time (cargo-deny
# 0.20.2: 1 min 55 s on two cores), and these tools are not where the time goes.
quick_install() {
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    cargo install --locked --version "$2" "$1"
}

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
