#!/usr/bin/env bash
# A clean Debian 12 (bookworm) minbase chroot for tests/pkg/test_deb.py, which
# installs build/snarl_*.deb into a throwaway overlay of it, as a user would on
# a fresh machine. The chroot itself is never installed into: only apt's index
# and the .debs the test installs besides snarl (its shared libraries, python3
# for a sample, gdb for the auto-load check) are downloaded into its cache, so
# the test needs no network. Idempotent: a second run only refreshes that.
set -euo pipefail

DIR=${SNARL_DEBIAN12_CHROOT:-/var/cache/snarl/bookworm}
# What the package test installs into the overlay, from this cache only
# (apt-get --no-download): snarl's own dependencies come along with these.
TEST_PKGS=(libelf1 libzstd1 liblzma5 liblz4-1 python3 gdb)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

LOG=$(mktemp)
TMP=
cleanup() { rm -f "$LOG"; [[ -z $TMP ]] || rm -rf --one-file-system "$TMP"; }
trap cleanup EXIT

run() {
	if ! "$@" >"$LOG" 2>&1; then
		echo "provision-debian12: failed: $*" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
}

command -v debootstrap >/dev/null || { echo "provision-debian12: debootstrap is not installed" >&2; exit 1; }

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
# A killed debootstrap leaves its /proc and /sys mounted inside the temp dir.
for stale in "$DIR".tmp.*; do
	[[ -e $stale ]] || continue
	awk -v p="$stale/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m"; done
	rm -rf --one-file-system "$stale"
done

# The marker is written last and the rename is atomic: an interrupted
# bootstrap is never mistaken for a finished one.
if [[ ! -e $DIR/.snarl-bootstrap-complete ]]; then
	[[ ! -e $DIR ]] || { echo "provision-debian12: $DIR exists but is incomplete; remove it" >&2; exit 1; }
	TMP=$(mktemp -d "$DIR.tmp.XXXXXX")
	chmod 755 "$TMP"
	# debootstrap's own default archive: the project names none.
	run debootstrap --variant=minbase bookworm "$TMP"
	touch "$TMP/.snarl-bootstrap-complete"
	mv -T "$TMP" "$DIR"
	TMP=
fi

in_chroot() { chroot "$DIR" "$@"; }
# An archive snapshot's Release file can be past its Valid-Until date; the
# packages are still signed, so only the date check is dropped.
APT_OPTS=(-o Acquire::Check-Valid-Until=false)

# Refresh the index when missing or a week old (bookworm moves only with
# point releases), so a re-run with everything cached touches no network.
lists=$(find "$DIR/var/lib/apt/lists" -maxdepth 1 -name '*_Packages*' -mmin -10080 | head -n1)
[[ -n $lists ]] || run in_chroot apt-get "${APT_OPTS[@]}" update -qq

download() { in_chroot apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends --download-only "${TEST_PKGS[@]}"; }
download >"$LOG" 2>&1 || { run in_chroot apt-get "${APT_OPTS[@]}" update -qq; run download; }
# Nothing was installed: the chroot stays a clean minbase.
if in_chroot dpkg-query -W -f='${Status}\n' gdb 2>/dev/null | grep -q 'install ok installed'; then
	echo "provision-debian12: $DIR has gdb installed: it is no longer clean; remove it and run again" >&2
	exit 1
fi
echo "debian12 $(cat "$DIR/etc/debian_version") $DIR"
