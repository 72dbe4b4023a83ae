"""Stored backdoor (herald) messages (SPEC.md, *Admin listener*): the `/backdoor` rows of the
admin table, type validation, broadcasts to every stream on every loop, the periodic
re-broadcast, and the stored messages a new stream gets after its first Tick."""

import json
import urllib.parse

import pytest

BAD_TYPES = ["1", "01", "0001", "abc", "१२३", "١٢٣", "１２３", "", " 12", "12 ", "-12", "1.5", "12a", "0x1"]


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def stored(srv):
    return {d["type"]: d["message"] for d in srv.admin("GET", "/backdoor").json()}


# ---------------------------------------------------------------------------------------------
# The table's rows


def test_get_one_type_when_none_is_stored(admin_qri):
    resp = admin_qri().admin("GET", "/backdoor?type=001")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    assert resp.json() == {"type": "001", "message": None}


def test_get_all_when_none_is_stored(admin_qri):
    resp = admin_qri().admin("GET", "/backdoor")
    assert resp.status_code == 200, resp.text
    assert resp.json() == []


def test_post_stores_and_get_reads_back(admin_qri):
    srv = admin_qri()
    resp = srv.admin("POST", "/backdoor", data={"type": "002", "message": "Maintenance at 18:00 ✓"})
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert srv.admin("GET", "/backdoor?type=002").json() == {"type": "002", "message": "Maintenance at 18:00 ✓"}
    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "first"}).status_code == 204
    all_ = srv.admin("GET", "/backdoor").json()
    assert isinstance(all_, list) and all(set(d) == {"type", "message"} for d in all_), all_
    got = {d["type"]: d["message"] for d in all_}
    assert len(got) == len(all_), f"a type listed twice: {all_}"
    assert got == {"001": "first", "002": "Maintenance at 18:00 ✓"}
    # POST of a stored type replaces it.
    assert srv.admin("POST", "/backdoor", data={"type": "002", "message": "moved to 19:00"}).status_code == 204
    assert srv.admin("GET", "/backdoor?type=002").json() == {"type": "002", "message": "moved to 19:00"}
    assert stored(srv)["002"] == "moved to 19:00"


def test_post_broadcasts_to_every_stream_at_once(admin_qri):
    srv = admin_qri()
    streams = [srv.stream("u1", "a"), srv.stream("u1", "b"), srv.stream("u2", "a"), srv.stream("u+3 ✓", "x y")]
    assert srv.admin("POST", "/backdoor", data={"type": "042", "message": "to everyone"}).status_code == 204
    events = [s.wait_for(lambda e: e.data.startswith("042")) for s in streams]
    assert {e.data for e in events} == {"042to everyone"}
    assert len({e.id for e in events}) == 1 and events[0].id, "one event, one id, on every stream"
    for s, e in zip(streams, events):
        assert e.id_int > s.first_tick.id_int


@pytest.mark.parametrize("where", ["query", "form", "json"])
def test_delete_removes_and_broadcasts(admin_qri, where):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    srv.admin("POST", "/backdoor", data={"type": "012", "message": "soon gone"})
    srv.admin("POST", "/backdoor", data={"type": "013", "message": "stays"})
    if where == "query":
        resp = srv.admin("DELETE", "/backdoor?type=012")
    elif where == "form":
        resp = srv.admin("DELETE", "/backdoor", content=b"type=012",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        resp = srv.admin("DELETE", "/backdoor", content=b'{"type": "012"}', headers={"Content-Type": "application/json"})
    assert resp.status_code == 204, resp.text
    got = [e.data for e in stream.messages_until("012delete")]
    assert got == ["012soon gone", "013stays", "012delete"]
    assert srv.admin("GET", "/backdoor?type=012").json() == {"type": "012", "message": None}
    assert stored(srv) == {"013": "stays"}


def test_delete_of_a_type_not_stored_is_204_and_still_broadcasts(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    resp = srv.admin("DELETE", "/backdoor?type=321")
    assert resp.status_code == 204, resp.text
    assert stream.wait_for(lambda e: not e.is_tick).data == "321delete"
    assert stored(srv) == {}


@pytest.mark.parametrize("method", ["GET", "POST-form", "POST-json", "DELETE-query", "DELETE-form"])
def test_type_must_be_three_ascii_digits(admin_qri, method):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    wrong = []
    for bad in BAD_TYPES:
        if method == "GET":
            resp = srv.admin("GET", f"/backdoor?type={q(bad)}")
        elif method == "POST-form":
            resp = srv.admin("POST", "/backdoor", content=f"type={q(bad)}&message=x".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        elif method == "POST-json":
            resp = srv.admin("POST", "/backdoor", content=json.dumps({"type": bad, "message": "x"}).encode(),
                             headers={"Content-Type": "application/json"})
        elif method == "DELETE-query":
            resp = srv.admin("DELETE", f"/backdoor?type={q(bad)}")
        else:
            resp = srv.admin("DELETE", "/backdoor", content=f"type={q(bad)}".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        ok_error = resp.status_code == 400 and isinstance(resp.json().get("error"), str)
        if not ok_error:
            wrong.append((bad, resp.status_code, resp.text[:80]))
    assert not wrong, f"{method}: types that were not a 400 with a JSON error: {wrong}"
    assert stored(srv) == {}
    # No broadcast either: the marker is the first non-Tick event.
    srv.admin("POST", "/publish", data={"peer": "p", "checksum": "c", "message": "marker"})
    assert [e.data for e in stream.messages_until("marker")] == ["marker"]


def test_type_field_missing_is_400(admin_qri):
    srv = admin_qri()
    for method, kw in [("POST", {"data": {"message": "x"}}), ("DELETE", {})]:
        resp = srv.admin(method, "/backdoor", **kw)
        assert resp.status_code == 400, (method, resp.status_code, resp.text)
        assert isinstance(resp.json().get("error"), str)


@pytest.mark.parametrize("valid", ["000", "999", "042"])
def test_three_digit_types_are_accepted(admin_qri, valid):
    srv = admin_qri()
    assert srv.admin("POST", "/backdoor", data={"type": valid, "message": "ok"}).status_code == 204
    assert srv.admin("GET", f"/backdoor?type={valid}").json() == {"type": valid, "message": "ok"}


@pytest.mark.parametrize("fields", [
    {"type": "001"},                                  # no message
    {"type": "001", "message": "delete"},             # qri-js would read a deletion
])
def test_post_without_message_or_with_delete_is_400(admin_qri, fields):
    srv = admin_qri()
    for kw in ({"data": fields}, {"content": json.dumps(fields).encode(), "headers": {"Content-Type": "application/json"}}):
        resp = srv.admin("POST", "/backdoor", **kw)
        assert resp.status_code == 400, (kw, resp.status_code, resp.text)
        assert isinstance(resp.json().get("error"), str)
    assert stored(srv) == {}


# ---------------------------------------------------------------------------------------------
# Broadcast on every loop


def test_post_and_delete_reach_streams_on_every_loop(admin_qri):
    srv = admin_qri("--threads", "2")
    # SO_REUSEPORT spreads connections over both loops; with 40 of them, both hold some
    # (all on one loop has a chance of 2^-39).
    streams = [srv.stream(f"peer{i}", f"sum{i % 3}") for i in range(40)]
    assert srv.admin("POST", "/backdoor", data={"type": "077", "message": "all loops"}).status_code == 204
    missing = []
    for i, s in enumerate(streams):
        try:
            s.wait_data("077all loops", 10)
        except AssertionError as e:
            missing.append((i, str(e)[:200]))
    assert not missing, f"{len(missing)} of 40 streams did not get the broadcast: {missing[:3]}"
    assert srv.admin("DELETE", "/backdoor?type=077").status_code == 204
    for s in streams:
        s.wait_data("077delete", 10)
    assert srv.metric("qri_events_delivered_total", kind="herald") >= 80
    assert srv.metric("qri_streams") == 40


# ---------------------------------------------------------------------------------------------
# Periodic re-broadcast and stored messages on connect


def test_periodic_rebroadcast_every_herald_interval(admin_qri):
    srv = admin_qri("--herald-interval", "1", "--threads", "2")
    others = [srv.stream(f"o{i}", "c") for i in range(10)]     # spread over both loops
    stream = srv.stream("p", "c")
    srv.admin("POST", "/backdoor", data={"type": "002", "message": "b"})
    srv.admin("POST", "/backdoor", data={"type": "001", "message": "a"})
    counts = {"001a": 0, "002b": 0}

    def seen_three_times(e):
        if e.data in counts:
            counts[e.data] += 1
        return min(counts.values()) >= 3

    stream.collect_until(seen_three_times, 6)     # the POSTs, then two re-broadcasts at least
    for other in others:                          # the POST and one re-broadcast at least
        other.wait_data("001a", 1)
        other.wait_data("001a", 3)
    # After a DELETE only the remaining message comes back.
    srv.admin("DELETE", "/backdoor?type=001")
    stream.wait_data("001delete")
    after = stream.collect_until(lambda e: e.data == "002b", 3)
    after += stream.collect_until(lambda e: e.data == "002b", 3)
    assert "001a" not in [e.data for e in after], [e.data for e in after]


def test_no_rebroadcast_before_the_interval(admin_qri):
    srv = admin_qri("--herald-interval", "30", "--tick-interval", "1")
    stream = srv.stream("p", "c")
    srv.admin("POST", "/backdoor", data={"type": "001", "message": "once"})
    events = stream.collect_until(lambda e: e.is_tick, 3)
    events += stream.collect_until(lambda e: e.is_tick, 3)
    assert [e.data for e in events if not e.is_tick] == ["001once"]


def test_stored_messages_right_after_the_first_tick_in_ascending_type(admin_qri):
    srv = admin_qri()
    for t, m in [("003", "c"), ("001", "a"), ("100", "d"), ("002", "b")]:
        assert srv.admin("POST", "/backdoor", data={"type": t, "message": m}).status_code == 204
    stream = srv.stream("new", "tab", wait_tick=False)
    first = [stream.next_event() for _ in range(5)]
    assert [e.data for e in first] == ["Tick", "001a", "002b", "003c", "100d"]
    ids = [e.id_int for e in first]
    assert ids == sorted(ids) and len(set(ids)) == 5, f"ids not strictly increasing: {[e.id for e in first]}"
    # A message for the pair comes after them.
    srv.admin("POST", "/publish", data={"peer": "new", "checksum": "tab", "message": "live"})
    assert stream.next_event().data == "live"
    assert srv.metric("qri_events_delivered_total", kind="herald") >= 4


def test_stored_messages_on_a_resumed_stream_carry_the_requested_id(admin_qri):
    srv = admin_qri()
    first = srv.stream("r", "c")
    srv.admin("POST", "/publish", data={"peer": "r", "checksum": "c", "message": "m1"})
    m1 = first.wait_data("m1")
    srv.admin("POST", "/backdoor", data={"type": "002", "message": "b"})
    srv.admin("POST", "/backdoor", data={"type": "001", "message": "a"})
    srv.admin("POST", "/publish", data={"peer": "r", "checksum": "c", "message": "m2"})
    m2 = first.wait_data("m2")
    first.close()
    resumed = srv.stream("r", "c", headers={"Last-Event-ID": m1.id}, wait_tick=False)
    events = [resumed.next_event() for _ in range(4)]
    assert [e.data for e in events] == ["Tick", "001a", "002b", "m2"]
    assert [e.id for e in events[:3]] == [m1.id] * 3, [e.id for e in events]
    assert events[3].id == m2.id


def test_message_that_is_not_utf8_is_400(admin_qri):
    srv = admin_qri()
    resp = srv.admin("POST", "/backdoor", content=b"type=001&message=%FF%FE",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert stored(srv) == {}


@pytest.mark.parametrize("body", [{"message": "from the body"}, {"type": "015"}, {}])
def test_post_reads_type_and_message_from_the_body_only(admin_qri, body):
    """SPEC: `POST` reads its fields from the body. A type or message given only in the
    query string is missing: 400, nothing stored, nothing broadcast."""
    srv = admin_qri()
    stream = srv.stream("p", "c")
    resp = srv.admin("POST", "/backdoor?type=015&message=from+the+query", data=body)
    assert resp.status_code == 400, resp.text
    assert "missing field" in resp.json()["error"]
    assert stored(srv) == {}
    # The body's own fields are used, whatever the query says.
    resp = srv.admin("POST", "/backdoor?type=016&message=query", data={"type": "015", "message": "body"})
    assert resp.status_code == 204, resp.text
    assert stream.wait_for(lambda e: not e.is_tick).data == "015body"
    assert stored(srv) == {"015": "body"}
