#!/usr/bin/env python3
"""Turns the RESULT lines of one `make bench` run into a Markdown table: Qri next to Nchan,
the ratio Qri/Nchan in each row, the issue's targets marked where they apply, and the
unpinned Qri run beside them.

Usage: report.py RESULTS.txt [MACHINE.txt]
"""
import sys


# Scenarios with their own sections (repeated, alternating; issues 12 and 9).
REPEATED = ("publish-http", "publish-batch", "cluster", "cluster-idle")


def result_lines(path):
    """The fields of every RESULT line of a run."""
    for line in open(path):
        if line.startswith("RESULT "):
            yield dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def load(path):
    return {(f.get("label"), f.get("scenario"), f.get("step")): f for f in result_lines(path)}


def load_repeated(path):
    """{(label, scenario, step): [fields of repetition 1, 2, …]} for REPEATED scenarios."""
    rows = {}
    for fields in result_lines(path):
        if fields.get("scenario") in REPEATED:
            rows.setdefault((fields.get("label"), fields.get("scenario"), fields.get("step")), []).append(fields)
    for runs in rows.values():
        runs.sort(key=lambda f: int(f.get("rep", "0")))
    return rows


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def each(values):
    return " / ".join(fmt(v) for v in values) if values else "–"


def ratio_cell(a, b):
    pairs = [x / y for x, y in zip(a, b) if x is not None and y not in (None, 0)]
    if not pairs:
        return "–", None
    return " / ".join(f"{p:.2f}×" for p in pairs), median(pairs)


def mark(value, kind, bound):
    if value is None:
        return ""
    ok = value >= bound if kind == ">=" else value <= bound
    return f"{'✅' if ok else '❌'} {kind} {bound}"


def series(rep_rows, label, scenario, step, key):
    return [num(r.get(key)) for r in rep_rows.get((label, scenario, step), [])]


def pair(what, label_a, label_b, scenario, step, key, target=None):
    """A row of a two-column table: what, label_a's series, label_b's series, target."""
    return (what, series(ROWS_REPEATED[0], label_a, scenario, step, key),
            series(ROWS_REPEATED[0], label_b, scenario, step, key), target)


ROWS_REPEATED = [{}]


def load_cell(r):
    cell = f"{r.get('saturated', '?')} (srv {r.get('server_cpu_pct', '?')} %, cli {r.get('client_cpu_pct', '?')} %"
    if "redis_cpu_pct" in r:
        cell += f", redis {r['redis_cpu_pct']} %"
        shared = (num(r.get("redis_cpu_pct")) or 0) + (num(r.get("client_cpu_pct")) or 0)
        cell += f" [core 1: redis + cli {shared:.0f} %]"
    cell += f", others {r.get('foreign_cpu_pct', '?')} %)"
    if r.get("offered_per_s") not in (None, "max"):
        offered, sent = num(r.get("offered_per_s")), num(r.get("published_per_s"))
        if offered and sent is not None and sent < 0.98 * offered:
            cell += f", offered only {fmt(sent)}/s"
    for key, what in (("lost", "lost"), ("dropped", "dropped streams"), ("publish_errors", "publish errors")):
        if (num(r.get(key)) or 0) > 0:
            cell += f", {what} {r[key]}"
    return cell


def repeated_sections(rep_rows):
    """Each row: every repetition in order (a / b), the ratio per repetition, the median ratio."""
    ROWS_REPEATED[0] = rep_rows
    out = []
    def table(title, rows, labels):
        out.append(f"**{title}** (values per repetition, in run order; ratio of each repetition's pair, median ratio)")
        out.append("")
        out.append(f"| figure | {labels[0]} | {labels[1]} | ratio per repetition | median ratio | target |")
        out.append("|---|---:|---:|---:|---:|---|")
        for what, a, b, target in rows:
            cells, med = ratio_cell(a, b)
            verdict = mark(med, *target) if target else ""
            out.append(f"| {what} | {each(a)} | {each(b)} | {cells} | {f'{med:.2f}×' if med is not None else '–'} | {verdict} |")
        out.append("")

    def loads(scenario, labels):
        steps = []
        for (label, sc, step) in rep_rows:
            if sc == scenario and step not in steps:
                steps.append(step)
        if not steps:
            return
        out.append("| step | repetition | " + " | ".join(labels) + " |")
        out.append("|---|---|" + "---|" * len(labels))
        for step in steps:
            reps = max(len(rep_rows.get((l, scenario, step), [])) for l in labels)
            for i in range(reps):
                cells = []
                for l in labels:
                    runs = rep_rows.get((l, scenario, step), [])
                    cells.append(load_cell(runs[i]) if i < len(runs) else "–")
                out.append(f"| {scenario} {step} | {i + 1} | " + " | ".join(cells) + " |")
        out.append("")

    if any(k[1] == "publish-http" for k in rep_rows):
        s = "publish-http"
        table("HTTP publish, single `POST /publish` (Qri) vs `/pub` (Nchan)", [
            pair("flat out: delivered messages/s", "qri", "nchan", s, "max", "events_per_s", (">=", 3)),
            pair("flat out: server CPU per message (µs)", "qri", "nchan", s, "max", "server_us_per_event", None),
            pair("20k/s: delivered messages/s", "qri", "nchan", s, "20000", "events_per_s", None),
            pair("20k/s: server CPU per message (µs)", "qri", "nchan", s, "20000", "server_us_per_event", ("<=", 0.5)),
            pair("20k/s: p99 latency (µs)", "qri", "nchan", s, "20000", "p99_us", None),
        ], ("Qri", "Nchan"))
        loads(s, ("qri", "nchan"))
    if any(k[1] == "publish-batch" for k in rep_rows):
        s = "publish-batch"
        table("Batches of `POST /publish` (NDJSON) vs Qri's BER ingest port", [
            pair("flat out: delivered messages/s", "qri-batch", "qri-ingest", s, "max", "events_per_s", (">=", 0.8)),
            pair("flat out: server CPU per message (µs)", "qri-batch", "qri-ingest", s, "max", "server_us_per_event", None),
            pair("20k/s: server CPU per message (µs)", "qri-batch", "qri-ingest", s, "20000", "server_us_per_event", None),
            pair("20k/s: p99 latency (µs)", "qri-batch", "qri-ingest", s, "20000", "p99_us", None),
        ], ("batch /publish", "ingest port"))
        loads(s, ("qri-batch", "qri-ingest"))
    if any(k[1] == "cluster" for k in rep_rows):
        s = "cluster"
        rates = sorted({k[2] for k in rep_rows if k[1] == s and k[2] != "max"}, key=lambda x: float(x))
        rows = [
            pair("flat out: delivered messages/s", "qri-cluster", "qri-single", s, "max", "events_per_s", None),
            pair("flat out: Qri CPU per message (µs)", "qri-cluster", "qri-single", s, "max", "server_us_per_event", ("<=", 2)),
        ]
        for rate in rates:
            rows += [
                pair(f"{rate}/s: p50 latency (µs)", "qri-cluster", "qri-single", s, rate, "p50_us", None),
                pair(f"{rate}/s: p99 latency (µs)", "qri-cluster", "qri-single", s, rate, "p99_us", None),
                pair(f"{rate}/s: Qri CPU per message (µs)", "qri-cluster", "qri-single", s, rate, "server_us_per_event", ("<=", 2)),
            ]
        table("Cluster: one Qri node over one redis-server vs the same node alone", rows, ("cluster", "single node"))
        out.append("| cluster figure | per repetition | median | target |")
        out.append("|---|---:|---:|---|")
        flat = series(rep_rows, "qri-cluster", s, "max", "events_per_s")
        out.append(f"| flat out through Redis: messages/s | {each(flat)} | {fmt(median(flat))} | {mark(median(flat), '>=', 50000)} |")
        for step in ["max"] + rates:
            r = series(rep_rows, "qri-cluster", s, step, "redis_us_per_event")
            out.append(f"| {'flat out' if step == 'max' else step + '/s'}: redis-server CPU per message (µs) | {each(r)} | {fmt(median(r))} | |")
        for rate in rates:
            c = series(rep_rows, "qri-cluster", s, rate, "p99_us")
            n = series(rep_rows, "qri-single", s, rate, "p99_us")
            added = [x - y for x, y in zip(c, n) if x is not None and y is not None]
            target = mark(median(added), '<=', 1000) if rate == "5000" else ""
            out.append(f"| {rate}/s: added p99 (µs, cluster − single) | {each(added)} | {fmt(median(added))} | {target} |")
        out.append("")
        loads(s, ("qri-cluster", "qri-single"))
    if any(k[1] == "cluster-idle" for k in rep_rows):
        s = "cluster-idle"
        steps = sorted({k[2] for k in rep_rows if k[1] == s and k[2] != "0"}, key=lambda x: float(x))
        out.append("**Memory per idle TLS stream, single node and cluster node** (bytes of RSS per stream)")
        out.append("")
        out.append("| streams | single node | cluster node | redis-server per stream |")
        out.append("|---:|---:|---:|---:|")
        for step in steps:
            a = series(rep_rows, "qri-single", s, step, "bytes_per_stream")
            b = series(rep_rows, "qri-cluster", s, step, "bytes_per_stream")
            r = series(rep_rows, "qri-cluster", s, step, "redis_bytes_per_stream")
            out.append(f"| {int(float(step)):,} | {each(a)} | {each(b)} | {each(r)} |")
        out.append("")
    return "\n".join(out)


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
    ("storm", "baseline", "p99_us", "storm: existing streams' p99 before the storm (µs)", None),
    ("ingest", "max", "accepted_per_s", "ingest flat out, 1 connection: messages accepted/s", None),
    ("ingest", "max", "events_per_s", "ingest flat out: delivered events/s", None),
]
# The storm's two waves (issue 13): the same rows for fresh and resumed TLS.
for _mode, _cpu_target in (("fresh", None), ("resumed", ("ratio<=", 1))):
    _what = f"storm, {_mode} TLS:"
    ROWS += [
        ("storm", _mode, "all_open_s", f"{_what} seconds until all new streams are open", None),
        ("storm", _mode, "p50_us", f"{_what} existing streams' p50 meanwhile (µs)", None),
        ("storm", _mode, "p99_us", f"{_what} existing streams' p99 meanwhile (µs)", ("abs<=", 10000)),
        ("storm", _mode, "max_us", f"{_what} existing streams' max meanwhile (µs)", None),
        ("storm", _mode, "server_us_per_open_net", f"{_what} server CPU per new stream (µs)", _cpu_target),
        ("storm", _mode, "reused", f"{_what} handshakes that resumed", None),
        ("storm", _mode, "failed", f"{_what} openings failed", ("abs<=", 0)),
        ("storm", _mode, "timed_out", f"{_what} openings timed out", ("abs<=", 0)),
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


STORM_KEYS = [("all_open_s", "all open (s)"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("max_us", "max µs"),
              ("server_us_per_open_net", "srv µs/new"), ("failed", "failed"), ("timed_out", "timed out"),
              ("reused", "resumed"), ("holder_max_stall_us", "gen. stall µs")]


def storm_cell(value):
    return str(int(value)) if value is not None and value == int(value) and abs(value) < 100 else fmt(value)


def storm_section(rows):
    """The storm steps of every label (qri, nchan, qri-mhN …), one row each."""
    labels = [k for k in rows if k[1] == "storm" and k[2] != "whole"]
    if not labels:
        return
    print()
    print("Storm (existing streams' latency while the new ones open):")
    print()
    print("| label | step | " + " | ".join(title for _, title in STORM_KEYS) + " | lost |")
    print("|---|---|" + "---:|" * (len(STORM_KEYS) + 1))
    for label, scenario, step in labels:
        r = rows[(label, scenario, step)]
        lost = rows.get((label, scenario, "whole"), {}).get("lost", "?")
        print(f"| {label} | {step} | " + " | ".join(storm_cell(num(r.get(key))) for key, _ in STORM_KEYS) + f" | {lost} |")


def main():
    rows = load(sys.argv[1])
    if len(sys.argv) > 2:
        print("```")
        print(open(sys.argv[2]).read().rstrip())
        print("```")
        print()
    if any(k[1] not in REPEATED for k in rows):
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
            if scenario != "idle" and scenario not in REPEATED and (scenario, step) not in steps:
                steps.append((scenario, step))
        for scenario, step in steps:
            cells = []
            for label in ("qri", "nchan", "qri-unpinned"):
                r = rows.get((label, scenario, step))
                if r is None:
                    cells.append("–")
                    continue
                if "holder_cpu_pct" in r:
                    cell = f"srv {r.get('server_cpu_pct', '?')} %, cli {r.get('holder_cpu_pct', '?')} + {r.get('helper_cpu_pct', '?')} %, others {r.get('foreign_cpu_pct', '?')} %"
                else:
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
    storm_section(rows)
    repeated = repeated_sections(load_repeated(sys.argv[1]))
    if repeated:
        print()
        print(repeated)


if __name__ == "__main__":
    main()
