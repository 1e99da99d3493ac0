#!/usr/bin/env bash
# The log call under CPU pressure (issue 24, BENCHMARKS.md section 7): hivelog's default local
# output against tracing-subscriber's fmt().json(), both writing to a real file, in three
# conditions: quiet (2 cores), one core (taskset -c 0), and 2 cores with a same-priority
# busy-loop process beside it. Each cell is the median of PAIRS alternating process pairs.
#
#   scripts/bench-cpu-pressure.sh                 # all conditions, 5 pairs, 1,000,000 events
#   PAIRS=3 EVENTS=300000 CONDITIONS="one_core" scripts/bench-cpu-pressure.sh
#   BIN=path/to/cpu_pressure scripts/bench-cpu-pressure.sh   # another build (say, the previous main's)
#
# Prints one table per condition: caller CPU and whole-process CPU per event for each side and
# their ratio, lines dropped (hivelog's report) and missing from the file, and context switches
# per 100k events. `paced` is one event every 10 µs (caller figure only).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-5}
EVENTS=${EVENTS:-1000000}
PACED_EVENTS=${PACED_EVENTS:-100000}
CONDITIONS=${CONDITIONS:-"quiet one_core hog"}
TARGET=${CARGO_TARGET_DIR:-target}

if [ -z "${BIN:-}" ]; then
    cargo build --release -p hivelog --example cpu_pressure >&2
    BIN="$TARGET/release/examples/cpu_pressure"
fi
OUT=$(mktemp -d)
HOG=""
cleanup() {
    [ -n "$HOG" ] && kill "$HOG" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

run() { # condition side case events
    local file="$OUT/$2.log"
    case "$1" in
        one_core) taskset -c 0 "$BIN" "$2" "$3" "$4" "$file" ;;
        *) "$BIN" "$2" "$3" "$4" "$file" ;;
    esac
}

for cond in $CONDITIONS; do
    if [ "$cond" = hog ]; then
        "$BIN" hog &
        HOG=$!
        sleep 0.5
    fi
    results="$OUT/results.$cond"
    : >"$results"
    for case in event span paced; do
        n=$EVENTS
        [ "$case" = paced ] && n=$PACED_EVENTS
        for _ in $(seq "$PAIRS"); do
            for side in hivelog fmt; do
                run "$cond" "$side" "$case" "$n" >>"$results"
            done
        done
    done
    if [ -n "$HOG" ]; then
        kill "$HOG"
        wait "$HOG" 2>/dev/null || true
        HOG=""
    fi
    python3 - "$cond" "$results" <<'PY'
import statistics, sys
cond, path = sys.argv[1], sys.argv[2]
rows = [dict(kv.split("=") for kv in line.split()) for line in open(path) if line.strip()]
def med(side, case, key):
    return statistics.median(float(r[key]) for r in rows if r["side"] == side and r["case"] == case)
def worst(side, case, key):
    return max(int(r[key]) for r in rows if r["side"] == side and r["case"] == case)
print(f"\n## {cond}  (medians of {sum(1 for r in rows if r['side']=='fmt' and r['case']=='event')} pairs)")
print("| case | caller hivelog | caller fmt | ratio | process hivelog | process fmt | ratio | dropped (max) | missing (max) | ctx sw / 100k hivelog | fmt |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for case in ("event", "span", "paced"):
    ch, cf = med("hivelog", case, "caller_ns"), med("fmt", case, "caller_ns")
    ph, pf = med("hivelog", case, "process_ns"), med("fmt", case, "process_ns")
    print(f"| {case} | {ch:.0f} ns | {cf:.0f} ns | **{ch/cf:.2f}** | {ph:.0f} ns | {pf:.0f} ns | **{ph/pf:.2f}** "
          f"| {worst('hivelog', case, 'dropped')} | {worst('hivelog', case, 'missing')} "
          f"| {med('hivelog', case, 'cs_per_100k'):.0f} | {med('fmt', case, 'cs_per_100k'):.0f} |")
PY
done
