#!/usr/bin/env bash
# The cost of the broker's per-message metrics (issue 13), in instructions, which machine load
# cannot move: the broker runs under `valgrind --tool=callgrind` (instruction counts only, no
# cache simulation) twice per variant, for a small and a large fixed fan-in run
# (`mqttd bench fan-in -c 4 -q 1`, paced, the generator outside valgrind). The difference of the
# two runs' instruction counts divided by the difference in messages is the broker's
# instructions per message, start-up and shut-down cancelled out.
#
# Variants: `on` is the tree as it is; `off` is the same tree with benches/metrics-off.patch
# applied, which removes every per-message metric update on the publish path (packet and byte
# counts by type in and out, messages received and sent, the delivery latency histogram).
#
# The same method prices qlog (`quic.qlog_dir`, every connection traced) on a QUIC fan-in: the
# broker's own instructions; the kernel's work writing the files is not counted.
#
#   benches/metrics_cost.sh                    # -n 1000 and 3000 per publisher
#   options: --small N --large N --rate MSG_PER_S_PER_PUBLISHER (500) --out FILE
#            --repeat N (each measurement N times, one row each) --no-build (reuse the binaries)
#
# Needs valgrind. Builds both variants (release) from copies of the tree under
# target/metrics-cost/ (one target directory, CARGO_TARGET_DIR or target/metrics-cost/target,
# so the dependencies are built once).
set -euo pipefail

cd "$(dirname "$0")/.."
SMALL=1000
LARGE=3000
RATE=500
PUBLISHERS=4
OUT=target/bench/metrics_cost.md
REPEAT=1
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --repeat) REPEAT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --small) SMALL=$2; shift 2 ;;
        --large) LARGE=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "metrics_cost.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "metrics_cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

ROOT=$PWD
BASE=target/metrics-cost
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-$BASE/target}")
mkdir -p "$BASE" "$(dirname "$OUT")"
build() {  # variant
    local src=$BASE/src-$1
    rm -rf "$src"
    mkdir -p "$src"
    git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$src"
    if [ "$1" = off ]; then
        patch -d "$src" -p1 --quiet < benches/metrics-off.patch
    fi
    (cd "$src" && CARGO_TARGET_DIR=$TARGET cargo build --release --bin mqttd --quiet)
    cp "$TARGET/release/mqttd" "$BASE/mqttd-$1"
    echo "$ROOT/$BASE/mqttd-$1"
}
if [ "$BUILD" = 1 ]; then
    ON=$(build on)
    OFF=$(build off)
else
    ON=$ROOT/$BASE/mqttd-on
    OFF=$ROOT/$BASE/mqttd-off
fi
BENCH=$ON   # the load generator is the same binary for both

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# One broker run under callgrind with N messages per publisher; prints its total Ir.
# TRANSPORT is tcp or quic; CONFIG an optional YAML file for the broker.
run() {  # binary count transport [config]
    local port out pid args bench_args
    port=$(free_port)
    out=$(mktemp "$BASE/callgrind.XXXXXX")
    args=(--admin off --in-memory --data-dir "$BASE/data")
    bench_args=()
    if [ "$3" = quic ]; then
        args+=(--tcp off --quic 127.0.0.1:"$port")
        bench_args=(--transport quic --insecure)
    else
        args+=(--tcp 127.0.0.1:"$port" --quic off)
    fi
    [ -n "${4:-}" ] && args+=(-c "$4")
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" "${args[@]}" > "$out.log" 2>&1 &
    pid=$!
    # Ready once the broker logs its listener (valgrind starts slowly).
    for _ in $(seq 600); do
        grep -q "listening for MQTT" "$out.log" 2>/dev/null && break
        sleep 0.1
    done
    "$BENCH" bench fan-in -p "$port" "${bench_args[@]}" -c "$PUBLISHERS" -q 1 -n "$2" -r "$RATE" \
        -V 311 > "$out.bench" 2>&1
    kill -INT "$pid"
    wait "$pid" || true
    grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}

# Instructions per message between a SMALL and a LARGE run.
per_message() {  # label binary transport [config]
    local small large per
    small=$(run "$2" "$SMALL" "$3" "${4:-}")
    large=$(run "$2" "$LARGE" "$3" "${4:-}")
    per=$(python3 -c "print(round(($large - $small) / ($PUBLISHERS * ($LARGE - $SMALL)), 1))")
    echo "| $1 | $small | $large | $per |" | tee -a "$OUT"
}

QLOG_CONFIG=$BASE/qlog.yaml
printf 'quic:\n  qlog_dir: %s\n' "$ROOT/$BASE/qlog" > "$QLOG_CONFIG"
{
    echo "| broker | Ir, $SMALL msg/publisher | Ir, $LARGE msg/publisher | instructions per message |"
    echo "|---|---|---|---|"
} > "$OUT"
for _ in $(seq "$REPEAT"); do
    per_message "TCP, metrics on" "$ON" tcp
    per_message "TCP, metrics off (metrics-off.patch)" "$OFF" tcp
    per_message "QUIC, qlog off" "$ON" quic
    per_message "QUIC, qlog on (every connection)" "$ON" quic "$QLOG_CONFIG"
done
rm -rf "$BASE/qlog"
cat "$OUT"
