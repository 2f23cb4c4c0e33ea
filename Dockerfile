# airlock's image (issue 22): built from this repository with the release archives' settings (scripts/release.sh),
# run as an unprivileged user, its data in a volume, every setting from the environment (AIRLOCK_*).
#   docker build --build-arg AIRLOCK_COMMIT=$(git rev-parse --short=12 HEAD) -t airlock:0.2.0 .
#   docker run --rm airlock:0.2.0 demo
FROM rust:1.95-bookworm AS build
# musl-gcc: the binary is the release archives' static musl build (SQLite is compiled in).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The commit `airlock --version` names: the build context has no .git (.dockerignore), so it is given.
ARG AIRLOCK_COMMIT=unknown
# The release profile without debug information or symbols, as scripts/release.sh builds it.
ENV AIRLOCK_COMMIT=${AIRLOCK_COMMIT} CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN target="$(uname -m)-unknown-linux-musl" \
    && rustup target add "$target" \
    && env "CC_$(uname -m)_unknown_linux_musl=musl-gcc" \
        cargo build --release --locked --bin airlock --target "$target" \
    && cp "target/$target/release/airlock" /airlock \
    && /airlock man --out /out/man/man1 \
    && mkdir -p /out/completions \
    && /airlock completions bash > /out/completions/airlock

FROM debian:bookworm-slim
# CA certificates: smtps://, an SMS provider, webhooks, OIDC and SCIM are all TLS. curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /airlock /usr/local/bin/airlock
COPY --from=build /out/man/man1/ /usr/local/share/man/man1/
COPY --from=build /out/completions/airlock /usr/share/bash-completion/completions/airlock
COPY policies/ /usr/local/share/airlock/policies/
COPY examples/airlock.toml /usr/local/share/airlock/airlock.toml
# The data directory and the folders `airlock nats-config` writes into (docker-compose.yml) belong to airlock's user,
# so that a named volume mounted there starts out writable by it (and the seeds' readable by it alone).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/airlock --shell /usr/sbin/nologin airlock \
    && mkdir -p /var/lib/airlock /etc/airlock/nats/seeds \
    && chown airlock:airlock /var/lib/airlock /etc/airlock/nats /etc/airlock/nats/seeds \
    && chmod 0700 /etc/airlock/nats/seeds
USER 10001:10001
WORKDIR /var/lib/airlock
# The probes on loopback inside the container (the health check runs there); set AIRLOCK_METRICS=0.0.0.0:9090 to
# let a scraper on a private network reach /metrics.
ENV AIRLOCK_DATA_DIR=/var/lib/airlock \
    AIRLOCK_METRICS=127.0.0.1:9090
VOLUME ["/var/lib/airlock"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--max-time", "2", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["airlock"]
CMD ["serve"]
