#!/usr/bin/env bash
# Compares mqttd with Debian's mosquitto and rumqttd (crates.io) on loopback, using
# `mqttd bench` as the load generator for all three.
#
#   benches/compare.sh [--quick] [--rounds N] [--brokers mqttd,mosquitto,rumqttd]
#                      [--only SCENARIO,...] [--out DIR]
#
# 1. Builds mqttd in release; installs mosquitto (apt) and rumqttd
#    (`cargo install rumqttd --root target/bench-tools`) when missing.
# 2. For each round, each scenario, each broker (in an order that rotates every round): starts
#    a fresh broker on free loopback ports with its own config (not a system service), runs
#    `mqttd bench ... --json --broker-pid PID` against it, stops it. A fresh broker per
#    measurement keeps one scenario's memory out of the next (idle memory per connection
#    needs it).
# 3. benches/report.py takes the medians over the rounds and writes
#    DIR/results.md (Markdown tables, ratios against mosquitto and, for the QUIC modes and
#    MQTTS, against mqttd over TCP, and the status of each performance target of issue 17);
#    every raw report is in DIR/results.jsonl, logs and configs in DIR/work/.
#
# Every broker speaks MQTT 3.1.1 here (rumqttd's MQTT 5 is partial). Each broker's own
# defaults, except:
# - queue limits raised, so that QoS 1 at full speed measures throughput, not overflow policies:
#   mqttd limits.max_queued_messages 1000000 (and max_queued_bytes 1 GiB; all load comes from
#   one address, so max_connections_per_address 0), mosquitto max_queued_messages 0 (no limit);
#   rumqttd keeps its commit log (10 x 100 MB segments);
# - QoS 1/2 messages in flight toward a 3.1.1 subscriber: 100 for all three (rumqttd's default
#   max_inflight_count; mqttd's max_inflight is 64 and mosquitto's max_inflight_messages 20 by
#   default);
# - rumqttd next_connection_delay_ms 0 (its sample config accepts one connection per ms).
# The generator runs on the same machine as the brokers.
#
# --quick: smaller sizes and one round (about 2 minutes on 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
COMMAND_LINE="benches/compare.sh $*"

ROUNDS=3
QUICK=0
BROKERS="mqttd,mosquitto,rumqttd"
ONLY=""
OUT="$ROOT/target/bench"
ROUNDS_GIVEN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; ROUNDS_GIVEN=1; shift ;;
        --rounds=*) ROUNDS=${1#*=}; ROUNDS_GIVEN=1 ;;
        --brokers) BROKERS=$2; shift ;;
        --brokers=*) BROKERS=${1#*=} ;;
        --only) ONLY=$2; shift ;;
        --only=*) ONLY=${1#*=} ;;
        --out) OUT=$2; shift ;;
        --out=*) OUT=${1#*=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ] && [ "$ROUNDS_GIVEN" = 0 ]; then
    ROUNDS=1
fi
case "$ROUNDS" in ''|*[!0-9]*|0) echo "compare.sh: --rounds needs a positive number" >&2; exit 2 ;; esac

say() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Scenarios ---------------------------------------------------------------------------------
# name | brokers (all, or one) | mqttd bench arguments. Sizes: full, then --quick.
if [ "$QUICK" = 1 ]; then
    FAN_IN="-n 20000"; FAN_OUT="-c 50 -n 1000"; IDLE=500; HOLD=2; CONNS=1000; LAT_DUR=3
else
    FAN_IN="-n 50000"; FAN_OUT="-c 100 -n 20000"; IDLE=1000; HOLD=5; CONNS=5000; LAT_DUR=10
fi
# Idle TCP connections held at once (the issue asks for 50,000): as many as the open-file
# hard limit (broker and generator each need one descriptor per connection; both raise their
# soft limit to it) and the ephemeral port range (one destination address) allow.
hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=1000000
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { port_lo=32768; port_hi=60999; }
MANY=50000
[ $((hard_nofile - 200)) -lt "$MANY" ] && MANY=$((hard_nofile - 200))
[ $((port_hi - port_lo - 1000)) -lt "$MANY" ] && MANY=$((port_hi - port_lo - 1000))
[ "$QUICK" = 1 ] && [ "$MANY" -gt 10000 ] && MANY=10000

SCENARIOS=(
    "fan-in-q0|all|fan-in -c 4 -q 0 -s 100 $FAN_IN"
    "fan-in-q1|all|fan-in -c 4 -q 1 -s 100 $FAN_IN"
    "fan-out-q0|all|fan-out -q 0 -s 100 $FAN_OUT"
    "fan-out-q1|all|fan-out -q 1 -s 100 $FAN_OUT"
    "latency-q1|all|pairs -c 10 -q 1 -s 100 -r 500 -d $LAT_DUR"
    "idle-tcp|all|conn -c $IDLE --hold $HOLD -k 600"
    "conn-rate|all|conn -c $CONNS --concurrency 100"
    "idle-quic|mqttd|conn -c $IDLE --hold $HOLD -k 600 --transport quic"
    "conn-rate-quic|mqttd|conn -c $CONNS --concurrency 100 --transport quic"
    "conn-rate-mqtts|mqttd|conn -c $CONNS --concurrency 100 --transport mqtts"
    "idle-tcp-many|mqttd|conn -c $MANY --hold $HOLD -k 600 --concurrency 500"
    "fan-in-q1-quic|mqttd|fan-in -c 4 -q 1 -s 100 $FAN_IN --transport quic --quic-mode single"
    "fan-in-q1-quic-multi|mqttd|fan-in -c 4 -q 1 -s 100 $FAN_IN --transport quic --quic-mode multi"
    "fan-out-q1-quic|mqttd|fan-out -q 1 -s 100 $FAN_OUT --transport quic --quic-mode single"
    "fan-out-q1-quic-multi|mqttd|fan-out -q 1 -s 100 $FAN_OUT --transport quic --quic-mode multi"
)

# --- Tools -------------------------------------------------------------------------------------
say "building mqttd (release)"
cargo build --release --quiet --bin mqttd
MQTTD="$ROOT/target/release/mqttd"

MOSQUITTO=""
for candidate in "$(type -P mosquitto || true)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then MOSQUITTO=$candidate; break; fi
done
if [ -z "$MOSQUITTO" ] && [[ ",$BROKERS," == *",mosquitto,"* ]]; then
    say "installing Debian's mosquitto"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
    MOSQUITTO=/usr/sbin/mosquitto
fi

RUMQTTD="$ROOT/target/bench-tools/bin/rumqttd"
if [ ! -x "$RUMQTTD" ] && [[ ",$BROKERS," == *",rumqttd,"* ]]; then
    # Not --locked: rumqttd's lock file pins a `metrics` release that no longer compiles.
    say "installing rumqttd into target/bench-tools (cargo install, a few minutes)"
    cargo install rumqttd --root "$ROOT/target/bench-tools" --quiet
fi

# Each connection is a file descriptor in the broker and in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK="$OUT/work"
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

free_port() { # tcp|udp
    python3 - "$1" <<'EOF'
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

# --- Brokers -----------------------------------------------------------------------------------
BROKER_PID=""
BROKER_PORT=""
BROKER_QUIC_PORT=""
BROKER_MQTTS_PORT=""

start_broker() { # name log
    local name=$1 log=$2 conf
    BROKER_PORT=$(free_port tcp)
    BROKER_QUIC_PORT=""
    BROKER_MQTTS_PORT=""
    case "$name" in
        mqttd)
            BROKER_QUIC_PORT=$(free_port udp)
            BROKER_MQTTS_PORT=$(free_port tcp)
            conf="$WORK/mqttd.yaml"
            cat >"$conf" <<EOF
listeners:
  tcp: 127.0.0.1:$BROKER_PORT
  quic: 127.0.0.1:$BROKER_QUIC_PORT
  mqtts: 127.0.0.1:$BROKER_MQTTS_PORT
limits:
  max_queued_messages: 1000000
  max_queued_bytes: 1073741824
  max_inflight: 100
  max_connections_per_address: 0
log:
  level: warn
EOF
            "$MQTTD" --config "$conf" --data-dir "$WORK/mqttd-data" >"$log" 2>&1 &
            ;;
        mosquitto)
            conf="$WORK/mosquitto.conf"
            cat >"$conf" <<EOF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 100
log_dest stderr
log_type error
log_type warning
EOF
            "$MOSQUITTO" -c "$conf" >"$log" 2>&1 &
            ;;
        rumqttd)
            conf="$WORK/rumqttd.toml"
            cat >"$conf" <<EOF
id = 0

[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$BROKER_PORT"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
            "$RUMQTTD" -q -c "$conf" >"$log" 2>&1 &
            ;;
        *) echo "compare.sh: unknown broker $name" >&2; exit 2 ;;
    esac
    BROKER_PID=$!
    local i
    for i in $(seq 100); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            say "$name exited at start; log $log:"; tail -20 "$log" >&2; return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
            # mqttd's QUIC listener (and certificate) come up with its TCP one.
            sleep 0.3
            return 0
        fi
        sleep 0.1
    done
    say "$name did not listen on $BROKER_PORT within 10 s"
    return 1
}

stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    local i
    for i in $(seq 50); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}
trap stop_broker EXIT

# --- Runs --------------------------------------------------------------------------------------
IFS=, read -r -a BROKER_LIST <<<"$BROKERS"
selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

run_one() { # round scenario broker args...
    local round=$1 scenario=$2 broker=$3
    shift 3
    local log="$WORK/$scenario.$broker.$round"
    if ! start_broker "$broker" "$log.broker.log"; then
        printf '{"round":%d,"scenario":"%s","broker":"%s","error":"the broker did not start"}\n' \
            "$round" "$scenario" "$broker" >>"$RESULTS"
        stop_broker
        return 0
    fi
    local args=(bench "$@" -h 127.0.0.1 -V 311 --json --quiet --broker-pid "$BROKER_PID")
    if [[ " $* " == *" quic "* ]]; then
        args+=(-p "$BROKER_QUIC_PORT" --cafile "$WORK/mqttd-data/cert.pem")
    elif [[ " $* " == *" mqtts "* ]]; then
        args+=(-p "$BROKER_MQTTS_PORT" --cafile "$WORK/mqttd-data/cert.pem")
    else
        args+=(-p "$BROKER_PORT")
    fi
    say "round $round/$ROUNDS  $scenario  $broker"
    local report status=0
    report=$(timeout 300 "$MQTTD" "${args[@]}" 2>"$log.bench.log") || status=$?
    if [ "$status" = 0 ] && [ -n "$report" ]; then
        printf '{"round":%d,"scenario":"%s","broker":"%s","report":%s}\n' \
            "$round" "$scenario" "$broker" "$report" >>"$RESULTS"
    else
        say "$scenario on $broker failed (exit $status); see $log.bench.log"
        printf '{"round":%d,"scenario":"%s","broker":"%s","error":"mqttd bench exited with %s"}\n' \
            "$round" "$scenario" "$broker" "$status" >>"$RESULTS"
    fi
    stop_broker
}

started=$(date +%s)
for round in $(seq "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r scenario who args <<<"$entry"
        selected "$scenario" || continue
        # Rotate the brokers' order every round, so none always runs first or last.
        n=${#BROKER_LIST[@]}
        for k in $(seq 0 $((n - 1))); do
            broker=${BROKER_LIST[$(((k + round - 1) % n))]}
            [ "$who" = all ] || [ "$who" = "$broker" ] || continue
            # shellcheck disable=SC2086 # the arguments are meant to split
            run_one "$round" "$scenario" "$broker" $args
        done
    done
done
elapsed=$(($(date +%s) - started))

# --- Report ------------------------------------------------------------------------------------
versions="mqttd $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
if [ -n "$MOSQUITTO" ]; then
    versions+=", $("$MOSQUITTO" -h 2>/dev/null | head -1 | sed 's/ version / /' || true)"
fi
if [ -x "$RUMQTTD" ]; then
    versions+=", $("$RUMQTTD" --version 2>/dev/null || true)"
fi
python3 "$ROOT/benches/report.py" "$RESULTS" "$OUT/results.md" \
    --command "$COMMAND_LINE" --rounds "$ROUNDS" --elapsed "$elapsed" --versions "$versions"
say "wrote $OUT/results.md ($elapsed s); raw reports in $RESULTS"
say "command: $COMMAND_LINE"
cat "$OUT/results.md"
