# airlock's image: built from this repository, run as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin airlock

FROM debian:bookworm-slim
COPY --from=build /src/target/release/airlock /usr/local/bin/airlock
RUN useradd --system --uid 10001 airlock && mkdir -p /var/lib/airlock && chown airlock /var/lib/airlock
USER airlock
ENTRYPOINT ["airlock"]
CMD ["serve"]
