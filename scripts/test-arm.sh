#!/usr/bin/env bash
# Runs the unit tests as 64-bit ARM (arm64) and as 32-bit ARM (armv7) under
# Debian's qemu-user-static, then "--help" of every binary in dist/ under the
# emulator of its architecture (make cross builds them first).
#
# Root-only tests (network namespaces, packet sockets) skip: qemu-user does
# not translate every netlink family (RTM_NEWNEIGH fails with EOPNOTSUPP), so
# they cannot pass under emulation. They decide by os.Geteuid(), so as root
# the test binaries run in a fresh user namespace with no UID mapping
# (unshare --user): there they are the overflow user 65534 with no
# capabilities, exactly an ordinary user's view, while the build cache they
# run from stays readable (its owner is still root outside). Run as an
# ordinary user, the tests need no such wrapper.
#
# Usage: scripts/test-arm.sh   (GO selects the go command, PKGS the packages)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
PKGS=${PKGS:-./pkg/... ./cmd/...}

fail() { echo "test-arm: $*" >&2; exit 1; }

for q in qemu-aarch64-static qemu-arm-static; do
	command -v "$q" >/dev/null || fail "$q not found: apt-get install qemu-user-static"
done

unpriv=()
if [ "$(id -u)" = 0 ]; then
	command -v unshare >/dev/null || fail "unshare not found: apt-get install util-linux"
	unpriv=(unshare --user)
	[ "$("${unpriv[@]}" id -u)" = 65534 ] || fail "unshare --user does not give an unprivileged user (user.max_user_namespaces = $(cat /proc/sys/user/max_user_namespaces))"
fi

# arch label, GOARCH, GOARM, emulator, CPU. The CPUs are the oldest each
# build targets: a Cortex-A53 (Raspberry Pi 3, ARMv8-A), a Cortex-A7
# (Raspberry Pi 2, ARMv7-A) and an ARM1176 (Raspberry Pi 1 and Zero, ARMv6).
targets=(
	"arm64 arm64 - qemu-aarch64-static cortex-a53"
	"armv7 arm 7 qemu-arm-static cortex-a7"
	"armv6 arm 6 qemu-arm-static arm1176"
)

# Both architectures run even when the first fails; the exit code tells.
failed=()
# shellcheck disable=SC2086 # PKGS is a list of patterns
for t in "${targets[@]}"; do
	read -r name goarch goarm emu cpu <<<"$t"
	[ "$name" = armv6 ] && continue # the unit tests run as arm64 and armv7; armv6 only runs --help below
	echo "== go test as $name ($emu -cpu $cpu)"
	env CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="${goarm/-/}" QEMU_CPU="$cpu" \
		"$GO" test -count=1 -exec "${unpriv[*]} $emu" $PKGS || failed+=("go test as $name")
done

for t in "${targets[@]}"; do
	read -r name goarch goarm emu cpu <<<"$t"
	for b in l4raw l4echo; do
		f=dist/$b-linux-$name
		[ -x "$f" ] || fail "$f missing: run make cross"
		out=$("$emu" -cpu "$cpu" "$f" --help 2>&1) || fail "$f --help under $emu -cpu $cpu: $out"
		case $b in
		l4raw) grep -q '^Usage:' <<<"$out" || fail "$f --help: no usage: $out" ;;
		l4echo) grep -q '^usage: l4echo' <<<"$out" || fail "$f --help: no usage: $out" ;;
		esac
		echo "ok $f --help ($emu -cpu $cpu)"
	done
	out=$("$emu" -cpu "$cpu" "dist/l4raw-linux-$name" --version) || fail "dist/l4raw-linux-$name --version: $out"
	echo "ok dist/l4raw-linux-$name --version: $out"
done
f=dist/l4raw-linux-amd64
[ -x "$f" ] || fail "$f missing: run make cross"
"$f" --help >/dev/null || fail "$f --help failed"
echo "ok $f --help (native)"
[ ${#failed[@]} -eq 0 ] || fail "failed: ${failed[*]}"
