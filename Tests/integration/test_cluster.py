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
    # qri-py sends from a process of its own: its messages and B's may arrive in either order.
    expected = {f"from A {i}" for i in range(5)} | {"from B"}
    for stream in streams:
        got = []
        deadline = time.monotonic() + 10
        while {e.data for e in got} != expected:
            event = stream.next_event(max(0.0, deadline - time.monotonic()))
            if not event.is_tick:
                got.append(event)
        froms = [e.data for e in got]
        assert sorted(froms) == sorted(expected), froms
        assert [d for d in froms if d.startswith("from A")] == [f"from A {i}" for i in range(5)], froms
        ids = [e.id_int for e in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert int(body["id"], 16) in ids
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


def test_two_shards_spread_pairs_and_a_node_listing_them_in_another_order_refuses_to_start(admin_qri, qri_cli, redis_server):
    r1, r2 = redis_server(), redis_server()
    a, b = start_nodes(admin_qri, [r1.url, r2.url], 2)
    pairs = [(f"p{i}", "s") for i in range(20)]
    streams = {pair: b.stream(*pair) for pair in pairs}
    for peer, checksum in pairs:
        assert publish(a, peer, checksum, f"m-{peer}").json()["nodes"] == 1
    last_ids = {pair: stream.wait_data(f"m-{pair[0]}").id for pair, stream in streams.items()}
    on_first = int(r1.cli("EVAL", "return #redis.call('KEYS', 'qri:h:*')", "0").strip())
    on_second = int(r2.cli("EVAL", "return #redis.call('KEYS', 'qri:h:*')", "0").strip())
    assert on_first + on_second == 20 and on_first > 0 and on_second > 0, (on_first, on_second)
    # Resume across nodes still works with two shards.
    stream = streams[("p3", "s")]
    last = last_ids[("p3", "s")]
    stream.close()
    publish(a, "p3", "s", "p3 again")
    resumed = a.stream("p3", "s", headers={"Last-Event-ID": last}, wait_tick=False)
    assert [e.data for e in resumed.collect_until(lambda e: e.data == "p3 again") if not e.is_tick] == ["p3 again"]
    result = qri_cli("--redis", r2.url, "--redis", r1.url, "--admin-plaintext")
    assert result.returncode != 0
    assert "another server list" in result.stderr, result.stderr


def test_a_killed_node_loses_nothing_its_clients_resume_elsewhere(admin_qri, redis_server):
    import signal
    redis = redis_server()
    a, b, c = start_nodes(admin_qri, [redis.url])
    stream = a.stream("k", "x")
    publish(b, "k", "x", "one")
    last = stream.wait_data("one").id
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    publish(b, "k", "x", "two")
    publish(c, "k", "x", "three")
    resumed = c.stream("k", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    assert [e.data for e in resumed.collect_until(lambda e: e.data == "three") if not e.is_tick] == ["two", "three"]


def test_redis_restarted_without_its_data_gives_a_gap_and_no_node_crashes(admin_qri, redis_server):
    redis = redis_server()
    a, b, _ = start_nodes(admin_qri, [redis.url])
    stream = a.stream("w", "x")
    publish(b, "w", "x", "kept before")
    last = stream.wait_data("kept before").id
    redis.restart(keep_data=False)
    wait_until(lambda: b.admin_client(token=None).get("/readyz").status_code == 200, 15, "ready again")
    # The open stream keeps ticking and gets what is published after recovery.
    wait_until(lambda: publish(b, "w", "x", "after loss").status_code == 202, 10, "publish accepted")
    stream.wait_data("after loss", timeout=10)
    # A client resuming from an id the new data set never issued gets a gap.
    resumed = b.stream("w", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    got = resumed.collect_until(lambda e: e.data == "after loss")
    assert any(e.event == "gap" for e in got), [(e.event, e.data) for e in got]
    assert a.proc.poll() is None and b.proc.poll() is None


def test_rediss_with_a_test_ca(admin_qri, redis_server, tmp_path):
    import subprocess
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "redis.key"), "-out", str(tmp_path / "redis.crt"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    redis = redis_server(tls={"cert": str(tmp_path / "redis.crt"), "key": str(tmp_path / "redis.key")}, password="s3cret pass")
    assert redis.url.startswith("rediss://")
    a, b = start_nodes(admin_qri, [redis.url.replace("s3cret pass", "s3cret%20pass")], 2, "--redis-ca", str(tmp_path / "redis.crt"))
    stream = a.stream("t", "x")
    assert publish(b, "t", "x", "over TLS").json()["nodes"] == 1
    stream.wait_data("over TLS")
    assert "s3cret" not in a.log_text() and "s3cret" not in b.log_text()


def test_cluster_metrics(admin_qri, redis_server):
    redis = redis_server()
    (a,) = start_nodes(admin_qri, [redis.url], 1)
    a.stream("m", "x")
    publish(a, "m", "x", "counted")
    samples = a.metrics()
    server = f"redis://127.0.0.1:{redis.port}"
    assert a.metric("qri_redis_up", samples, server=server) == 1
    assert a.metric("qri_redis_commands_total", samples, result="ok") >= 1
    assert a.metric("qri_cluster_subscriptions", samples) == 1
    assert any(name == "qri_cluster_info" for name, _ in samples)
    assert any(name.startswith("qri_redis_publish_seconds") for name, _ in samples)


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def test_nodes_with_clocks_off_by_minutes_lose_and_duplicate_nothing(qri, redis_server, tls_files, tmp_path):
    """Node clocks play no part: ids come from Redis. One node 90 s ahead, one 90 s behind
    (libfaketime); a client hops between them."""
    import os
    from qri_gateway import ADMIN_TOKEN
    if not os.path.exists(LIBFAKETIME):
        pytest.fail("libfaketime is missing: make deps installs Debian's faketime", pytrace=False)
    redis = redis_server()
    nodes = []
    for shift in ("+90s", "-90s"):
        # Under libfaketime the Swift runtime does not see argv: every option by environment.
        env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": shift, "DONT_FAKE_MONOTONIC": "1",
               "QRI_LISTEN": "127.0.0.1:0", "QRI_ADMIN_LISTEN": "127.0.0.1:0", "QRI_INGEST_LISTEN": "127.0.0.1:0",
               "QRI_CERT": str(tls_files.server_crt), "QRI_KEY": str(tls_files.server_key),
               "QRI_STATE_FILE": str(tmp_path / f"state{shift}.json"), "QRI_REDIS": redis.url,
               "QRI_ADMIN_TOKEN": ADMIN_TOKEN}
        node = qri(env=env)
        wait_until(lambda: node.admin_client(token=None).get("/readyz").status_code == 200, 15, "node ready")
        nodes.append(node)
    ahead, behind = nodes
    received = []
    stream = ahead.stream("clock", "x")
    for i in range(3):
        assert publish(behind, "clock", "x", f"m{i}").status_code == 202
    got = stream.collect_until(lambda e: e.data == "m2")
    received += [e for e in got if not e.is_tick]
    last = received[-1].id
    stream.close()
    for i in range(3, 6):
        publish(ahead if i % 2 else behind, "clock", "x", f"m{i}")
    resumed = behind.stream("clock", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    got = resumed.collect_until(lambda e: e.data == "m5")
    received += [e for e in got if not e.is_tick]
    assert [e.data for e in received] == [f"m{i}" for i in range(6)]
    assert all(e.event != "gap" for e in received)
    ids = [e.id_int for e in received]
    assert ids == sorted(set(ids))


def test_stored_backdoor_messages_live_in_redis_for_every_node(admin_qri, redis_server):
    redis = redis_server(persist=True)
    a, b, c = start_nodes(admin_qri, [redis.url])
    on_b = b.stream("bd", "x")
    assert a.admin("POST", "/backdoor", data={"type": "007", "message": "stored on A"}).status_code == 204
    on_b.wait_data("007stored on A")
    fresh = c.stream("bd", "y", wait_tick=False)
    got = fresh.collect_until(lambda e: e.data == "007stored on A")
    assert got[0].is_tick
    assert c.admin("GET", "/backdoor", params={"type": "007"}).json() == {"type": "007", "message": "stored on A"}
    assert b.admin("DELETE", "/backdoor", params={"type": "007"}).status_code == 204
    on_b.wait_data("007delete")
    fresh.wait_data("007delete")
    assert a.admin("GET", "/backdoor").json() == []
    a.admin("POST", "/backdoor", data={"type": "008", "message": "survives restarts"})
    # Every node restarts: the stored message comes back from Redis.
    for node in (a, b, c):
        node.stop()
    (d,) = start_nodes(admin_qri, [redis.url], 1)
    wait_until(lambda: d.admin("GET", "/backdoor").json() == [{"type": "008", "message": "survives restarts"}], 10,
               "stored message reloaded from Redis")
    # Redis away: a change is 503, not lost silently.
    redis.kill()
    wait_until(lambda: d.admin_client(token=None).get("/readyz").status_code == 503, 10, "readyz 503")
    resp = d.admin("POST", "/backdoor", data={"type": "009", "message": "no"})
    assert resp.status_code == 503 and resp.headers.get("retry-after") == "1"


def test_history_trimmed_by_ttl_resumes_with_a_gap_on_another_node(admin_qri, redis_server):
    redis = redis_server()
    a, b = start_nodes(admin_qri, [redis.url], 2, "--history-ttl", "1")
    stream = a.stream("ttl", "x")
    publish(a, "ttl", "x", "kept a second")
    last = stream.wait_data("kept a second").id
    stream.close()
    publish(b, "ttl", "x", "expires too")
    # No stream holds the pair: Redis expires its history a second after the last message.
    wait_until(lambda: redis.cli("EXISTS", f"qri:h:3:ttlx").strip() == "0", 10, "history expired in Redis")
    resumed = b.stream("ttl", "x", headers={"Last-Event-ID": last}, wait_tick=False)
    got = resumed.collect_until(lambda e: e.event == "gap")
    assert got[-1].data == last
    publish(a, "ttl", "x", "after expiry")
    assert [e.data for e in resumed.collect_until(lambda e: e.data == "after expiry") if not e.is_tick] == ["after expiry"]


def test_streams_keep_ticking_while_redis_is_away(admin_qri, redis_server):
    redis = redis_server()
    (a,) = start_nodes(admin_qri, [redis.url], 1, "--tick-interval", "0.3")
    stream = a.stream("tick", "x")
    redis.kill()
    wait_until(lambda: a.admin_client(token=None).get("/readyz").status_code == 503, 10, "readyz 503")
    ticks = [e for e in stream.collect_until(lambda e: e.is_tick) + stream.collect_until(lambda e: e.is_tick) if e.is_tick]
    assert len(ticks) == 2
    assert a.metric("qri_redis_up", server=f"redis://127.0.0.1:{redis.port}") == 0
    redis.restart(keep_data=False)
    wait_until(lambda: a.admin_client(token=None).get("/readyz").status_code == 200, 15, "ready again")
    assert a.metric("qri_redis_reconnects_total", server=f"redis://127.0.0.1:{redis.port}") >= 1


def test_a_stream_opened_while_redis_is_away_waits_for_it(admin_qri, redis_server):
    """Answered 200 with its retry: at once (a browser waits instead of retrying); its Tick
    and replay follow once the pair's server is back."""
    redis = redis_server(persist=True)
    a, b = start_nodes(admin_qri, [redis.url], 2)
    publish(b, "late", "x", "published before the outage")
    redis.kill()
    wait_until(lambda: a.admin_client(token=None).get("/readyz").status_code == 503, 10, "readyz 503")
    stream = a.stream("late", "x", wait_tick=False, headers={"Last-Event-ID": "1"})
    assert stream.status == 200
    with pytest.raises(Deadline):
        stream.next_event(1.0)
    redis.restart(keep_data=True)
    got = stream.collect_until(lambda e: e.data == "published before the outage", timeout=15)
    assert got[0].is_tick and got[0].id == "1"
