#!/usr/bin/env bash
# Three mqttd nodes as one broker on this machine, over one NATS JetStream server.
#
#   examples/cluster-local.sh            # starts NATS and the nodes; Ctrl-C stops them all
#
# Node 1: MQTT 127.0.0.1:1883, QUIC 1884, admin http://127.0.0.1:9884
# Node 2: MQTT 127.0.0.1:1893, QUIC 1894, admin http://127.0.0.1:9894
# Node 3: MQTT 127.0.0.1:1903, QUIC 1904, admin http://127.0.0.1:9904
# NATS:   nats://127.0.0.1:4222 (JetStream data in target/cluster-local/nats)
#
# Try it:
#   mosquitto_sub -p 1893 -t 'sensors/#' -q 1 -v &
#   mosquitto_pub -p 1883 -t sensors/kitchen -m 21.5 -q 1      # published on node 1, read on node 2
#   mqttd bench fan-in -c 4 -q 1 -p 1883,1893,1903             # load spread over the three nodes
#
# In production each node runs on its own machine beside (or near) a member of a 3-server NATS
# cluster, with `cluster.node` set (a stable name) and `cluster.replicas: 3` (README "Cluster").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR=target/cluster-local
mkdir -p "$DIR"
NATS=$(type -P nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS" ] || { echo "needs nats-server (Debian: apt-get install nats-server)" >&2; exit 1; }
cargo build --release --quiet --bin mqttd
MQTTD=target/release/mqttd

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM

"$NATS" -a 127.0.0.1 -p 4222 -js -sd "$DIR/nats" >"$DIR/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.05; done

for i in 1 2 3; do
    base=$((1873 + 10 * i))
    "$MQTTD" --cluster nats://127.0.0.1:4222 --cluster-node "node$i" \
        --tcp "127.0.0.1:$base" --quic "127.0.0.1:$((base + 1))" \
        --admin "127.0.0.1:$((base + 8001))" --data-dir "$DIR/node$i" &
    pids+=($!)
done
echo "NATS on 4222; nodes on TCP 1883, 1893, 1903 (QUIC +1, admin 9884, 9894, 9904). Ctrl-C stops."
wait
