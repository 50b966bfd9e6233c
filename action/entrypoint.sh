#!/bin/sh
# Entry point of the module-builder Actions step: turns the step's inputs (MB_* variables,
# set by action.yml) into a `module-builder release` command line. Secrets travel in the
# environment or a private temporary file, never on the command line.
set -eu

: "${MB_REGISTRY:?the registry input is required}"
: "${MB_REPOSITORY:?the repository input is required}"

set -- release "${MB_PATH:-.}" --ref "${MB_REGISTRY%/}/${MB_REPOSITORY#/}"
if [ -n "${MB_VERSION:-}" ]; then set -- "$@" --version "$MB_VERSION"; fi
if [ "${MB_INSECURE:-false}" = "true" ]; then set -- "$@" --insecure; fi
if [ -n "${MB_FULCIO_URL:-}" ]; then set -- "$@" --fulcio-url "$MB_FULCIO_URL"; fi
if [ -n "${MB_REKOR_URL:-}" ]; then set -- "$@" --rekor-url "$MB_REKOR_URL"; fi

# A runner checks the workspace out as its own user, and the image runs as uid 10001: when the
# module directory cannot be written, build into a private temporary directory instead of
# DIR/dist (the artifact is pushed from there; the workspace is only read).
outdir=""
if [ ! -w "${MB_PATH:-.}" ]; then
  outdir=$(mktemp -d)
  set -- "$@" --output "$outdir"
fi

if [ -n "${MB_USERNAME:-}" ]; then export REGISTRY_USERNAME="$MB_USERNAME"; fi
if [ -n "${MB_PASSWORD:-}" ]; then export REGISTRY_PASSWORD="$MB_PASSWORD"; fi

keyfile=""
cleanup() {
  if [ -n "$keyfile" ]; then rm -f "$keyfile"; fi
  if [ -n "$outdir" ]; then rm -rf "$outdir"; fi
}
trap cleanup EXIT
if [ -n "${MB_COSIGN_KEY:-}" ]; then
  case "$MB_COSIGN_KEY" in
    -----BEGIN*)
      keyfile=$(mktemp)
      chmod 600 "$keyfile"
      printf '%s\n' "$MB_COSIGN_KEY" > "$keyfile"
      set -- "$@" --key "$keyfile"
      ;;
    *) set -- "$@" --key "$MB_COSIGN_KEY" ;;
  esac
  export COSIGN_PASSWORD="${MB_COSIGN_PASSWORD:-}"
fi

module-builder "$@"
