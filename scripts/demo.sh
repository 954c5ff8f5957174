#!/usr/bin/env bash
# Runs snarl on a bundled stuck asyncio program (samples/diag_lock_cycle.py:
# tasks taking two locks in opposite orders): `snarl check` live (frozen
# while read), `snarl tree` to see who awaits whom, then `snarl check` on a
# core made with gcore. Uses build/snarl; run `make` first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SNARL=$ROOT/build/snarl
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$PY" "$ROOT/samples/diag_lock_cycle.py" "$WORK/truth.json" >"$WORK/out" &
PID=$!
for _ in $(seq 600); do grep -q READY "$WORK/out" 2>/dev/null && break; sleep 0.1; done

# check exits 1 when it finds something: that is the point here.
echo "== snarl check $PID   (live)"
"$SNARL" check "$PID" || true
echo
echo "== snarl tree $PID"
"$SNARL" tree "$PID" || true
if command -v gcore >/dev/null; then
	gcore -o "$WORK/core" "$PID" >/dev/null 2>&1
	echo
	echo "== snarl check $WORK/core.$PID   (core made with gcore)"
	"$SNARL" check "$WORK/core.$PID" || true
fi
