# l4raw in a scratch image: the static binary (CGO_ENABLED=0) and nothing
# else, so it builds offline and is as small as the binary. There is no
# shell and no iptables or nft: the guard table comes from l4raw itself over
# netlink. Build context: a directory holding the l4raw binary (make image
# uses bin/).
#
# l4raw runs as the container's root but needs only two capabilities; run it
# with --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW and a read-only
# root file system (see deploy/compose/compose.yaml).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="l4raw" \
      org.opencontainers.image.description="layer-4 TCP load balancer on raw packets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/l4raw/l4raw"
COPY l4raw /l4raw
ENTRYPOINT ["/l4raw"]
CMD ["--help"]
