#!/usr/bin/env bash
# Connection set-up time for browsers (issue 14): MQTT.js in Chromium over WebTransport (the
# QUIC port, examples/mqtt-webtransport.js) against MQTT.js over WebSocket + TLS (wss), over a
# link with a fixed one-way delay, alternating rounds (benches/webtransport_setup.cjs).
#
# The broker runs in one network namespace, Chromium in another; between them a user-space
# link (benches/tun_delay.py: a TUN device in each namespace) delays every IP packet, TCP's
# handshake included, by --delay-ms each way (tc netem is not available here).
#
#   sudo benches/webtransport_setup.sh                  # one-way delays 0 10 25 ms, 20 rounds
#   options: --delays "0 10 25" --rounds N --out FILE (target/bench/webtransport_setup.md)
#            MQTTD=path (default target/release/mqttd, built if missing)
#
# Needs root (ip netns, /dev/net/tun), node, Chromium and target/node/node_modules
# (playwright-core, mqtt: tests/run-all.sh installs them).
set -euo pipefail

cd "$(dirname "$0")/.."
DELAYS="0 10 25"
ROUNDS=20
OUT=target/bench/webtransport_setup.md
while [ $# -gt 0 ]; do
    case "$1" in
        --delays) DELAYS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "webtransport_setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "webtransport_setup.sh: needs root for ip netns and /dev/net/tun" >&2
    exit 1
fi
MQTTD=${MQTTD:-target/release/mqttd}
if [ ! -x "$MQTTD" ]; then
    cargo build --release --bin mqttd
fi
MQTTD=$(realpath "$MQTTD")
NODE_MODULES=${MQTTD_TEST_NODE_MODULES:-$PWD/target/node/node_modules}
CHROMIUM=${MQTTD_TEST_CHROMIUM:-/usr/lib/chromium/chromium}
NS_B=mqttd-bench-broker
NS_C=mqttd-bench-client
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$(dirname "$OUT")"
cat > "$WORK/mqttd.yaml" <<YAML
listeners:
  tcp: 10.77.0.2:1883
  quic: 10.77.0.2:1884
  ws: 10.77.0.2:8083
  wss: 10.77.0.2:8084
quic:
  webtransport: true
  webtransport_dev_cert: true
auth:
  allow_anonymous: true
log:
  level: warn
YAML

{
    echo "| one-way delay | WebTransport ready | WebTransport CONNACK | WebSocket+TLS ready | WebSocket+TLS CONNACK |"
    echo "|---|---|---|---|---|"
} > "$OUT"
for delay in $DELAYS; do
    ip netns add "$NS_B"
    ip netns add "$NS_C"
    ip netns exec "$NS_B" ip link set lo up
    ip netns exec "$NS_C" ip link set lo up
    python3 benches/tun_delay.py "$NS_C" "$NS_B" "$delay" > "$WORK/relay.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q ready "$WORK/relay.out" && break; sleep 0.1; done
    ip netns exec "$NS_C" ip addr add 10.77.0.1/24 dev tundly0
    ip netns exec "$NS_C" ip link set tundly0 up
    ip netns exec "$NS_B" ip addr add 10.77.0.2/24 dev tundly1
    ip netns exec "$NS_B" ip link set tundly1 up
    rm -rf "$WORK/data"
    ip netns exec "$NS_B" "$MQTTD" -c "$WORK/mqttd.yaml" --admin off --data-dir "$WORK/data" \
        > "$WORK/broker.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        ip netns exec "$NS_C" bash -c 'exec 3<>/dev/tcp/10.77.0.2/8083' 2>/dev/null && break
        sleep 0.1
    done
    config=$(printf '{"node_modules":"%s","chromium":"%s","host":"10.77.0.2","quic_port":1884,"wss_port":8084,"ws_port":8083,"rounds":%s}' \
        "$NODE_MODULES" "$CHROMIUM" "$ROUNDS")
    result=$(ip netns exec "$NS_C" node benches/webtransport_setup.cjs "$config")
    echo "delay $delay ms: $result" | tee -a "${OUT%.md}.jsonl"
    python3 - "$delay" "$result" >> "$OUT" <<'PY'
import json, sys
delay, r = sys.argv[1], json.loads(sys.argv[2])
cell = lambda s: f"{s['median']:.0f} ms (p90 {s['p90']:.0f})"
wt, ws = r["webtransport"], r["websocket_tls"]
print(f"| {delay} ms | {cell(wt['ready_ms'])} | {cell(wt['connected_ms'])} | {cell(ws['ready_ms'])} | {cell(ws['connected_ms'])} |")
PY
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    ip netns del "$NS_B"
    ip netns del "$NS_C"
done
cat "$OUT"
