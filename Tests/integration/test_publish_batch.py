"""Batch `POST /publish` (SPEC.md, *Admin listener*): NDJSON or a JSON array, one result per
entry in order, bad entries beside good ones, and the limits and errors of the whole request."""

import json

import pytest

from qri_http import published

NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}


def entry(peer, checksum, message):
    return {"peer": peer, "checksum": checksum, "message": message}


def ndjson(*lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def batch(srv, body: bytes, headers=NDJSON):
    return srv.admin("POST", "/publish", content=body, headers=headers)


def assert_error(resp, status):
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    assert isinstance(resp.json().get("error"), str) and resp.json()["error"], resp.text


@pytest.mark.parametrize("kind", ["ndjson", "array"])
def test_batch_routes_every_good_entry_in_order_and_reports_each(admin_qri, kind):
    srv = admin_qri()
    a = srv.stream("alice", "1")
    a2 = srv.stream("alice", "1")
    b = srv.stream("bob", "2")
    entries = [entry("alice", "1", "first"), entry("bob", "2", "to bob\nline 2"), entry("nobody", "9", "unheard"),
               entry("alice", "1", ""), entry("alice", "1", "last ✓")]
    body = ndjson(*entries) if kind == "ndjson" else json.dumps(entries).encode()
    resp = batch(srv, body, NDJSON if kind == "ndjson" else JSON)
    assert resp.status_code == 202, resp.text
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    results = resp.json()["results"]
    assert [published(r) for r in results] == [{"delivered": 2}, {"delivered": 1}, {"delivered": 0},
                                               {"delivered": 2}, {"delivered": 2}]
    ids = [int(r["id"], 16) for r in results]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for stream in (a, a2):
        got = stream.messages_until("last ✓")
        assert [e.data for e in got] == ["first", "", "last ✓"]
        assert [e.id for e in got] == [results[0]["id"], results[3]["id"], results[4]["id"]]
    got = b.wait_data("to bob\nline 2")
    assert got.id == results[1]["id"]
    assert srv.metric("qri_messages_received_total", source="publish") == 5
    assert srv.metric("qri_messages_without_stream_total") == 1


def test_bad_entries_are_reported_and_do_not_stop_the_good_ones(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    body = ndjson(
        entry("p", "c", "one"),
        b"not json",
        b"",                                        # blank lines are skipped, not entries
        b"  \t\r",
        {"peer": "p", "checksum": "c"},             # no message
        {"peer": "", "checksum": "c", "message": "m"},
        {"peer": "p", "checksum": "c", "message": 1},
        b'["p", "c", "m"]',
        b'"a string"',
        b'{"peer": "p", "checksum": "c", "message": "two"',   # cut short
        entry("p", "c", "two"),
    )
    resp = batch(srv, body)
    assert resp.status_code == 202, resp.text
    results = resp.json()["results"]
    assert len(results) == 9
    assert published(results[0]) == {"delivered": 1} and published(results[8]) == {"delivered": 1}
    for r in results[1:8]:
        assert list(r) == ["error"] and isinstance(r["error"], str) and r["error"], r
    assert "line 2" in results[1]["error"] and "message" in results[2]["error"]
    assert "peer" in results[3]["error"] and "message" in results[4]["error"]
    assert [e.data for e in stream.messages_until("two")] == ["one", "two"]
    assert srv.metric("qri_messages_received_total", source="publish") == 2


def test_json_array_with_bad_elements(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    body = json.dumps([entry("p", "c", "a"), 7, None, {"peer": "p"}, [entry("p", "c", "nested")], entry("p", "c", "b")])
    resp = batch(srv, body.encode(), JSON)
    assert resp.status_code == 202, resp.text
    results = resp.json()["results"]
    assert [list(r) for r in results] == [["id", "delivered"], ["error"], ["error"], ["error"], ["error"], ["id", "delivered"]]
    assert [e.data for e in stream.messages_until("b")] == ["a", "b"]


def test_crlf_lines_and_a_last_line_without_newline(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    body = b'{"peer":"p","checksum":"c","message":"x"}\r\n\r\n{"peer":"p","checksum":"c","message":"y"}'
    resp = batch(srv, body, {"Content-Type": "Application/X-NDJSON; charset=utf-8"})
    assert resp.status_code == 202 and [published(r) for r in resp.json()["results"]] == [{"delivered": 1}] * 2
    assert [e.data for e in stream.messages_until("y")] == ["x", "y"]


@pytest.mark.parametrize("body, headers", [
    (b"", NDJSON),                                  # an empty batch
    (b"\n\n  \n", NDJSON),                          # only blank lines
    (b"[]", JSON),
    (b"not json\n[1]\n\"s\"\n", NDJSON),            # no entry is a JSON object
    (b"[1, \"a\", null, []]", JSON),
    (b"[{\"peer\": \"p\"", JSON),                   # the array itself is not JSON
    (b"\"just a string\"", JSON),
    (b"42", JSON),
])
def test_batches_without_any_object_entry_are_400(admin_qri, body, headers):
    srv = admin_qri()
    assert_error(batch(srv, body, headers), 400)
    assert srv.metric("qri_messages_received_total", source="publish") == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/ndjson-ish", "multipart/form-data"])
def test_other_content_types_are_415(admin_qri, content_type):
    srv = admin_qri()
    assert_error(batch(srv, ndjson(entry("p", "c", "m")), {"Content-Type": content_type}), 415)


def test_ndjson_is_for_publish_only(admin_qri):
    srv = admin_qri()
    assert_error(srv.admin("POST", "/backdoor", content=b'{"type": "001", "message": "m"}\n', headers=NDJSON), 415)
    assert_error(srv.admin("POST", "/backdoor", content=b'[{"type": "001", "message": "m"}]', headers=JSON), 400)
    assert srv.admin("GET", "/backdoor").json() == []


def test_a_single_json_object_is_a_single_publish(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    resp = batch(srv, json.dumps(entry("p", "c", "single")).encode(), JSON)
    assert resp.status_code == 202 and published(resp.json()) == {"delivered": 1}
    assert stream.wait_data("single").id == resp.json()["id"]
    # One NDJSON line is a batch of one.
    resp = batch(srv, ndjson(entry("p", "c", "batch of one")))
    assert resp.status_code == 202 and [published(r) for r in resp.json()["results"]] == [{"delivered": 1}]


def test_batch_at_the_body_limit_is_accepted_and_over_it_is_413(admin_qri):
    srv = admin_qri("--max-body-bytes", "64K")
    stream = srv.stream("p", "c")
    line = json.dumps(entry("p", "c", "m" * 200)).encode() + b"\n"
    body = line * (65536 // len(line))
    body += b" " * (65536 - len(body) - 1) + b"\n"     # exactly the limit
    assert len(body) == 65536
    resp = batch(srv, body)
    assert resp.status_code == 202, resp.text
    assert len(resp.json()["results"]) == 65536 // len(line)
    resp = srv.admin_client().post("/publish", content=body + b"\n", headers=NDJSON)
    assert_error(resp, 413)
    assert srv.metric("qri_connections_rejected_total", reason="body_too_large") == 1
    assert len(stream.messages_until("m" * 200)) >= 1


def test_large_batch_keeps_order_on_one_stream(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    body = ndjson(*[entry("p", "c", f"m{i}") for i in range(2000)])
    resp = batch(srv, body)
    assert resp.status_code == 202
    results = resp.json()["results"]
    assert len(results) == 2000 and all(published(r) == {"delivered": 1} for r in results)
    got = stream.messages_until("m1999")
    assert [e.data for e in got] == [f"m{i}" for i in range(2000)]
    assert [e.id for e in got] == [r["id"] for r in results]


def test_pipelined_batches_and_singles_answer_in_order(admin_qri):
    from qri_http import read_response
    srv = admin_qri()
    stream = srv.stream("p", "c")
    conn = srv.admin_connect()
    requests = b""
    for i in range(20):
        if i % 2:
            requests += srv.admin_bytes("POST", "/publish", NDJSON, ndjson(entry("p", "c", f"b{i}a"), entry("p", "c", f"b{i}b")))
        else:
            requests += srv.admin_bytes("POST", "/publish", {"Content-Type": "application/x-www-form-urlencoded"},
                                        f"peer=p&checksum=c&message=s{i}".encode())
    conn.sendall(requests)
    ids = []
    for i in range(20):
        resp = read_response(conn, "POST")
        assert resp.status == 202
        answer = json.loads(resp.body)
        ids += [r["id"] for r in answer["results"]] if i % 2 else [answer["id"]]
    got = stream.messages_until("b19b")
    assert [e.id for e in got] == ids


def test_post_publish_reads_its_fields_from_the_body_only(admin_qri):
    """SPEC, *Admin listener*: POST reads its fields from the body; the query string is not
    a second source (a proxy's log holds query strings, and a half-body must not be completed
    from the URL)."""
    srv = admin_qri()
    stream = srv.stream("qs", "x")
    resp = srv.admin("POST", "/publish?peer=qs&checksum=x&message=from-the-query")
    assert resp.status_code == 400, resp.text
    resp = srv.admin("POST", "/publish?message=ignored", data={"peer": "qs", "checksum": "x"})
    assert resp.status_code == 400 and "message" in resp.json()["error"], resp.text
    resp = srv.admin("POST", "/publish", data={"peer": "qs", "checksum": "x", "message": "from the body"})
    assert resp.status_code == 202
    assert [e.data for e in stream.collect_until(lambda e: e.data == "from the body") if not e.is_tick] == ["from the body"]
