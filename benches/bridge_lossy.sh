#!/usr/bin/env bash
# Bridge over a lossy link (issue 16): an edge mqttd bridged to a central mqttd over QUIC or
# MQTTS, with random packet loss on the bridge's link; end-to-end latency at a steady rate,
# throughput, the time to resume after an address change of the edge (QUIC migration), and the
# time to resume after the central broker drops the connection (what an address change costs
# TCP at best: a reconnection; QUIC reconnects with 0-RTT).
#
# Each run is one `examples/bridge_lossy.rs` process (both brokers, the publisher at the edge
# and the subscriber at the centre, QoS 1) in a network namespace of its own, on its loopback
# interface. nftables drops N % of the packets to and from the central broker's QUIC port
# (1884) and MQTTS port (8883) at the input hook, both directions (so the sender does not learn
# of the drop, as on a real link): only the bridge's link is lossy. netem is not available here,
# so a delay (--delay-ms) comes from a userspace relay in front of the central broker; QUIC
# runs through it end to end, while the TCP relay terminates TCP (its loss recovery does not
# see the delay), as in benches/lossy.sh.
#
#   sudo benches/bridge_lossy.sh                 # QUIC and MQTTS at 0/1/5 % loss, bare loopback
#   options: --loss "0 1 5" --transports "quic mqtts" --delay-ms N (0) --rate MSG_PER_S (500)
#            --secs SECS (5) --count N (5000, the throughput phase) --out FILE
#            (target/bench/bridge_lossy.md) --no-build
#
# Needs root (ip netns, nft); installs nftables and iproute2 with apt-get when missing.
set -euo pipefail

cd "$(dirname "$0")/.."
LOSSES="0 1 5"
TRANSPORTS="quic mqtts"
DELAY_MS=0
RATE=500
SECS=5
COUNT=5000
OUT=target/bench/bridge_lossy.md
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --loss) LOSSES=$2; shift 2 ;;
        --transports) TRANSPORTS=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --count) COUNT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bridge_lossy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bridge_lossy.sh: needs root for ip netns and nft" >&2
    exit 1
fi
if ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nftables iproute2 >/dev/null
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet --example bridge_lossy
fi
BENCH=${BRIDGE_LOSSY:-$PWD/target/release/examples/bridge_lossy}
mkdir -p "$(dirname "$OUT")"
RAW=${OUT%.md}.jsonl
: > "$RAW"

NS=mqttd-bridge-lossy-$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up

# set_loss PERCENT: drop PERCENT % of the packets to and from the central broker's QUIC and
# MQTTS ports (input hook).
set_loss() {
    ip netns exec "$NS" nft flush ruleset
    [ "$1" = 0 ] && return
    ip netns exec "$NS" nft -f - <<EOF
table inet lossy {
    chain input {
        type filter hook input priority 0; policy accept;
        th dport { 1884, 8883 } numgen random mod 100 < $1 drop
        th sport { 1884, 8883 } numgen random mod 100 < $1 drop
    }
}
EOF
}

for loss in $LOSSES; do
    for transport in $TRANSPORTS; do
        set_loss "$loss"
        echo "loss $loss %, $transport ..." >&2
        ip netns exec "$NS" "$BENCH" "$transport" "$DELAY_MS" "$RATE" "$SECS" "$COUNT" \
            | python3 -c 'import json,sys; r=json.load(sys.stdin); r["loss_percent"]=float(sys.argv[1]); print(json.dumps(r))' "$loss" \
            >>"$RAW"
        set_loss 0
    done
done

python3 - "$RAW" "$OUT" "$RATE" "$SECS" "$COUNT" "$DELAY_MS" <<'PY'
import json, sys, datetime
raw, out, rate, secs, count, delay = sys.argv[1:7]
def ms(v):
    return "–" if v is None else f"{v:.1f} ms"
names = {"quic": "QUIC", "mqtts": "MQTTS (TCP + TLS)"}
rows = []
for line in open(raw):
    r = json.loads(line)
    m = r.get("migration") or {}
    resume = "–" if not m else f"{ms(m.get('resume_ms'))} (max latency {ms(m.get('max_latency_ms_within_500ms'))}, reconnects {m.get('reconnects')})"
    c = r.get("reconnect") or {}
    again = f"{ms(c.get('max_latency_ms_within_500ms'))} ({c.get('delivered')}/{c.get('published')}, 0-RTT {c.get('zero_rtt')}/{c.get('reconnects')})"
    tp = r.get("throughput_msg_s")
    rows.append(f"| {names.get(r['transport'], r['transport'])} | {r['loss_percent']:g} % | {r['delivered']} / {r['published']} | "
                f"{ms(r['p50_ms'])} | {ms(r['p90_ms'])} | {ms(r['p99_ms'])} | {ms(r['max_ms'])} | "
                f"{'–' if tp is None else f'{tp:,.0f}'} ({r['throughput_delivered']} / {r['throughput_count']}) | {resume} | {again} |")
link = f"one-way delay {delay} ms through a userspace relay" if delay != "0" else "bare loopback"
with open(out, "w") as f:
    f.write(f"`benches/bridge_lossy.sh` {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
            f"QoS 1, 100-byte payloads, latency at {rate} msg/s for {secs} s, throughput over {count} messages, {link}; "
            f"loss on the bridge's link only\n\n")
    f.write("| bridge transport | loss | delivered | p50 | p90 | p99 | max | throughput msg/s (delivered) | address change (QUIC migration): first message after, max latency | connection dropped: max latency (delivered, 0-RTT/reconnects) |\n")
    f.write("|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
    f.write("\n".join(rows) + "\n")
print(open(out).read())
PY
