#!/bin/sh
# Runs the fuzz targets and the fault-injection tool (tests/fuzz/README.md).
#   run.sh regress          every seed and regression input, once per target
#   run.sh fuzz SECONDS     each target for SECONDS, one after the other
#   run.sh afl SECONDS T... the AFL++ builds of targets T for SECONDS each
#   run.sh faults TOOL      TOOL (snarl-faults) over the fault images
# Seeds and regression inputs may be gzip-compressed (.gz); they are unpacked
# into build/fuzz/ first. Fuzzing grows build/fuzz/corpus/TARGET and leaves
# crashing inputs in build/fuzz/artifacts/TARGET/; any finding fails the run.
set -eu
cd "$(dirname "$0")/../.."

TARGETS="core sym engine"
OUT=build/fuzz
# Images are a few MB; let mutations grow them somewhat, not without bound.
MAX_LEN=8388608
# A single input that runs this long is a hang (the longest seed takes
# well under a second under ASan).
TIMEOUT=30
# The engine's corpus of MB-sized images lives in the fuzzer's memory and
# counts towards its RSS; one input allocating more than MALLOC_MB is a
# finding.
RSS_MB=4096
MALLOC_MB=2048
# The recorded analyses the fault tool replays: `check` (reachability
# included) of a lock-order deadlock, on 3.11 (built-in layout tables) and
# 3.14 (the target's debug offsets and asyncio table). Every N of both takes
# about 2 minutes under ASan.
FAULT_IMAGES="tests/fuzz/seeds/engine/311-diag_lock_cycle-all.img.gz
              tests/fuzz/seeds/engine/314-diag_lock_cycle-all.img.gz"
FAULT_COMMAND=check

unpack() { # SRC_DIR DEST_DIR
    rm -rf "$2"
    mkdir -p "$2"
    for f in "$1"/*; do
        [ -f "$f" ] || continue
        case "$f" in
        *.gz) gzip -dc "$f" >"$2/$(basename "$f" .gz)" ;;
        *) cp "$f" "$2/" ;;
        esac
    done
}

prepare() {
    for t in $TARGETS; do
        unpack tests/fuzz/seeds/$t $OUT/seeds/$t
        unpack tests/fuzz/regress/$t $OUT/regress/$t
        mkdir -p $OUT/corpus/$t $OUT/artifacts/$t $OUT/logs
    done
}

case "${1:-}" in
regress)
    prepare
    for t in $TARGETS; do
        echo "fuzz-$t: replaying seeds and regression inputs"
        $OUT/fuzz-$t -runs=0 -max_len=$MAX_LEN -timeout=$TIMEOUT -rss_limit_mb=$RSS_MB \
            -malloc_limit_mb=$MALLOC_MB \
            $OUT/seeds/$t $OUT/regress/$t >$OUT/logs/$t-regress.log 2>&1 ||
            { tail -50 $OUT/logs/$t-regress.log; echo "fuzz-$t: a seed or regression input fails"; exit 1; }
    done
    echo "fuzz: seeds and regression inputs pass"
    ;;
fuzz)
    prepare
    secs=${2:-60}
    for t in $TARGETS; do
        echo "fuzz-$t: fuzzing for $secs s (log: $OUT/logs/$t.log)"
        $OUT/fuzz-$t -max_total_time="$secs" -max_len=$MAX_LEN -timeout=$TIMEOUT \
            -rss_limit_mb=$RSS_MB -malloc_limit_mb=$MALLOC_MB -print_final_stats=1 \
            -artifact_prefix=$OUT/artifacts/$t/ \
            $OUT/corpus/$t $OUT/seeds/$t $OUT/regress/$t >$OUT/logs/$t.log 2>&1 ||
            { tail -60 $OUT/logs/$t.log; echo "fuzz-$t: FINDING in $OUT/artifacts/$t/"; exit 1; }
        grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec' \
            $OUT/logs/$t.log | sed "s/^/  /"
    done
    ;;
afl)
    prepare
    secs=$2
    shift 2
    for t in "$@"; do
        echo "afl-fuzz $t: fuzzing for $secs s (log: $OUT/logs/afl-$t.log)"
        rm -rf build/afl/out/$t
        mkdir -p build/afl/out
        # The libFuzzer corpus and the seeds, as AFL++'s starting queue.
        mkdir -p build/afl/in/$t
        cp $OUT/seeds/$t/* $OUT/regress/$t/* build/afl/in/$t/ 2>/dev/null || true
        AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
            AFL_NO_AFFINITY=1 afl-fuzz -V "$secs" -t 30000 -m none -i build/afl/in/$t \
            -o build/afl/out/$t -- build/afl/fuzz-$t >$OUT/logs/afl-$t.log 2>&1
        grep -E "execs_done|execs_per_sec|bitmap_cvg|saved_crashes|saved_hangs" \
            build/afl/out/$t/default/fuzzer_stats | sed "s/^/  /"
        if [ -n "$(ls build/afl/out/$t/default/crashes 2>/dev/null | grep -v README)" ]; then
            echo "afl-fuzz $t: FINDING in build/afl/out/$t/default/crashes/"
            exit 1
        fi
    done
    ;;
faults)
    tool=$2
    rm -rf $OUT/faults
    mkdir -p $OUT/faults
    for f in $FAULT_IMAGES; do
        [ -f "$f" ] || continue
        gzip -dc "$f" >$OUT/faults/$(basename "$f" .gz)
    done
    "$tool" --command $FAULT_COMMAND $OUT/faults/*.img
    ;;
*)
    echo "usage: $0 regress | fuzz SECONDS | afl SECONDS TARGET... | faults TOOL" >&2
    exit 2
    ;;
esac
