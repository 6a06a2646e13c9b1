# Build the release binary, then run it from a slim image.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin causeway

FROM debian:bookworm-slim
COPY --from=build /src/target/release/causeway /usr/local/bin/causeway
# 4222: clients, 8222: HTTP monitoring. JetStream data lives in /data.
EXPOSE 4222 8222
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/causeway"]
CMD ["-a", "0.0.0.0", "-p", "4222", "-m", "8222", "-js", "-sd", "/data"]
