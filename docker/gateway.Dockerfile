# cidgate gateway image for docker-compose.yml (build context: the repository root).
#
# Two stages so the runtime image carries only the binary: the Rust toolchain
# and the dependency sources stay in the build stage.
FROM rust:1-bookworm AS build
WORKDIR /src
# Cargo.toml names the bench targets, so cargo wants benches/ present even
# for `--bin cidgate`; examples/ and tests/ are optional and left out.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cidgate

FROM debian:12-slim
COPY --from=build /src/target/release/cidgate /usr/local/bin/cidgate
# SIP on 5060 (UDP and TCP, the same port serves both), admin HTTP on 8080.
EXPOSE 5060/udp 5060/tcp 8080/tcp
# Nothing the gateway does needs root: its ports are above 1024 and its
# config and inventory are mounted read-only.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/cidgate"]
CMD ["run", "--config", "/etc/cidgate/cidgate.toml"]
