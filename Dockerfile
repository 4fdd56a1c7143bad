# warren's image, for the Kubernetes workers (deploy/kubernetes/) or any container host:
#   docker build -t warren .
#   docker run --rm -e WARREN_BROKER_URI=amqp://USER:PASSWORD@HOST:5672/%2F \
#       -v "$PWD/scenarios:/scenarios:ro" -v "$PWD/reports:/reports" \
#       warren run /scenarios/seed-reliable.toml --out /reports/run
# It holds warren alone: scenarios run against an external broker (WARREN_BROKER_URI or
# the scenario's [broker] uris); private nodes need a rabbitmq-server it does not carry.

# Build with the Rust toolchain (the slim image carries gcc for mimalloc and ring).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin warren \
    && install -m 0755 target/release/warren /usr/local/bin/warren

# Run on slim Debian, as a user without privileges.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 warren \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/warren \
        --shell /usr/sbin/nologin warren
COPY --from=build /usr/local/bin/warren /usr/local/bin/warren
USER 10001:10001
WORKDIR /home/warren
ENTRYPOINT ["warren"]
CMD ["--help"]
