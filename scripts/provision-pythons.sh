#!/usr/bin/env bash
# Provision the real CPython builds the test matrix runs against, from Debian
# sid, in a chroot so the host distribution's own python3 is never touched.
# Idempotent: a second run only re-checks packages and rewrites the manifest.
set -euo pipefail

DIR=${SNARL_CHROOT:-/var/cache/snarl/sid}
VERSIONS=(3.13 3.14 3.15)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

LOG=$(mktemp)
TMP=
cleanup() { rm -f "$LOG"; [[ -z $TMP ]] || rm -rf --one-file-system "$TMP"; }
trap cleanup EXIT

# Stay quiet on success, but never hide why something failed.
run() {
	if ! "$@" >"$LOG" 2>&1; then
		echo "provision-pythons: failed: $*" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
}

if ! command -v debootstrap >/dev/null; then
	# Only pay for an index refresh when the cached one can't satisfy us.
	apt-get install -y -qq --no-install-recommends debootstrap >"$LOG" 2>&1 ||
		{ run apt-get update -qq; run apt-get install -y -qq --no-install-recommends debootstrap; }
fi

mkdir -p "$(dirname "$DIR")"
# Serialise concurrent runs; the lock also makes leftover temp dirs provably stale.
exec 9>"$DIR.lock"
flock 9
# A killed debootstrap leaves its /proc and /sys mounted inside the temp dir.
for stale in "$DIR".tmp.*; do
	[[ -e $stale ]] || continue
	awk -v p="$stale/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m"; done
	rm -rf --one-file-system "$stale"
done

# The marker is written last, and the rename is atomic, so an interrupted
# bootstrap can never be mistaken for a finished one.
if [[ ! -e $DIR/.snarl-bootstrap-complete ]]; then
	[[ ! -e $DIR ]] || { echo "provision-pythons: $DIR exists but is incomplete; remove it" >&2; exit 1; }
	TMP=$(mktemp -d "$DIR.tmp.XXXXXX")
	chmod 755 "$TMP" # mktemp's 0700 would lock non-root test runs out
	# debootstrap's own default archive: the project names none.
	run debootstrap --variant=minbase unstable "$TMP"
	touch "$TMP/.snarl-bootstrap-complete"
	mv -T "$TMP" "$DIR"
	TMP=
fi

in_chroot() { chroot "$DIR" "$@"; }
# sid's Release file can be past its Valid-Until date on an archive snapshot;
# the packages are still signed, so only the date check is dropped.
APT_OPTS=(-o Acquire::Check-Valid-Until=false)

# sid moves daily; refresh the index when it is missing or a day old so that
# a re-run with everything installed doesn't touch the network.
lists=$(find "$DIR/var/lib/apt/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 | head -n1)
[[ -n $lists ]] || run in_chroot apt-get "${APT_OPTS[@]}" update -qq

available() { [[ -n $(in_chroot apt-cache madison "$1" 2>/dev/null) ]]; }

pkgs=() found=()
for v in "${VERSIONS[@]}"; do
	available "python$v" || { echo "provision-pythons: note: python$v not in sid" >&2; continue; }
	found+=("$v")
	# The headers, internal ones included, are what snarl's offsets are checked against.
	pkgs+=("python$v" "libpython$v-dev")
	# Optional extras: absent ones only narrow what the matrix can cover.
	if available "python$v-dbg"; then pkgs+=("python$v-dbg"); else echo "provision-pythons: note: python$v-dbg not in sid" >&2; fi
done
((${#found[@]})) || { echo "provision-pythons: none of python${VERSIONS[*]} in sid" >&2; exit 1; }
# Third-party event loops/servers are exercised on 3.14 only; these follow sid's python3.
if [[ " ${found[*]} " == *" 3.14 "* ]]; then
	# The frameworks real services run on (anyio, httpx/httpcore, FastAPI,
	# Starlette, uvicorn) are what the framework samples import.
	for p in python3-uvloop python3-aiohttp python3-anyio python3-httpx python3-httpcore \
		python3-fastapi python3-starlette python3-uvicorn; do
		if available "$p"; then pkgs+=("$p"); else echo "provision-pythons: note: $p not in sid" >&2; fi
	done
fi

apt_install() { in_chroot apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "${pkgs[@]}"; }
# A stale index can point at superseded .debs; one refresh is the cure.
apt_install >"$LOG" 2>&1 || { run in_chroot apt-get "${APT_OPTS[@]}" update -qq; run apt_install; }
in_chroot apt-get clean

manifest=$DIR/snarl-manifest.txt
: >"$manifest.new"
for v in "${found[@]}"; do
	for exe in "/usr/bin/python$v" "/usr/bin/python${v}d"; do
		[[ -x $DIR$exe ]] || continue
		ver=$(in_chroot "$exe" -c 'import sys; print(sys.version.replace("\n", " "))')
		printf '%s\t%s\n' "$exe" "$ver" >>"$manifest.new"
		printf 'python%s %s %s\n' "${exe#/usr/bin/python}" "${ver%% *}" "$DIR$exe"
	done
done
mv -f "$manifest.new" "$manifest"
