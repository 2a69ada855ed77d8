#!/usr/bin/env bash
# Release packaging from the static binaries that "make cross" leaves in dist/:
#   scripts/package.sh deb    Debian packages dist/l4raw_<version>_<arch>.deb
#   scripts/package.sh dist   the packages, tarballs dist/l4raw-<version>-linux-<arch>.tar.gz
#                             and dist/SHA256SUMS over every release file
# The Makefile passes VERSION and COMMIT (the values stamped into the
# binaries) and NFPM, the pinned nfpm command. Outputs are reproducible:
# file times come from SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
NFPM=${NFPM:-$GO run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DEB_MAINTAINER=${DEB_MAINTAINER:-l4raw maintainers <l4raw@users.noreply.github.com>}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH DEB_MAINTAINER

fail() { echo "package: $*" >&2; exit 1; }

# Generated files (copyright files, tarball trees) live here until exit.
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

# Debian packages per Debian architecture: the binary suffix in dist/ and the
# Debian name. armhf gets the ARMv6 build: Raspberry Pi OS calls its ARMv6
# port (Pi 1 and Zero) armhf too, and an ARMv6 binary runs on every ARMv7
# armhf system; the ARMv7 binary ships in its tarball.
DEBS=("amd64 amd64" "arm64 arm64" "armv6 armhf")
# Tarballs: every binary "make cross" builds.
TARBALLS=(amd64 arm64 armv7 armv6)

# debVersion turns "git describe" output into a Debian version, which must
# start with a digit: v1.2.0 -> 1.2.0, v1.2.0-5-gabc1234-dirty ->
# 1.2.0+5.gabc1234.dirty (sorts after 1.2.0); without a release tag yet,
# 1abc234-dirty -> 0~git1abc234.dirty (before any release).
debVersion() {
	local v=$1
	if [[ $v =~ ^v?[0-9]+\.[0-9]+ ]]; then
		v=${v#v}
		v=${v/-/+}
	else
		v=0~git$v
	fi
	echo "${v//-/.}"
}

# modDir is the module cache directory of module $1 at version $2 (upper
# case letters are escaped as "!" + lower case, see golang.org/x/mod/module).
modDir() {
	local escaped
	escaped=$(sed 's/[A-Z]/!\L&/g' <<<"$1")
	echo "$($GO env GOMODCACHE)/$escaped@$2"
}

# licenseText prints file $1 as the text of a DEP-5 License field: each line
# indented by one space, empty lines as " .".
licenseText() {
	sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$1"
}

# copyright writes the Debian copyright file for binary $1 to $2: l4raw's own
# stanza, then the Go standard library and every module linked into the
# binary (from its build information) with their license files.
copyright() {
	local bin=$1 out=$2 goversion path version dir f found
	cp deploy/deb/copyright "$out"
	goversion=$($GO version "$bin" | awk '{print $2}')
	{
		echo
		echo "Files: bundled/go/$goversion"
		echo "Copyright: The Go Authors"
		echo "License: BSD-3-Clause-Go"
		licenseText "$($GO env GOROOT)/LICENSE"
	} >>"$out"
	while read -r kind path version _; do
		[ "$kind" = dep ] || continue
		dir=$(modDir "$path" "$version")
		[ -d "$dir" ] || fail "module $path@$version not in the module cache ($dir): build first"
		found=0
		for f in "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/COPYING* "$dir"/NOTICE*; do
			[ -f "$f" ] || continue
			found=1
			{
				echo
				echo "Files: bundled/$path@$version"
				echo "Copyright: the authors of $path, see the license"
				echo "License: $path/$(basename "$f")"
				licenseText "$f"
			} >>"$out"
		done
		[ $found = 1 ] || fail "module $path@$version has no license file in $dir"
	done < <($GO version -m "$bin" | sed 's/^[[:space:]]*//')
}

buildDebs() {
	local build=$BUILD/deb ver entry suffix arch bin
	ver=${DEB_VERSION:-$(debVersion "$VERSION")}
	rm -f dist/l4raw_*.deb
	for entry in "${DEBS[@]}"; do
		read -r suffix arch <<<"$entry"
		bin=dist/l4raw-linux-$suffix
		[ -x "$bin" ] || fail "$bin missing: run make cross"
		mkdir -p "$build/$arch"
		copyright "$bin" "$build/$arch/copyright"
		DEB_ARCH=$arch DEB_VERSION=$ver BIN_ARCH=$suffix BUILD_DIR=$build/$arch \
			$NFPM package --config deploy/deb/nfpm.yaml --packager deb --target "dist/l4raw_${ver}_$arch.deb" >/dev/null
		echo "dist/l4raw_${ver}_$arch.deb"
	done
}

buildTarballs() {
	local build=$BUILD/tar name dir suffix b
	rm -f dist/l4raw-*.tar.gz
	for suffix in "${TARBALLS[@]}"; do
		name=l4raw-$VERSION-linux-$suffix
		dir=$build/$name
		mkdir -p "$dir"
		for b in l4raw l4echo; do
			[ -x "dist/$b-linux-$suffix" ] || fail "dist/$b-linux-$suffix missing: run make cross"
			install -m 0755 "dist/$b-linux-$suffix" "$dir/$b"
		done
		install -m 0644 README.md deploy/l4raw.yaml deploy/systemd/l4raw.service "$dir/"
		copyright "dist/l4raw-linux-$suffix" "$dir/copyright"
		chmod 0644 "$dir/copyright"
		tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
			-C "$build" -czf "dist/$name.tar.gz" "$name"
		echo "dist/$name.tar.gz"
	done
}

sums() {
	(cd dist && sha256sum -- l4raw_*.deb l4raw-*.tar.gz l4raw-linux-* l4echo-linux-* >SHA256SUMS)
	echo "dist/SHA256SUMS"
}

case ${1:-} in
deb) buildDebs ;;
dist)
	buildDebs
	buildTarballs
	sums
	;;
*) fail "usage: scripts/package.sh deb|dist" ;;
esac
