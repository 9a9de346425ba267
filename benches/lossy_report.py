#!/usr/bin/env python3
"""The Markdown table of benches/lossy.sh from its raw reports (one JSON object per line):
lossy_report.py RAW.jsonl OUT.md DURATION RATE DELAY_MS ACK_DELAY_MS"""
import json, sys, datetime
raw, out, duration, rate, delay, ack_delay = sys.argv[1:7]
names = {"tcp": "TCP", "single": "QUIC single-stream", "topics": "QUIC per-topic streams",
         "datagram": "QUIC datagrams"}
def ms(us):
    return "–" if us is None else f"{us / 1000:.1f} ms"
rows = []
for line in open(raw):
    r = json.loads(line)
    d = r.get("delivery") or {}
    lat = d.get("latency_us") or {}
    topics = [t["latency_us"] for t in d.get("per_topic") or [] if t.get("latency_us")]
    p50s = [t["p50"] for t in topics]
    p99s = [t["p99"] for t in topics]
    cpu = (r.get("broker") or {}).get("cpu_us_per_msg")
    rows.append("| {} | {:g} % | {} / {} | {} | {} | {} | {} | {} | {} | {} |".format(
        names.get(r["mode"], r["mode"]), r["loss_percent"], d.get("unique", 0), r.get("published") or 0,
        ms(lat.get("p50")), ms(lat.get("p90")), ms(lat.get("p99")),
        f"{ms(min(p50s))} – {ms(max(p50s))}" if p50s else "–",
        f"{ms(min(p99s))} – {ms(max(p99s))}" if p99s else "–",
        ms(lat.get("max")),
        "–" if cpu is None else f"{cpu:.1f}"))
loss_on = json.loads(open(raw).readline()).get("loss_on", "subscriber")
where = ("the subscriber's connection only (publishers connect directly)" if loss_on == "subscriber"
         else "every connection")
link = (f"one-way delay {delay} ms through a userspace relay (QUIC only)" if delay != "0"
        else "bare loopback (RTT well under 1 ms)")
with open(out, "w") as f:
    f.write(f"`benches/lossy.sh` {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
            f"8 topics x {rate} msg/s, QoS 0, 100-byte payloads, {duration} s per run, {link}; "
            f"loss on {where}; broker quic.ack_delay_ms {ack_delay}\n\n")
    f.write("| transport | loss | delivered | p50 | p90 | p99 | per-topic p50 (min – max) | per-topic p99 (min – max) | max | broker CPU µs/msg |\n")
    f.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    f.write("\n".join(rows) + "\n")
print(open(out).read())
