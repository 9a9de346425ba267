#!/usr/bin/env bash
# Lossy-link benchmark (issue 4, section 5): 8 publishers, each on its own topic, at a steady
# rate, to one subscriber on TOPIC/#, with random packet loss; per-topic delivery latency and
# broker CPU per message for TCP, QUIC single-stream, QUIC per-topic server streams and QUIC
# datagrams.
#
# Everything runs in a network namespace of its own (broker, load generator, relay), on its
# loopback interface. The subscriber (`mqttd bench sub`, one client on TOPIC/#) reaches the
# broker through a relay port (examples/delay_relay.rs); the 8 publishers (`mqttd bench pub`,
# one connection and topic each) connect directly, or through the relay too with
# --loss-on all. nftables drops N % of the packets to and from the relay port at the input
# hook (so the sender does not learn of the drop, as on a real link), in both directions.
# netem is not available here (no sch_netem), so a delay (--delay-ms) comes from the relay:
# QUIC only, since the TCP relay terminates TCP and would hide the delay from the lossy leg.
#
#   sudo benches/lossy.sh                      # 0/1/5 % loss, bare loopback, all transports
#   sudo benches/lossy.sh --delay-ms 10        # QUIC modes through a 10 ms (each way) relay
#   options: --duration SECS (10) --rate MSG_PER_S_PER_TOPIC (100) --loss "0 1 5"
#            --modes "tcp single topics datagram" --loss-on subscriber|all (subscriber)
#            --ack-delay-ms N (the broker's quic.ack_delay_ms; default: its default)
#            --out FILE (target/bench/lossy.md) --no-build; MQTTD=path overrides the binary
#
# Needs root (ip netns, nft); installs nftables and iproute2 with apt-get when missing.
# Writes a Markdown table to --out and the raw reports (one JSON object per line) next to it.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=10
RATE=100
LOSSES="0 1 5"
MODES="tcp single topics datagram"
DELAY_MS=0
OUT=target/bench/lossy.md
BUILD=1
LOSS_ON=subscriber
ACK_DELAY_MS=
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --loss) LOSSES=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --loss-on) LOSS_ON=$2; shift 2 ;;
        --ack-delay-ms) ACK_DELAY_MS=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "lossy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$DELAY_MS" != 0 ] && [[ " $MODES " == *" tcp "* ]]; then
    echo "lossy.sh: --delay-ms applies to QUIC only (no transparent TCP delay without netem); dropping tcp from --modes" >&2
    MODES=$(echo " $MODES " | sed 's/ tcp / /; s/^ *//; s/ *$//')
fi
if [ "$(id -u)" != 0 ]; then
    echo "lossy.sh: needs root for ip netns and nft" >&2
    exit 1
fi
if ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nftables iproute2 >/dev/null
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet --bin mqttd --example delay_relay
fi
MQTTD=${MQTTD:-$PWD/target/release/mqttd}
RELAY=$PWD/target/release/examples/delay_relay
mkdir -p "$(dirname "$OUT")"
RAW=${OUT%.md}.jsonl
: > "$RAW"

NS=mqttd-lossy-$$
WORK=$(mktemp -d)
BROKER=
RELAY_PID=
cleanup() {
    [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
    [ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

# set_loss PERCENT PORT: drop PERCENT % of the packets to and from PORT (input hook).
set_loss() {
    in_ns nft flush ruleset
    [ "$1" = 0 ] && return
    in_ns nft -f - <<EOF
table inet lossy {
    chain input {
        type filter hook input priority 0; policy accept;
        th dport $2 numgen random mod 100 < $1 drop
        th sport $2 numgen random mod 100 < $1 drop
    }
}
EOF
}

for loss in $LOSSES; do
    for mode in $MODES; do
        rm -rf "$WORK/data"
        config=()
        if [ -n "$ACK_DELAY_MS" ]; then
            printf 'quic:\n  ack_delay_ms: %s\n' "$ACK_DELAY_MS" >"$WORK/mqttd.yaml"
            config=(--config "$WORK/mqttd.yaml")
        fi
        ip netns exec "$NS" "$MQTTD" "${config[@]}" --tcp 127.0.0.1:1883 --quic 127.0.0.1:1884 \
            --data-dir "$WORK/data" >"$WORK/broker.log" 2>&1 &
        BROKER=$!
        sleep 0.5
        # `ip netns exec` runs the broker in its own process; make sure this is its pid.
        if [ "$(cat /proc/$BROKER/comm 2>/dev/null)" != mqttd ]; then
            BROKER=$(pgrep -n -f -- "--data-dir $WORK/data")
        fi
        # The lossy path: a relay port in front of the broker (delay optional); the nft rules
        # drop packets to and from that port only.
        case $mode in
            tcp) kind=tcp; direct=127.0.0.1:1883; transport=(--transport tcp) ;;
            *) kind=udp; direct=127.0.0.1:1884
               transport=(--transport quic --quic-mode "$mode" --insecure) ;;
        esac
        ip netns exec "$NS" "$RELAY" "$kind" "$direct" "$DELAY_MS" >"$WORK/relay.out" &
        RELAY_PID=$!
        for _ in $(seq 50); do grep -q "^$kind " "$WORK/relay.out" && break; sleep 0.1; done
        lossy=$(awk '{print $2}' "$WORK/relay.out")
        pub_target=$direct
        [ "$LOSS_ON" = all ] && pub_target=$lossy
        set_loss "$loss" "${lossy##*:}"
        echo "loss $loss% on $LOSS_ON, $mode ..." >&2
        topic=lossy/$mode/$loss
        total=$((8 * RATE * DURATION))
        ip netns exec "$NS" "$MQTTD" bench sub -c 1 -t "$topic" -n "$total" \
            -d $((DURATION + 20)) --per-topic "${transport[@]}" -h "${lossy%:*}" -p "${lossy##*:}" \
            --broker-pid "$BROKER" --json --quiet >"$WORK/sub.json" &
        SUB=$!
        sleep 3
        ip netns exec "$NS" "$MQTTD" bench pub -c 8 -q 0 -r "$RATE" -d "$DURATION" -t "$topic" \
            "${transport[@]}" -h "${pub_target%:*}" -p "${pub_target##*:}" --json --quiet \
            >"$WORK/pub.json"
        wait "$SUB" || true
        python3 - "$WORK/sub.json" "$WORK/pub.json" "$loss" "$mode" "$DELAY_MS" "$LOSS_ON" >>"$RAW" <<'PY'
import json, sys
sub, pub = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sub["published"] = (pub.get("publish") or {}).get("completed")
sub.update(loss_percent=float(sys.argv[3]), mode=sys.argv[4], delay_ms=int(sys.argv[5]),
           loss_on=sys.argv[6])
print(json.dumps(sub))
PY
        set_loss 0
        kill "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=
        kill "$BROKER"; wait "$BROKER" 2>/dev/null || true
        BROKER=
    done
done

python3 benches/lossy_report.py "$RAW" "$OUT" "$DURATION" "$RATE" "$DELAY_MS" "${ACK_DELAY_MS:-default}"
