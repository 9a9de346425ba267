#!/usr/bin/env bash
# The cost of the cluster: the same load on one node, then spread over 2 and 3 mqttd nodes
# joined by one NATS JetStream server, all on this machine.
#
#   benches/cluster.sh [--quick] [--rounds N] [--nodes 1,2,3] [--out DIR]
#
# Layouts:
#   single     one mqttd without --cluster (no NATS at all): the baseline
#   cluster-1  one mqttd with --cluster: publisher and subscribers on the same node, so QoS 1/2
#              still wait for the JetStream ack (the NATS hop's price without a second node)
#   cluster-N  N mqttd nodes with --cluster: `mqttd bench -p P1,P2,...` puts subscriber j on
#              node j mod N and publisher i on node (i + 1) mod N, so most deliveries cross
#              nodes (all of them with one publisher and N = 2)
# Scenarios: fan-in (4 publishers -> 1 subscriber) and fan-out (1 publisher -> 20 subscribers)
# at QoS 0 and 1, full speed; latency (10 pairs at 200 msg/s, QoS 1). CPU per message is the
# CPU time of every mqttd node and of nats-server together (from /proc), divided by the
# messages delivered: what the whole installation spends per delivery.
#
# Needs Debian's nats-server (installed when missing). MQTTD=PATH uses that binary instead of
# building target/release/mqttd. Writes OUT/results.jsonl and prints a
# Markdown table (OUT/cluster.md). Numbers in README "Cluster" come from this script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
QUICK=0
ROUNDS=1
NODES="1,2,3"
OUT="$ROOT/target/bench-cluster"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --nodes) NODES=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "$QUICK" = 1 ]; then
    FAN_IN="-n 5000"; FAN_OUT="-c 20 -n 1000"; LAT="-d 3"
else
    FAN_IN="-n 20000"; FAN_OUT="-c 20 -n 5000"; LAT="-d 10"
fi
SCENARIOS=(
    "fan-in-q0|fan-in -c 4 -q 0 -s 100 $FAN_IN"
    "fan-in-q1|fan-in -c 4 -q 1 -s 100 $FAN_IN"
    "fan-out-q0|fan-out -q 0 -s 100 $FAN_OUT"
    "fan-out-q1|fan-out -q 1 -s 100 $FAN_OUT"
    "latency-q1|pairs -c 10 -q 1 -s 100 -r 200 $LAT"
)

NATS=$(type -P nats-server || echo /usr/sbin/nats-server)
if [ ! -x "$NATS" ]; then
    say "installing Debian's nats-server"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null
    NATS=/usr/sbin/nats-server
fi
if [ -z "${MQTTD:-}" ]; then
    say "building mqttd (release)"
    cargo build --release --quiet --bin mqttd
    MQTTD="$ROOT/target/release/mqttd"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK="$OUT/work"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) of the given pids, summed.
cpu_of() {
    local total=0 pid ticks
    for pid in "$@"; do
        ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + ticks))
    done
    python3 -c "import os; print($total / os.sysconf('SC_CLK_TCK'))"
}

PIDS=()
NATS_PID=""
PORTS=()
stop_all() {
    for pid in "${PIDS[@]}" $NATS_PID; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $NATS_PID; do wait "$pid" 2>/dev/null || true; done
    PIDS=(); NATS_PID=""; PORTS=()
}
trap stop_all EXIT

start_layout() { # single | cluster-N
    local layout=$1 n=1 url="" i port dir
    rm -rf "$WORK"; mkdir -p "$WORK"
    if [ "$layout" != single ]; then
        n=${layout#cluster-}
        port=$(free_port)
        "$NATS" -a 127.0.0.1 -p "$port" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
        NATS_PID=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        url="nats://127.0.0.1:$port"
    fi
    for i in $(seq "$n"); do
        dir="$WORK/node$i"
        mkdir -p "$dir"
        cat >"$dir/mqttd.yaml" <<EOF
listeners:
  tcp: 127.0.0.1:0
  quic: null
admin:
  listen: null
limits:
  max_queued_messages: 1000000
  max_queued_bytes: 1073741824
  max_inflight: 100
  max_connections_per_address: 0
log:
  level: warn
EOF
        local cluster=()
        [ -n "$url" ] && cluster=(--cluster "$url" --cluster-node "node$i")
        "$MQTTD" --config "$dir/mqttd.yaml" --in-memory --listening-file "$dir/listening" \
            "${cluster[@]}" >"$dir/log" 2>&1 &
        PIDS+=($!)
        for _ in $(seq 200); do [ -s "$dir/listening" ] && break; sleep 0.05; done
        if [ ! -s "$dir/listening" ]; then
            say "node$i did not start:"; cat "$dir/log" >&2; exit 1
        fi
        PORTS+=("$(awk '$1 == "tcp" {split($2, a, ":"); print a[length(a)]}' "$dir/listening")")
    done
}

IFS=, read -r -a NODE_COUNTS <<<"$NODES"
LAYOUTS=(single)
for n in "${NODE_COUNTS[@]}"; do LAYOUTS+=("cluster-$n"); done

for round in $(seq "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        for layout in "${LAYOUTS[@]}"; do
            start_layout "$layout"
            ports=$(IFS=,; echo "${PORTS[*]}")
            before=$(cpu_of "${PIDS[@]}" $NATS_PID)
            say "round $round: $name on $layout (ports $ports)"
            # shellcheck disable=SC2086 # the scenario's arguments are words
            if report=$("$MQTTD" bench $args -p "$ports" --json --quiet 2>"$WORK/bench.err"); then
                after=$(cpu_of "${PIDS[@]}" $NATS_PID)
                python3 - "$round" "$name" "$layout" "$before" "$after" "$report" >>"$RESULTS" <<'EOF'
import json, sys
round_, name, layout, before, after, report = sys.argv[1:]
r = json.loads(report)
delivered = (r.get("delivery") or {}).get("unique") or 0
cpu = float(after) - float(before)
print(json.dumps({"round": int(round_), "scenario": name, "layout": layout, "cpu_s": cpu,
                  "cpu_us_per_msg": cpu * 1e6 / delivered if delivered else None, "report": r}))
EOF
            else
                say "failed: $(tail -3 "$WORK/bench.err")"
                printf '{"round": %s, "scenario": "%s", "layout": "%s", "error": true}\n' \
                    "$round" "$name" "$layout" >>"$RESULTS"
            fi
            stop_all
        done
    done
done

python3 - "$RESULTS" "$OUT/cluster.md" "${LAYOUTS[@]}" <<'EOF'
import json, statistics, sys
from collections import defaultdict
results, out, layouts = sys.argv[1], sys.argv[2], sys.argv[3:]
cells = defaultdict(list)
for line in open(results):
    row = json.loads(line)
    cells[(row["scenario"], row["layout"])].append(row)
def med(rows, f):
    values = [v for v in (f(r) for r in rows) if v is not None]
    return statistics.median(values) if values else None
def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "msg/s":
        return f"{v/1000:.0f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "ms":
        return f"{v/1000:.2f}"
    return f"{v:.1f}"
lines = ["| scenario | layout | msg/s | lost | p50 ms | p99 ms | CPU µs/msg (all processes) |",
         "|---|---|---:|---:|---:|---:|---:|"]
for scenario in dict.fromkeys(s for s, _ in cells):
    for layout in layouts:
        rows = [r for r in cells.get((scenario, layout), []) if "report" in r]
        if not rows:
            lines.append(f"| {scenario} | {layout} | failed | | | | |")
            continue
        d = lambda r: r["report"].get("delivery") or {}
        rate = med(rows, lambda r: d(r).get("rate_per_s"))
        lost = med(rows, lambda r: d(r).get("lost"))
        p50 = med(rows, lambda r: (d(r).get("latency_us") or {}).get("p50"))
        p99 = med(rows, lambda r: (d(r).get("latency_us") or {}).get("p99"))
        cpu = med(rows, lambda r: r.get("cpu_us_per_msg"))
        lines.append(f"| {scenario} | {layout} | {fmt(rate, 'msg/s')} | {fmt(lost) if lost is None else int(lost)} "
                     f"| {fmt(p50, 'ms')} | {fmt(p99, 'ms')} | {fmt(cpu)} |")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
EOF
