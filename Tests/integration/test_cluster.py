"""Cluster mode (SPEC.md, *Cluster*): three real Qri nodes over real redis-server processes.
Messages accepted by any node reach the pair's streams on every node, exactly once and in
order; clients resume on any node; outages of Redis lose nothing that was accepted."""

import json
import time

import pytest

from qri_http import Deadline, wait_until
from qri_ingest import ber_frame


def start_nodes(admin_qri, redis_urls, n=3, *extra):
    args = []
    for url in redis_urls:
        args += ["--redis", url]
    nodes = [admin_qri("--admin-plaintext", *args, *extra) for _ in range(n)]
    for node in nodes:
        wait_until(lambda: node.admin_client(token=None).get("/readyz").status_code == 200, 15, "node ready")
    return nodes


def publish(node, peer, checksum, message):
    return node.admin("POST", "/publish", data={"peer": peer, "checksum": checksum, "message": message})


def test_any_node_to_every_node_exactly_once_in_order(admin_qri, redis_server):
    redis = redis_server()
    a, b, c = start_nodes(admin_qri, [redis.url])
    streams = [node.stream("u1", "cs") for node in (a, b, c)]
    other = b.stream("u1", "other")
    qripy = a.qripy()
    for i in range(5):
        qripy.send(b"u1", b"cs", f"from A {i}".encode())
    resp = publish(b, "u1", "cs", "from B")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"id", "nodes"} and body["nodes"] == 3, body
    for stream in streams:
        got = [e for e in stream.collect_until(lambda e: e.data == "from B", timeout=10) if not e.is_tick]
        froms = [e.data for e in got]
        assert froms[-1] == "from B"
        assert [d for d in froms if d.startswith("from A")] == [f"from A {i}" for i in range(5)], froms
        ids = [e.id_int for e in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert int(body["id"], 16) == ids[-1]
    # Another pair's stream got none of them.
    publish(c, "u1", "other", "only for other")
    assert [e.data for e in other.collect_until(lambda e: e.data == "only for other") if not e.is_tick] == ["only for other"]


def test_resume_on_another_node_gets_exactly_what_was_missed(admin_qri, redis_server):
    redis = redis_server()
    a, _, c = start_nodes(admin_qri, [redis.url], 3, "--history", "4")
    stream = a.stream("r", "x")
    publish(a, "r", "x", "seen")
    last = stream.wait_data("seen").id
    stream.close()
    for i in range(3):
        publish(c, "r", "x", f"missed {i}")
    resumed = c.stream("r", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    got = resumed.collect_until(lambda e: e.data == "missed 2")
    assert got[0].is_tick and got[0].id == last
    assert [e.data for e in got if not e.is_tick] == ["missed 0", "missed 1", "missed 2"]
    assert all(e.event != "gap" for e in got)
    # Trimmed by length: five more while away, history keeps four → a gap, then the four.
    last = got[-1].id
    resumed.close()
    for i in range(5):
        publish(a, "r", "x", f"later {i}")
    again = a.stream("r", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    got = again.collect_until(lambda e: e.data == "later 4")
    assert [e.event for e in got if e.event == "gap"] == ["gap"]
    assert [e.data for e in got if not e.is_tick and e.event != "gap"] == [f"later {i}" for i in range(1, 5)]


def test_redis_restart_loses_nothing_accepted_and_delivery_resumes(admin_qri, redis_server):
    redis = redis_server(persist=True)
    a, b, _ = start_nodes(admin_qri, [redis.url], 3, "--redis-timeout", "0.3")
    stream = a.stream("o", "x")
    publish(b, "o", "x", "before")
    stream.wait_data("before")
    redis.kill()
    wait_until(lambda: b.admin_client(token=None).get("/readyz").status_code == 503, 10, "readyz 503")
    resp = publish(b, "o", "x", "during")
    assert resp.status_code == 503 and resp.headers.get("retry-after") == "1", resp.text
    ingest = b.ingest()
    ingest.frames(ber_frame("o", "x", "queued on ingest"))
    time.sleep(0.3)
    redis.restart(keep_data=True)
    wait_until(lambda: b.admin_client(token=None).get("/readyz").status_code == 200, 15, "readyz back")
    got = stream.collect_until(lambda e: e.data == "queued on ingest", timeout=15)
    assert [e.data for e in got if not e.is_tick and e.event != "gap"] == ["queued on ingest"]
    publish(b, "o", "x", "after")
    stream.wait_data("after", timeout=10)
