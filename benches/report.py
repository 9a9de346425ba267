#!/usr/bin/env python3
"""Turns the JSON lines of benches/compare.sh into Markdown tables.

    report.py RESULTS.jsonl OUT.md --command CMD --rounds N --elapsed SECS --versions TEXT

Each line is {"round", "scenario", "broker", "report": <mqttd bench --json>} or, for a failed
measurement, {"round", "scenario", "broker", "error"}. Every figure in the tables is the median
over the rounds of that figure (so one row's figures may come from different rounds).
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
from collections import defaultdict

MESSAGE_SCENARIOS = [
    ("fan-in-q0", "fan-in, 4 publishers -> 1 subscriber, QoS 0"),
    ("fan-in-q1", "fan-in, 4 publishers -> 1 subscriber, QoS 1"),
    ("fan-out-q0", "fan-out, 1 publisher -> N subscribers, QoS 0"),
    ("fan-out-q1", "fan-out, 1 publisher -> N subscribers, QoS 1"),
    ("latency-q1", "10 pairs at 500 msg/s each, QoS 1"),
]
CONNECTION_SCENARIOS = [
    ("idle-tcp", "idle connections held (TCP)"),
    ("conn-rate", "connection storm (TCP)"),
    ("idle-tcp-many", "up to 50,000 idle connections (TCP, as the fd limit allows)"),
]
# (TCP scenario, QUIC scenarios) of mqttd.
QUIC_PAIRS = [
    ("fan-in-q1", ["fan-in-q1-quic", "fan-in-q1-quic-multi"]),
    ("fan-out-q1", ["fan-out-q1-quic", "fan-out-q1-quic-multi"]),
    ("idle-tcp", ["idle-quic"]),
    ("conn-rate", ["conn-rate-quic", "conn-rate-mqtts"]),
]
BROKER_ORDER = ["mqttd", "mosquitto", "rumqttd"]


def dig(report, *path):
    """report[path[0]][path[1]]..., or None where anything is missing."""
    value = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


METRICS = {
    "msg_s": lambda r: dig(r, "delivery", "rate_per_s") or dig(r, "publish", "rate_per_s"),
    "lost": lambda r: dig(r, "delivery", "lost"),
    "p50": lambda r: dig(r, "delivery", "latency_us", "p50"),
    "p99": lambda r: dig(r, "delivery", "latency_us", "p99"),
    "cpu_msg": lambda r: dig(r, "broker", "cpu_us_per_msg"),
    "peak_kib": lambda r: dig(r, "broker", "rss_peak_kib"),
    "conn_s": lambda r: dig(r, "connections", "rate_per_s"),
    "failed": lambda r: dig(r, "connections", "failed"),
    "setup_p50": lambda r: dig(r, "connections", "setup_us", "p50"),
    "setup_p99": lambda r: dig(r, "connections", "setup_us", "p99"),
    "kib_conn": lambda r: dig(r, "idle", "rss_per_connection_kib"),
    "cpu_conn": lambda r: dig(r, "broker", "cpu_us_per_connection"),
    "gen_cpu": lambda r: dig(r, "generator", "cpu_s"),
    "description": lambda r: r.get("description"),
}


def load(path):
    """{(scenario, broker): {"reports": [...], "errors": [...]}}"""
    runs = defaultdict(lambda: {"reports": [], "errors": []})
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            entry = json.loads(line)
            key = (entry["scenario"], entry["broker"])
            if "report" in entry:
                runs[key]["reports"].append(entry["report"])
            else:
                runs[key]["errors"].append(entry.get("error", "failed"))
    return runs


def medians(run):
    """The median of each metric over a scenario's reports (None when never measured)."""
    out = {}
    for name, get in METRICS.items():
        values = [get(r) for r in run["reports"]]
        values = [v for v in values if v is not None]
        if name == "description":
            out[name] = values[0] if values else None
        else:
            out[name] = statistics.median(values) if values else None
    out["rounds"] = len(run["reports"])
    out["errors"] = len(run["errors"])
    return out


def num(value, digits=0, suffix=""):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}{suffix}"
    return f"{value:,.{digits}f}{suffix}"


def micros(value):
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.0f} µs"
    if value < 1_000_000:
        return f"{value / 1000:.1f} ms"
    return f"{value / 1e6:.2f} s"


def ratio(value, base):
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}x"


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f}"


def brokers_of(runs, scenario):
    present = {b for (s, b) in runs if s == scenario}
    return [b for b in BROKER_ORDER if b in present] + sorted(present - set(BROKER_ORDER))


def failed_note(m):
    if m["errors"] and not m["rounds"]:
        return " (failed)"
    if m["errors"]:
        return f" ({m['errors']} failed)"
    return ""


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Linux {platform.release()}"


def targets(m):
    """The performance targets of issue 17, each with its measured ratio and status."""

    def get(scenario, broker, metric):
        return m.get((scenario, broker), {}).get(metric)

    def row(name, value, base, goal, at_least, fmt="{:.2f}x"):
        if value is None or not base:
            return f"| {name} | – | {goal} | not measured |"
        r = value / base
        met = r >= at_least[1] if at_least[0] == ">=" else r <= at_least[1]
        return f"| {name} | {fmt.format(r)} | {goal} | {'met' if met else 'missed'} |"

    lines = [
        "",
        "## Targets (issue 17)",
        "",
        "| target | measured | goal | status |",
        "|---|---:|---|---|",
    ]
    for s, title in [("fan-out-q0", "fan-out QoS 0"), ("fan-out-q1", "fan-out QoS 1"),
                     ("fan-in-q0", "fan-in QoS 0"), ("fan-in-q1", "fan-in QoS 1")]:
        lines.append(row(f"{title} msg/s, mqttd / rumqttd", get(s, "mqttd", "msg_s"),
                         get(s, "rumqttd", "msg_s"), ">= 1.5x", (">=", 1.5)))
    lines.append(row("fan-out QoS 0 broker peak RSS, mqttd / rumqttd",
                     get("fan-out-q0", "mqttd", "peak_kib"), get("fan-out-q0", "rumqttd", "peak_kib"),
                     "<= 1.0x", ("<=", 1.0)))
    for tcp, quic, title in [("fan-in-q1", "fan-in-q1-quic", "fan-in QoS 1"),
                             ("fan-out-q1", "fan-out-q1-quic", "fan-out QoS 1")]:
        lines.append(row(f"{title} msg/s, QUIC single-stream / TCP", get(quic, "mqttd", "msg_s"),
                         get(tcp, "mqttd", "msg_s"), ">= 0.9x", (">=", 0.9)))
        lines.append(row(f"{title} broker CPU per message, QUIC / TCP",
                         get(quic, "mqttd", "cpu_msg"), get(tcp, "mqttd", "cpu_msg"),
                         "<= 1.3x", ("<=", 1.3)))
    lines.append(row("connections accepted per second, QUIC / MQTTS",
                     get("conn-rate-quic", "mqttd", "conn_s"), get("conn-rate-mqtts", "mqttd", "conn_s"),
                     ">= 1.0x", (">=", 1.0)))
    idle = get("idle-quic", "mqttd", "kib_conn")
    lines.append(row("RSS per idle QUIC connection, KiB", idle, 1.0, "<= 20 KiB", ("<=", 20.0),
                     fmt="{:.1f} KiB"))
    lost = [x["lost"] for (s, b), x in m.items() if x.get("lost")]
    lines.append(f"| messages lost, every scenario | {sum(lost):,.0f} | 0 | "
                 f"{'met' if not lost else 'missed'} |")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("out")
    parser.add_argument("--command", default="benches/compare.sh")
    parser.add_argument("--rounds", default="?")
    parser.add_argument("--elapsed", default="?")
    parser.add_argument("--versions", default="")
    args = parser.parse_args()

    runs = load(args.results)
    m = {key: medians(run) for key, run in runs.items()}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# mqttd benchmark: mqttd vs mosquitto vs rumqttd",
        "",
        f"- date: {now}",
        f"- machine: {machine()}; brokers and the load generator (`mqttd bench`) share it, on loopback",
        f"- versions: {args.versions}",
        f"- command: `{args.command}` ({args.rounds} round(s), {args.elapsed} s); "
        "each figure is the median over the rounds",
        "- MQTT 3.1.1, 100-byte payloads; a fresh broker per measurement with its defaults, except: "
        "queue limits raised (mqttd max_queued_messages 1000000, mosquitto max_queued_messages 0, "
        "rumqttd's commit log as is), 100 QoS 1/2 messages in flight toward a subscriber for all "
        "three, rumqttd next_connection_delay_ms 0 (see benches/compare.sh)",
        "- msg/s: distinct messages delivered per second, from the first publish to the last "
        "delivery; latency: publish to delivery (payload timestamp); CPU: the broker's user + "
        "system time per delivered message; RSS per idle connection: broker VmRSS growth / "
        "connections after holding them idle",
        "",
    ]

    lines += [
        "## Messages",
        "",
        "| scenario | broker | msg/s | vs mosquitto | lost | latency p50 | latency p99 "
        "| broker CPU µs/msg | broker peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, title in MESSAGE_SCENARIOS:
        base = m.get((scenario, "mosquitto"), {}).get("msg_s")
        for broker in brokers_of(runs, scenario):
            x = m[(scenario, broker)]
            lines.append(
                f"| {title} | {broker}{failed_note(x)} | {num(x['msg_s'])} | {ratio(x['msg_s'], base)} "
                f"| {num(x['lost'])} | {micros(x['p50'])} | {micros(x['p99'])} "
                f"| {num(x['cpu_msg'], 2)} | {mib(x['peak_kib'])} |"
            )
    lines += [
        "",
        "## Connections",
        "",
        "| scenario | broker | connections/s | vs mosquitto | setup p50 | setup p99 | failed "
        "| RSS per idle connection KiB | vs mosquitto | broker CPU µs/connection |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, title in CONNECTION_SCENARIOS:
        base = m.get((scenario, "mosquitto"), {})
        for broker in brokers_of(runs, scenario):
            x = m[(scenario, broker)]
            lines.append(
                f"| {title} | {broker}{failed_note(x)} | {num(x['conn_s'])} "
                f"| {ratio(x['conn_s'], base.get('conn_s'))} | {micros(x['setup_p50'])} "
                f"| {micros(x['setup_p99'])} | {num(x['failed'])} | {num(x['kib_conn'], 2)} "
                f"| {ratio(x['kib_conn'], base.get('kib_conn'))} | {num(x['cpu_conn'], 1)} |"
            )
    lines += [
        "",
        "## mqttd: QUIC against TCP",
        "",
        "| scenario | transport | msg/s or connections/s | vs TCP | latency p50 | latency p99 "
        "| broker CPU µs/msg | RSS per idle connection KiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tcp, quics in QUIC_PAIRS:
        base = m.get((tcp, "mqttd"))
        if base is None:
            continue
        for scenario in [tcp] + quics:
            x = m.get((scenario, "mqttd"))
            if x is None:
                continue
            transport = "TCP"
            if scenario.endswith("mqtts"):
                transport = "MQTTS (TCP + TLS 1.3)"
            elif scenario != tcp:
                transport = "QUIC multi-stream" if scenario.endswith("multi") else "QUIC single-stream"
            idle = scenario.startswith("idle") or scenario.startswith("conn-rate")
            rate = x["conn_s"] if idle else x["msg_s"]
            base_rate = base["conn_s"] if idle else base["msg_s"]
            lines.append(
                f"| {tcp} | {transport}{failed_note(x)} | {num(rate)} | {ratio(rate, base_rate)} "
                f"| {micros(x['p50'])} | {micros(x['p99'])} | {num(x['cpu_msg'], 2)} "
                f"| {num(x['kib_conn'], 2)} |"
            )
    lines += targets(m)
    lines += ["", "Scenarios as run:", ""]
    seen = set()
    for (scenario, _broker), x in sorted(m.items()):
        if scenario in seen or not x["description"]:
            continue
        seen.add(scenario)
        # The generator's figures, so a reader can tell when it, not the broker, was the limit.
        gen = [m[(s, b)]["gen_cpu"] for (s, b) in m if s == scenario and m[(s, b)]["gen_cpu"] is not None]
        gen_note = f" (generator CPU {min(gen):.2f}-{max(gen):.2f} s)" if gen else ""
        # Without the broker's address (a free port per run).
        description = re.sub(r" to \S+:\d+:", ":", x["description"])
        lines.append(f"- `{scenario}`: {description}{gen_note}")
    lines.append("")

    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
