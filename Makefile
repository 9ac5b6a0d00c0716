# Aurelis task runner. Every target bootstraps what it needs (idempotent, see scripts/bootstrap.sh).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all bootstrap wasm native null-native oci build run test test-native lint bench fuzz envoy-configs

all: build

bootstrap:
	@bash scripts/bootstrap.sh

## The filter module, at target/aurelis_filter.wasm.
wasm:
	@bash scripts/build-wasm.sh

## The native filter (Envoy dynamic module), at target/release/libaurelis_native.so.
native:
	$(CARGO) build -p aurelis-native --release

## The module as OCI images (no container engine): target/oci/wasm (Istio's Wasm media types) and
## target/oci/compat (Docker-compatible), each with its manifest digest in `digest`.
oci: wasm
	$(CARGO) run -q -p aurelis-devstack --bin aurelis-oci -- build --wasm target/aurelis_filter.wasm --out target/oci

## Native binaries (control plane, cache service, mock upstream, devstack launcher and bench)
## and both builds of the filter.
build: bootstrap wasm native
	$(CARGO) build --workspace --bins

## The whole stack on an embedded default: mock upstream, Redis, control plane, Envoy + filter.
## AURELIS_FILTER=native runs the native dynamic module instead of the Wasm filter.
run: build
	$(CARGO) run -q -p aurelis-devstack --bin aurelis-run

## envoy/*.yaml from the control plane's compile step (a test fails when they are stale).
envoy-configs:
	$(CARGO) run -q -p aurelis-control-plane -- render-envoy --out envoy

## Every test: unit, in-process and end-to-end against real Envoy and Redis; then the cache,
## coalescing, L2, L3, warming, replay, rate-limit, access, JWT and access-log and fleet-stats and refresh-ahead suites once more against the native filter.
NATIVE_SUITES := --test cache_l1 --test cache_l2 --test cache_l3 --test cache_warm --test cache_replay --test rate_limits --test access --test jwt_identity --test native_abi --test access_log --test telemetry --test fleet_stats --test refresh_ahead
# The native run selects its suites with `--workspace` like the first run, so cargo resolves the
# same features and rebuilds nothing (`-p aurelis-e2e` rebuilt the control plane and devstack).
test: build
	$(CARGO) test --workspace --no-fail-fast
	AURELIS_FILTER=native $(CARGO) test --workspace --no-fail-fast $(NATIVE_SUITES)

## Only the end-to-end suites the native filter must pass, against it.
test-native: build
	AURELIS_FILTER=native $(CARGO) test --workspace --no-fail-fast $(NATIVE_SUITES)

## fmt, and clippy -D warnings on the host (every crate and target) and on wasm32 (the filter).
lint: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@bash scripts/build-wasm.sh --clippy

## The null native module (`devstack/null-native`), where the bench's Envoy looks for it: the
## floor of any body-reading dynamic module, as the null filter is for Wasm.
null-native:
	$(CARGO) build --release -q -p aurelis-null-native
	@mkdir -p target/null-native && cp target/release/libaurelis_null_native.so target/null-native/libaurelis_native.so

bench: build null-native
	@bash scripts/bootstrap.sh bench
	@bash scripts/build-wasm.sh --package aurelis-null-filter --out target/aurelis_null_filter.wasm
	@bash scripts/build-wasm.sh --features count-host-calls --out target/aurelis_filter_counting.wasm
	$(CARGO) bench -q -p aurelis-core --bench canonicalize -- --warm-up-time 1 --measurement-time 3
	$(CARGO) bench -q -p aurelis-core --bench flow -- --warm-up-time 1 --measurement-time 3
	$(CARGO) bench -q -p aurelis-core --bench l1_eviction
	$(CARGO) bench -q -p aurelis-control-plane --bench xds_fanout
	$(CARGO) bench -q -p aurelis-control-plane --bench telemetry_ingest
	$(CARGO) build --release -q --workspace --bins
	$(CARGO) run --release -q -p aurelis-devstack --bin aurelis-bench

## Fuzz the canonicalizer for FUZZ_SECONDS (libFuzzer via cargo-fuzz; stable toolchain with RUSTC_BOOTSTRAP).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run canonicalize -- -max_total_time=$(FUZZ_SECONDS)
