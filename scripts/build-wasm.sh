#!/usr/bin/env bash
# Builds a proxy-wasm crate for wasm32-wasip1; by default the filter, left at target/aurelis_filter.wasm.
# The route (rustup target, or Debian's rustc-web with -Zbuild-std) is picked by bootstrap.sh.
#
#   scripts/build-wasm.sh                                   # the filter -> target/aurelis_filter.wasm
#   scripts/build-wasm.sh --features count-host-calls --out target/aurelis_filter_counting.wasm
#   scripts/build-wasm.sh --package aurelis-null-filter --out target/aurelis_null_filter.wasm
#   scripts/build-wasm.sh --clippy                          # clippy -D warnings on the wasm target (make lint)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
package=aurelis-filter
features=""
out=""
clippy=0
while [ $# -gt 0 ]; do
  case "$1" in
    --package) package="$2"; shift 2 ;;
    --features) features="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --clippy) clippy=1; shift ;;
    *) echo "usage: $0 [--package CRATE] [--features LIST] [--out FILE.wasm] [--clippy]" >&2; exit 2 ;;
  esac
done
lib="${package//-/_}"
out="${out:-target/$lib.wasm}"
feature_args=()
[ -n "$features" ] && feature_args=(--features "$features")
bash scripts/bootstrap.sh
route="${AURELIS_WASM_TOOLCHAIN:-$(cat target/bootstrap/wasm-toolchain)}"
if [ "$clippy" = 1 ]; then
  # Lints what only the wasm32 build compiles (cfg(target_arch = "wasm32") code in the filter).
  case "$route" in
    rustup)
      CARGO_TARGET_DIR=target/wasm-rustup cargo clippy -q -p "$package" "${feature_args[@]}" \
        --target wasm32-wasip1 -- -D warnings
      echo "clippy: $package on wasm32-wasip1 clean" >&2
      ;;
    *)
      # Debian's rustc-web ships no clippy, and rustup's clippy cannot build std for wasm32
      # without the target: the host clippy run of `make lint` covers the crate's shared code.
      echo "clippy: no clippy for the $route wasm route; $package is linted on the host target only" >&2
      ;;
  esac
  exit 0
fi
case "$route" in
  rustup)
    CARGO_TARGET_DIR=target/wasm-rustup cargo build -q --profile wasm -p "$package" "${feature_args[@]}" \
      --target wasm32-wasip1
    built="target/wasm-rustup/wasm32-wasip1/wasm/$lib.wasm"
    ;;
  debian)
    # Debian's cargo must be told to use Debian's rustc, or it picks rustup's and misses rust-src.
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
      CARGO_TARGET_DIR=target/wasm-debian \
      /usr/bin/cargo build -q --profile wasm -p "$package" "${feature_args[@]}" --target wasm32-wasip1 \
      -Zbuild-std=std,panic_abort
    built="target/wasm-debian/wasm32-wasip1/wasm/$lib.wasm"
    ;;
  *) echo "unknown wasm toolchain route: $route" >&2; exit 1 ;;
esac
# Copy only when changed so the module's mtime tracks its content.
cmp -s "$built" "$out" 2>/dev/null || cp --remove-destination "$built" "$out"
echo "wasm module: $out ($(stat -c %s "$out") bytes, $package${features:+ with $features}, built via $route)" >&2
