# Aurelis task runner. Every target bootstraps what it needs (idempotent, see scripts/bootstrap.sh).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all bootstrap wasm build run test test-unit test-e2e lint validate bench clean-wasm

all: build

bootstrap:
	@bash scripts/bootstrap.sh

## The filter module, at target/aurelis_filter.wasm.
wasm:
	@bash scripts/build-wasm.sh

## Native binaries (control plane, mock upstream, stack runner).
build: bootstrap wasm
	$(CARGO) build --workspace --bins

## The whole stack on an embedded default: mock upstream, Redis, control plane, Envoy + filter.
run: build
	$(CARGO) run -q -p aurelis-e2e --bin aurelis-run

## Every test: unit, in-process and end-to-end against real Envoy and Redis.
test: build
	$(CARGO) test --workspace --no-fail-fast

lint: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: build
	@bash scripts/bootstrap.sh bench
	$(CARGO) bench -q -p aurelis-core --bench canonicalize -- --warm-up-time 1 --measurement-time 3
	$(CARGO) run --release -q -p aurelis-e2e --bin aurelis-bench
