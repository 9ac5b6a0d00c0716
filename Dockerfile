# Images for docker-compose.yml: one build stage compiles the filter module (wasm32-wasip1) and the
# native binaries; small runtime stages carry them. Tests never use Docker (see README).
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo build --release --bins -p aurelis-control-plane -p aurelis-cache-service -p aurelis-mock-upstream \
 && cargo build --profile wasm -p aurelis-filter --target wasm32-wasip1 \
 && mkdir -p /out \
 && cp target/release/aurelis-control-plane target/release/aurelis-cache target/release/aurelis-mock-upstream /out/ \
 && cp target/wasm32-wasip1/wasm/aurelis_filter.wasm /out/

FROM debian:bookworm-slim AS control-plane
COPY --from=build /out/aurelis-control-plane /usr/local/bin/
COPY control-plane/models/ /etc/aurelis/
ENTRYPOINT ["aurelis-control-plane", "serve"]

FROM debian:bookworm-slim AS cache-service
COPY --from=build /out/aurelis-cache /usr/local/bin/
ENTRYPOINT ["aurelis-cache"]

FROM debian:bookworm-slim AS mock-upstream
COPY --from=build /out/aurelis-mock-upstream /usr/local/bin/
ENTRYPOINT ["aurelis-mock-upstream"]

FROM envoyproxy/envoy:v1.40.0 AS envoy
COPY --from=build /out/aurelis_filter.wasm /etc/envoy/aurelis_filter.wasm
COPY envoy/aurelis-ads-compose.yaml /etc/envoy/envoy.yaml
