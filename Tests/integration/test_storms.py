"""Reconnect storms and draining (SPEC.md, *Reconnect storms and draining*, and the
MAX_CONNECTIONS_PER_IP and MAX_HANDSHAKES rows of *Limits and bad input*): jittered `retry:`,
per-address connection caps, handshake admission, paced drain on SIGTERM."""

import signal
import socket
import statistics
import threading
import time

import pytest

from qri_http import HOST, Deadline, StreamClosed, connect_tcp
from qri_ingest import ber_frame


def retry_of(stream) -> int:
    """The stream's `retry:` value (the field comes before its first Tick)."""
    values = [int(v) for b in stream.blocks for k, v in b if k == "retry"]
    assert len(values) == 1, stream.blocks[:3]
    return values[0]


# ---------------------------------------------------------------------------------------------
# RETRY_JITTER


def test_retry_is_spread_over_the_jitter_window(qri):
    srv = qri("--retry-jitter", "1.5")
    values = []
    for i in range(60):
        stream = srv.stream(f"p{i}", "c")
        values.append(retry_of(stream))
        stream.close()
    assert all(2000 <= v <= 3500 for v in values), values
    # 60 draws from 1,501 values: a constant or a handful of values is not uniform.
    assert len(set(values)) >= 40, values
    assert statistics.pstdev(values) > 200, values
    assert min(values) < 2500 < max(values), values


def test_default_jitter_is_three_seconds(qri):
    srv = qri()
    values = [retry_of(srv.stream(f"p{i}", "c")) for i in range(30)]
    assert all(2000 <= v <= 5000 for v in values), values
    assert len(set(values)) >= 20, values


def test_zero_jitter_gives_the_plain_retry(qri):
    srv = qri("--retry-jitter", "0")
    assert {retry_of(srv.stream(f"p{i}", "c")) for i in range(5)} == {2000}
