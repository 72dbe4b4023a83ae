"""`--history-memory` bounds the whole memory of histories: event bytes and each pair's own
bookkeeping (key, slot, index entry, history storage), not the event bytes alone."""

from __future__ import annotations

import time

from qri_ingest import ber_frame

PAIRS = 1_000_000
BOUND = 16 << 20
# What RSS may grow by beyond the bound: memory that is not history. One ingest read (up to
# 1 MiB, some 58,000 of these 18-byte frames) is decoded into a batch whose arrays take
# several MiB while it is routed (3 slices of 32 bytes per message, ids, hashes, hand-offs);
# the read buffer itself; malloc's freed-but-kept chunks after a million allocations and
# frees of mixed sizes; the slot table and index growing by doubling. Measured: +15.8 MiB
# in all (50,686 pairs kept at about 331 bytes charged each); before the registry counted
# each pair's bookkeeping, RSS grew by 308 MiB here (621,378 pairs kept, 27 event bytes
# counted of about 450).
SLACK = 24 << 20


def frames(count: int, start: int = 0) -> bytes:
    """`count` frames, one one-byte message each to a distinct pair `p<i>`/`c`."""
    template = b"0\x10\x04\x08p%07d\x04\x01c\x04\x01x"
    assert template % 12 == ber_frame("p0000012", "c", "x")
    return b"".join(template % i for i in range(start, start + count))


def test_a_million_tiny_pairs_stay_within_the_history_memory_bound(admin_qri):
    srv = admin_qri("--history-memory", "16M", "--threads", "1")
    blob = frames(PAIRS)
    ingest = srv.ingest()
    ingest.send(frames(1000, start=PAIRS))      # warm up the ingest path before measuring
    srv.wait_metric("qri_messages_received_total", lambda v: v == 1000, source="ingest")
    rss_before = srv.rss_bytes()
    started = time.monotonic()
    view = memoryview(blob)
    for offset in range(0, len(blob), 1 << 20):
        ingest.send(view[offset:offset + (1 << 20)])
    srv.wait_metric("qri_messages_received_total", lambda v: v == PAIRS + 1000, timeout=40,
                    source="ingest")
    elapsed = time.monotonic() - started
    rss = srv.rss_bytes()
    pairs = srv.metric("qri_pairs")
    growth = rss - rss_before
    print(f"{PAIRS} pairs in {elapsed:.1f}s: RSS {rss_before >> 20} -> {rss >> 20} MiB "
          f"(+{growth / 2**20:.1f} MiB), qri_pairs {pairs:.0f}")
    assert growth <= BOUND + SLACK, \
        f"RSS grew by {growth / 2**20:.1f} MiB, over the 16 MiB bound + {SLACK >> 20} MiB ({pairs:.0f} pairs kept)"
    # One-byte histories cost far more than their event bytes: most pairs were evicted.
    assert pairs < PAIRS / 10, f"{pairs:.0f} pairs kept"
    # The newest pair still has its history (resumed from id 1: a gap, then its one event).
    stream = srv.stream(f"p{PAIRS - 1:07d}", "c", headers={"Last-Event-ID": "1"})
    assert stream.wait_data("x").id
    stream.close()
