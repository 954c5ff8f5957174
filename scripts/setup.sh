#!/usr/bin/env bash
# Installs what building and testing snarl needs on a Debian machine, then
# provisions the interpreters of the test matrix. Idempotent: packages already
# present are not fetched again. Run as root (or through sudo).
set -euo pipefail

PACKAGES=(
	gcc make libelf-dev libdw-dev pkg-config   # the engine (elfutils' libelf)
	gdb strace util-linux procps               # gcore, tracer and setpriv for tests
	python3 python3-pytest                     # the test runner
	lldb-16 python3-lldb-16                    # lldb front end (lldb-14's module is broken)
	debootstrap                                # the 3.13-3.15 interpreters' chroot
	python3.11 python3.11-dev                  # Debian's 3.11 and its headers
	gdbserver                                  # the gdb front end's remote test
	libzstd-dev liblzma-dev liblz4-dev         # systemd-coredump's compressed cores
	zstd xz-utils lz4                          # ... and making them in tests
	graphviz                                   # graph --format svg
	python3-pytest-timeout                     # the pytest plugin's timeout test
	clang-14 libclang-rt-14-dev                # libFuzzer, ASan, UBSan
	dpkg-dev debhelper lintian                 # make deb (debian/), and its test
	scdoc                                      # snarl(1) from docs/snarl.1.scd
	python3-setuptools python3-wheel python3-venv   # the pytest plugin's distribution
	zsh                                        # the zsh completion's test
)

if [[ $(id -u) -ne 0 ]]; then
	echo "setup: run as root (sudo $0)" >&2
	exit 2
fi
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	apt-get update -qq
	# Some releases lack a package (lldb-16 is not everywhere): install what
	# exists rather than failing the whole setup; the tests say what they skip.
	available=()
	for p in "${missing[@]}"; do
		apt-cache show "$p" >/dev/null 2>&1 && available+=("$p") || echo "setup: $p not available, skipped"
	done
	((${#available[@]} == 0)) || apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null
fi

"$(dirname "$0")/provision-pythons.sh"
# A clean Debian 12 the package test installs build/snarl_*.deb into (an overlay of).
"$(dirname "$0")/provision-debian12.sh"
