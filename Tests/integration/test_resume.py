"""Resume with Last-Event-ID (SPEC.md, *Public listener* and *Routing*: history, gap).

Messages sent while a pair has no stream cannot be watched arriving, so each test keeps a
`sync` stream on another pair and, after them, sends it a marker on the same qri-py
connection: once the marker is there, the earlier messages have been routed (into history).
"""

import pytest

from qri_http import now_us


class Scenario:
    """A gateway, its qri-py client, and a sync stream."""

    def __init__(self, srv):
        self.srv = srv
        self.q = srv.qripy()
        self.sync_stream = srv.stream("sync", "sync")
        self.n = 0

    def send(self, peer, checksum, *messages):
        for m in messages:
            self.q.send(peer, checksum, m.encode())

    def settle(self):
        """Returns once every message sent so far has been routed."""
        self.n += 1
        marker = f"sync-{self.n}"
        self.q.send(b"sync", b"sync", marker.encode())
        self.sync_stream.wait_data(marker)

    def receive(self, peer, checksum, *messages):
        """Opens a stream, sends `messages` to it, returns their events and closes it."""
        stream = self.srv.stream(peer, checksum)
        self.send(peer, checksum, *messages)
        got = stream.messages_until(messages[-1])
        assert [e.data for e in got] == list(messages)
        stream.close()
        return got


def after_tick(stream, last):
    """The events after the first Tick up to the one whose data is `last`, ticks left out."""
    return stream.messages_until(last)


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_replays_exactly_the_newer_events(qri, how):
    s = Scenario(qri())
    e1, e2 = s.receive("p", "c", "m1", "m2")
    s.send("p", "c", "m3", "m4")              # no stream open for (p, c) now
    s.settle()

    if how == "header":
        stream = s.srv.stream("p", "c", headers={"Last-Event-ID": e1.id})
    else:
        stream = s.srv.stream("p", "c", lastEventId=e1.id)
    assert stream.events[0] is stream.first_tick, "the Tick comes first"
    assert stream.first_tick.id == e1.id, "on a resumed stream the Tick carries the requested id"

    s.send("p", "c", "live")
    got = after_tick(stream, "live")
    assert [e.data for e in got] == ["m2", "m3", "m4", "live"]
    assert all(e.event == "message" for e in got), "no gap: nothing newer was lost"
    assert got[0].id == e2.id, "replayed events keep their original ids"
    ids = [e.id_int for e in got]
    assert e1.id_int < ids[0] and ids == sorted(set(ids))


def test_history_limit_gives_gap_then_last_events(qri):
    s = Scenario(qri("--history", "3"))
    (e0,) = s.receive("p", "c", "m0")
    s.send("p", "c", "m1", "m2", "m3", "m4", "m5")
    s.settle()

    stream = s.srv.stream("p", "c", headers={"Last-Event-ID": e0.id})
    assert stream.first_tick.id == e0.id
    s.send("p", "c", "live")
    got = after_tick(stream, "live")
    gap = got[0]
    assert gap.event == "gap", f"expected an `event: gap` first, got {got}"
    assert gap.data == e0.id, "the gap's data is the requested id"
    assert gap.id == e0.id, "the gap carries the requested id"
    assert [e.data for e in got[1:]] == ["m3", "m4", "m5", "live"]
    assert all(e.event == "message" for e in got[1:])


def test_history_zero_neither_replay_nor_gap(qri):
    s = Scenario(qri("--history", "0"))
    (e0,) = s.receive("p", "c", "m0")
    s.send("p", "c", "m1", "m2")
    s.settle()

    stream = s.srv.stream("p", "c", headers={"Last-Event-ID": e0.id})
    s.send("p", "c", "live")
    got = after_tick(stream, "live")
    assert [(e.event, e.data) for e in got] == [("message", "live")]


def test_header_wins_over_query_parameter(qri):
    s = Scenario(qri())
    e1, e2, e3 = s.receive("p", "c", "m1", "m2", "m3")

    stream = s.srv.stream("p", "c", headers={"Last-Event-ID": e2.id}, lastEventId=e1.id)
    assert stream.first_tick.id == e2.id
    s.send("p", "c", "live")
    got = after_tick(stream, "live")
    assert [e.data for e in got] == ["m3", "live"]
    assert got[0].id == e3.id


@pytest.mark.parametrize("bad", ["zzz", "0x10", "1" * 17, "12 34", "-1"])
def test_invalid_last_event_id_is_ignored(qri, bad):
    s = Scenario(qri())
    s.receive("p", "c", "m1")

    before = now_us()
    stream = s.srv.stream("p", "c", headers={"Last-Event-ID": bad})
    assert stream.first_tick.id != bad
    assert stream.first_tick.id_int >= before, "a fresh id, as on a new stream"
    s.send("p", "c", "live")
    got = after_tick(stream, "live")
    assert [(e.event, e.data) for e in got] == [("message", "live")], "no replay, no gap"


def test_id_older_than_the_process_always_gets_a_gap(qri):
    s = Scenario(qri())
    stream = s.srv.stream("fresh", "pair", headers={"Last-Event-ID": "1"})
    assert stream.first_tick.id == "1"
    s.send("fresh", "pair", "live")
    got = after_tick(stream, "live")
    assert [(e.event, e.data, e.id) for e in got[:1]] == [("gap", "1", "1")]
    assert [e.data for e in got[1:]] == ["live"]


def test_resume_of_a_resume_from_the_same_point(qri):
    """A client that drops right after the Tick of a resumed stream resumes from the same id
    and still gets the replay."""
    s = Scenario(qri())
    e1, _ = s.receive("p", "c", "m1", "m2")
    first = s.srv.stream("p", "c", headers={"Last-Event-ID": e1.id})
    again_from = first.first_tick.id
    first.close()

    second = s.srv.stream("p", "c", headers={"Last-Event-ID": again_from})
    s.send("p", "c", "live")
    assert [e.data for e in after_tick(second, "live")] == ["m2", "live"]


def test_another_pairs_dropped_history_gives_no_gap(admin_qri):
    """Exact gap on one node: before, once any pair's whole history was dropped (here by
    its TTL), every resume from an older id got a `gap`, even for a pair that lost nothing."""
    from qri_http import wait_until
    srv = admin_qri("--history-ttl", "1")
    quiet = srv.stream("quiet", "x")
    position = quiet.first_tick.id
    quiet.close()
    srv.qripy().send(b"busy", b"x", b"soon dropped")
    wait_until(lambda: srv.metric("qri_messages_received_total", source="ingest") == 1, 10, "message in")
    # The busy pair's history expires (TTL 1 s, swept every second).
    wait_until(lambda: srv.metric("qri_pairs") == 0, 10, "every pair dropped")
    resumed = srv.stream("quiet", "x", headers={"Last-Event-ID": position}, wait_tick=False)
    got = resumed.collect_until(lambda e: e.is_tick)
    again = srv.stream("busy", "x", headers={"Last-Event-ID": position}, wait_tick=False)
    busy = again.collect_until(lambda e: e.event == "gap", timeout=5)
    assert all(e.event != "gap" for e in got), [(e.event, e.data) for e in got]
    assert busy[-1].event == "gap", "the busy pair did lose its message"
    # Nothing else arrives for the quiet pair: no gap at all.
    srv.qripy().send(b"quiet", b"x", b"fresh")
    assert [e.event for e in resumed.collect_until(lambda e: e.data == "fresh")] == ["message"]
