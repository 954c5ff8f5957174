#!/usr/bin/env bash
# Runs snarl on a bundled stuck program: live (frozen while read), then from
# a core made with gcore. Uses build/snarl; run `make` first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SNARL=$ROOT/build/snarl
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$PY" "$ROOT/samples/threads_stuck.py" "$WORK/truth.json" >"$WORK/out" &
PID=$!
for _ in $(seq 600); do grep -q READY "$WORK/out" 2>/dev/null && break; sleep 0.1; done

echo "== snarl stacks $PID   (live)"
"$SNARL" stacks "$PID"
if command -v gcore >/dev/null; then
	gcore -o "$WORK/core" "$PID" >/dev/null 2>&1
	echo
	echo "== snarl stacks $WORK/core.$PID   (core made with gcore)"
	"$SNARL" stacks "$WORK/core.$PID"
fi
