# Build the release binary (no debug info, symbols stripped), then run it from a slim image
# as an unprivileged user.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin causeway

FROM debian:bookworm-slim
COPY --from=build /src/target/release/causeway /usr/local/bin/causeway
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin causeway \
    && mkdir /data && chown causeway:causeway /data
USER causeway
# 4222: clients, 8222: HTTP monitoring (both on all interfaces). JetStream data lives in /data.
EXPOSE 4222 8222
VOLUME ["/data"]
# /healthz over bash's /dev/tcp: no HTTP client needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD \
    bash -c 'exec 3<>/dev/tcp/127.0.0.1/8222 && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && grep -q "\"ok\"" <&3'
ENTRYPOINT ["/usr/local/bin/causeway"]
CMD ["-a", "0.0.0.0", "-p", "4222", "-m", "8222", "-js", "-sd", "/data"]
