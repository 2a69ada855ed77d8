#!/usr/bin/env bash
# Builds the container images l4raw:TAG and l4echo:TAG (also tagged latest)
# FROM scratch, each from one static binary in BIN_DIR (default bin/, from
# "make build"), so no registry is needed. Needs a running Docker daemon.
#
# Usage: scripts/image.sh   (IMAGE_TAG or VERSION names the tag; GO, DOCKER)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DOCKER=${DOCKER:-docker}
BIN_DIR=${BIN_DIR:-bin}
TAG=${IMAGE_TAG:-${VERSION:-dev}}
TAG=${TAG//[^A-Za-z0-9_.-]/-} # a Docker tag allows only these characters

fail() { echo "image: $*" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for b in l4raw l4echo; do
	bin=$BIN_DIR/$b
	[ -x "$bin" ] || fail "$bin missing: run make build"
	# A scratch image has no C library: the binary must be static.
	"$GO" version -m "$bin" | grep -q 'CGO_ENABLED=0' || fail "$bin was not built with CGO_ENABLED=0"
	rm -rf "${ctx:?}"/*
	cp "$bin" "$ctx/$b" # the build context holds that binary only
	"$DOCKER" build --quiet --build-arg VERSION="$TAG" -t "$b:$TAG" -t "$b:latest" \
		-f "deploy/docker/$b.Dockerfile" "$ctx" >/dev/null
	echo "$b:$TAG $b:latest ($(du -h "$bin" | cut -f1) binary)"
done
