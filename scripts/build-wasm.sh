#!/usr/bin/env bash
# Builds the filter for wasm32-wasip1 and leaves it at target/aurelis_filter.wasm.
# The route (rustup target, or Debian's rustc-web with -Zbuild-std) is picked by bootstrap.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
route="${AURELIS_WASM_TOOLCHAIN:-$(cat target/bootstrap/wasm-toolchain)}"
out="target/aurelis_filter.wasm"
case "$route" in
  rustup)
    CARGO_TARGET_DIR=target/wasm-rustup cargo build -q --profile wasm -p aurelis-filter --target wasm32-wasip1
    built=target/wasm-rustup/wasm32-wasip1/wasm/aurelis_filter.wasm
    ;;
  debian)
    # Debian's cargo must be told to use Debian's rustc, or it picks rustup's and misses rust-src.
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
      CARGO_TARGET_DIR=target/wasm-debian \
      /usr/bin/cargo build -q --profile wasm -p aurelis-filter --target wasm32-wasip1 \
      -Zbuild-std=std,panic_abort
    built=target/wasm-debian/wasm32-wasip1/wasm/aurelis_filter.wasm
    ;;
  *) echo "unknown wasm toolchain route: $route" >&2; exit 1 ;;
esac
# Copy only when changed so the module's mtime tracks its content.
cmp -s "$built" "$out" 2>/dev/null || cp "$built" "$out"
echo "wasm module: $out ($(stat -c %s "$out") bytes, built via $route)" >&2
