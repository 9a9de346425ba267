"""Scrapes a Prometheus endpoint and prints its samples as JSON, parsed by prometheus_client's
own text parser (an independent judge of mqttd's hand-written exposition).

Usage: prom_scrape.py URL [TOKEN]
Prints {"families": {name: type}, "samples": {"name{k=v,...}": value}}; labels sorted.
Exits 1 with a message when the text does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    request = urllib.request.Request(url)
    if len(sys.argv) > 2:
        request.add_header("Authorization", "Bearer " + sys.argv[2])
    with urllib.request.urlopen(request, timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    if not content_type.startswith("text/plain"):
        print(f"unexpected content type {content_type!r}", file=sys.stderr)
        sys.exit(1)
    families, samples = {}, {}
    try:
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                key = f"{s.name}{{{labels}}}" if labels else s.name
                if key in samples:
                    print(f"duplicate sample {key}", file=sys.stderr)
                    sys.exit(1)
                # JSON has no NaN or infinities: those go as text.
                value = s.value
                samples[key] = value if value == value and abs(value) != float("inf") else str(value)
    except ValueError as e:
        print(f"the exposition does not parse: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"families": families, "samples": samples}))


if __name__ == "__main__":
    main()
