# l4echo in a scratch image: the demo's HTTP backend and client (standard
# library only, CGO_ENABLED=0). It needs no privileges and runs as nobody.
# Build context: a directory holding the l4echo binary (make image uses bin/).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="l4echo" \
      org.opencontainers.image.description="HTTP backend and client of the l4raw demo" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/l4raw/l4raw"
COPY l4echo /l4echo
# 65534: the overflow user and group ("nobody"), present on every host.
USER 65534:65534
ENTRYPOINT ["/l4echo"]
