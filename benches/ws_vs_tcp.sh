#!/usr/bin/env bash
# MQTT over WebSocket against MQTT over TCP (issue 14): one release broker with both
# listeners, the same fan-in load over each (`mqttd bench fan-in -c 4 -q 1`, 4 QoS 1
# publishers, 1 subscriber), alternating transports round by round so that machine load hits
# both alike. Two loads:
#   paced:     RATE msg/s per publisher for DURATION s: delivery latency p50/p99 and the
#              broker's CPU per message (below saturation, latency is the path, not a queue);
#   saturated: as fast as the publishers' inflight windows allow for DURATION s: msg/s, p99.
#
#   benches/ws_vs_tcp.sh                     # 5 rounds, 2000 msg/s per publisher, 4 s
#   options: --rounds N --rate N --duration SECS --out FILE (target/bench/ws_vs_tcp.md)
#            MQTTD=path (default target/release/mqttd, built if missing)
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=5
RATE=2000
DURATION=4
OUT=target/bench/ws_vs_tcp.md
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "ws_vs_tcp.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
MQTTD=${MQTTD:-target/release/mqttd}
[ -x "$MQTTD" ] || cargo build --release --bin mqttd
mkdir -p "$(dirname "$OUT")"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TCP=$(port)
WS=$(port)
"$MQTTD" --tcp 127.0.0.1:"$TCP" --quic off --ws 127.0.0.1:"$WS" --in-memory --admin off \
    > "${OUT%.md}.broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT
sleep 1
RAW=${OUT%.md}.jsonl
: > "$RAW"
for round in $(seq "$ROUNDS"); do
    order="tcp ws"
    [ $((round % 2)) = 0 ] && order="ws tcp"
    for transport in $order; do
        p=$TCP
        [ "$transport" = ws ] && p=$WS
        for load in paced saturated; do
            rate=()
            [ "$load" = paced ] && rate=(-r "$RATE")
            "$MQTTD" bench fan-in -p "$p" --transport "$transport" -c 4 -q 1 -d "$DURATION" \
                "${rate[@]}" --broker-pid "$BROKER" --json --quiet \
                | python3 -c "import json,sys; r=json.load(sys.stdin); r['round']=$round; r['load']='$load'; print(json.dumps(r))" \
                >> "$RAW"
        done
    done
done
python3 - "$RAW" "$ROUNDS" "$RATE" > "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, rate = sys.argv[2], int(sys.argv[3])
def pick(load, transport):
    return [r for r in rows if r["load"] == load and r["transport"] == transport]
def med(values):
    return statistics.median(values)
def spread(values, fmt):
    return f"{fmt(med(values))} ({fmt(min(values))} to {fmt(max(values))})"
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"Paced: 4 x {rate:,} msg/s QoS 1, median of {rounds} rounds (min to max):\n")
print("| transport | delivered msg/s | latency p50 | latency p99 | broker CPU per message | lost |")
print("|---|---|---|---|---|---|")
for t, name in (("tcp", "TCP"), ("ws", "WebSocket")):
    rs = pick("paced", t)
    print(f"| {name} | {med([r['delivery']['rate_per_s'] for r in rs]):,.0f} | "
          f"{spread([r['delivery']['latency_us']['p50'] for r in rs], ms)} | "
          f"{spread([r['delivery']['latency_us']['p99'] for r in rs], ms)} | "
          f"{spread([r['broker']['cpu_us_per_msg'] for r in rs], lambda v: f'{v:.1f} us')} | "
          f"{sum(r['delivery']['lost'] for r in rs)} |")
print(f"\nSaturated (as fast as 4 x 64 inflight allow), median of {rounds} rounds (min to max):\n")
print("| transport | delivered msg/s | latency p99 | broker CPU per message | lost |")
print("|---|---|---|---|---|")
for t, name in (("tcp", "TCP"), ("ws", "WebSocket")):
    rs = pick("saturated", t)
    print(f"| {name} | {spread([r['delivery']['rate_per_s'] for r in rs], lambda v: f'{v:,.0f}')} | "
          f"{spread([r['delivery']['latency_us']['p99'] for r in rs], ms)} | "
          f"{spread([r['broker']['cpu_us_per_msg'] for r in rs], lambda v: f'{v:.1f} us')} | "
          f"{sum(r['delivery']['lost'] for r in rs)} |")
PY
cat "$OUT"
