#!/usr/bin/env python3
"""Turns the RESULT lines of one `make bench` run into a Markdown table: Qri next to Nchan,
the ratio Qri/Nchan in each row, the issue's targets marked where they apply, and the
unpinned Qri run beside them.

Usage: report.py RESULTS.txt [MACHINE.txt]
"""
import sys


def load(path):
    rows = {}
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        rows[(fields.get("label"), fields.get("scenario"), fields.get("step"))] = fields
    return rows


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value):
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# (scenario, step, key, what, target) — target: (kind, bound) with kind
#   "ratio<=" / "ratio>=": Qri/Nchan; "abs<=": Qri's own value.
ROWS = [
    ("idle", "1000", "bytes_per_stream", "idle memory per TLS stream, 1,000 streams (bytes)", None),
    ("idle", "10000", "bytes_per_stream", "idle memory per TLS stream, 10,000 streams (bytes)", ("ratio<=", 0.4)),
    ("idle", "19000", "bytes_per_stream", "idle memory per TLS stream, 19,000 streams (bytes)", ("ratio<=", 0.4)),
    ("idle", "19000", "streams", "streams held by one process", ("abs>=", 19000)),
    ("idle", "19000", "rss_mb", "server RSS at 19,000 streams (MB)", None),
    ("targeted", "1000", "p99_us", "targeted 1k/s: p99 latency (µs)", None),
    ("targeted", "1000", "server_us_per_event", "targeted 1k/s: server CPU per event (µs)", None),
    ("targeted", "5000", "p50_us", "targeted 5k/s: p50 latency (µs)", None),
    ("targeted", "5000", "p99_us", "targeted 5k/s: p99 latency (µs)", ("abs<=", 5000)),
    ("targeted", "5000", "server_us_per_event", "targeted 5k/s: server CPU per event (µs)", None),
    ("targeted", "20000", "events_per_s", "targeted 20k/s: delivered events/s", None),
    ("targeted", "20000", "p99_us", "targeted 20k/s: p99 latency (µs)", None),
    ("targeted", "20000", "server_us_per_event", "targeted 20k/s: server CPU per event (µs)", None),
    ("targeted", "max", "events_per_s", "targeted flat out: delivered events/s", ("ratio>=", 3)),
    ("targeted", "max", "server_us_per_event", "targeted flat out: server CPU per event (µs)", None),
    ("broadcast", "10", "events_per_s", "broadcast 10/s × streams: delivered events/s", None),
    ("broadcast", "10", "last_p99_us", "broadcast 10/s: p99 to last delivery (µs)", None),
    ("broadcast", "50", "events_per_s", "broadcast 50/s: delivered events/s", None),
    ("broadcast", "50", "last_p99_us", "broadcast 50/s: p99 to last delivery (µs)", None),
    ("broadcast", "100", "events_per_s", "broadcast 100/s: delivered events/s", None),
    ("broadcast", "100", "last_p99_us", "broadcast 100/s: p99 to last delivery (µs)", None),
    ("broadcast", "100", "server_us_per_event", "broadcast 100/s: server CPU per event (µs)", None),
    ("broadcast", "max", "events_per_s", "broadcast flat out: delivered events/s", ("ratio>=", 3)),
    ("broadcast", "max", "server_us_per_event", "broadcast flat out: server CPU per event (µs)", None),
    ("handshake", "fresh", "openings_per_s", "new TLS streams: openings/s", None),
    ("handshake", "fresh", "server_us_per_open", "new TLS stream: server CPU per opening (µs)", ("ratio<=", 1)),
    ("handshake", "resumed", "openings_per_s", "resumed TLS streams: openings/s", None),
    ("handshake", "resumed", "server_us_per_open", "resumed TLS stream: server CPU per opening (µs)", ("ratio<=", 0.3)),
    ("ingest", "max", "accepted_per_s", "ingest flat out, 1 connection: messages accepted/s", None),
    ("ingest", "max", "events_per_s", "ingest flat out: delivered events/s", None),
]


def verdict(target, q, n):
    if target is None or q is None:
        return ""
    kind, bound = target
    if kind.startswith("ratio"):
        if n in (None, 0):
            return ""
        r = q / n
        ok = r <= bound if kind == "ratio<=" else r >= bound
        return f"{'✅' if ok else '❌'} {kind[5:]} {bound}×"
    ok = q <= bound if kind == "abs<=" else q >= bound
    return f"{'✅' if ok else '❌'} {kind[3:]} {bound:,}"


def main():
    rows = load(sys.argv[1])
    if len(sys.argv) > 2:
        print("```")
        print(open(sys.argv[2]).read().rstrip())
        print("```")
        print()
    print("| scenario | Qri (1 core) | Nchan (1 core) | Qri/Nchan | target | Qri unpinned |")
    print("|---|---:|---:|---:|---|---:|")
    for scenario, step, key, what, target in ROWS:
        q = num(rows.get(("qri", scenario, step), {}).get(key))
        n = num(rows.get(("nchan", scenario, step), {}).get(key))
        u = num(rows.get(("qri-unpinned", scenario, step), {}).get(key))
        if q is None and n is None and u is None:
            continue
        ratio = f"{q / n:.2f}×" if q is not None and n not in (None, 0) else "–"
        print(f"| {what} | {fmt(q)} | {fmt(n)} | {ratio} | {verdict(target, q, n)} | {fmt(u)} |")
    print()
    print("Who saturated its core in each step (server / client / both / none), and losses:")
    print()
    print("| step | Qri | Nchan | Qri unpinned |")
    print("|---|---|---|---|")
    steps = []
    for (label, scenario, step) in rows:
        if scenario != "idle" and (scenario, step) not in steps:
            steps.append((scenario, step))
    for scenario, step in steps:
        cells = []
        for label in ("qri", "nchan", "qri-unpinned"):
            r = rows.get((label, scenario, step))
            if r is None:
                cells.append("–")
                continue
            cell = f"{r.get('saturated', '?')} (srv {r.get('server_cpu_pct', '?')} %, cli {r.get('client_cpu_pct', '?')} %, others {r.get('foreign_cpu_pct', '?')} %)"
            lost = num(r.get("lost")) or 0
            if lost > 0:
                cell += f", lost {int(lost)}"
            if (num(r.get("dropped")) or 0) > 0:
                cell += f", dropped {r['dropped']} streams"
            if (num(r.get("failed")) or 0) > 0:
                cell += f", {r['failed']} failed"
            if (num(r.get("publish_errors")) or 0) > 0:
                cell += f", {r['publish_errors']} publish errors"
            cells.append(cell)
        print(f"| {scenario} {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
