"""The admin listener's HTTP side (SPEC.md, *Admin listener*): token, bodies, framing, status
codes, keep-alive and pipelining, idle timeout, plain HTTP, CORS.

Clients: httpx over TLS with the test CA, curl, and raw TLS sockets where the exact bytes
matter (pipelining, smuggling shapes, chunked bodies).
"""

import json
import signal
import ssl
import subprocess
import time
import urllib.parse

import httpx
import pytest

from qri_gateway import ADMIN_TOKEN
from qri_http import HOST, Deadline, StreamClosed, TLSConn, chunked, client_context, published, read_response

ROUTES = [
    ("GET", "/backdoor", None),
    ("GET", "/backdoor?type=001", None),
    ("POST", "/backdoor", {"type": "001", "message": "m"}),
    ("DELETE", "/backdoor?type=001", None),
    ("POST", "/publish", {"peer": "p", "checksum": "c", "message": "m"}),
    ("GET", "/metrics", None),
]


def assert_json_error(resp, status):
    """`resp` (httpx or raw) is `status` with a JSON body {"error": "<non-empty text>"}."""
    code = resp.status_code if hasattr(resp, "status_code") else resp.status
    body = resp.content if hasattr(resp, "content") else resp.body
    assert code == status, f"expected {status}, got {code}: {body[:300]!r}"
    ctype = resp.headers.get("content-type") or ""
    assert ctype.split(";")[0].strip().lower() == "application/json", f"error Content-Type {ctype!r}"
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc


def assert_401_bearer(resp):
    assert_json_error(resp, 401)
    challenge = resp.headers.get("www-authenticate") or ""
    assert challenge.split()[:1] == ["Bearer"], f"WWW-Authenticate: {challenge!r}"


def send_route(client, method, path, form):
    return client.request(method, path, data=form) if form else client.request(method, path)


# ---------------------------------------------------------------------------------------------
# Token


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_healthz_and_readyz_are_ok_without_a_token(admin_qri, path):
    srv = admin_qri()
    for token in (None, "wrong"):
        resp = srv.admin_client(token=token).get(path)
        assert resp.status_code == 200, (token, resp.status_code, resp.text)
        assert resp.text.strip() == "ok"


@pytest.mark.parametrize("authorization", [
    None,                                  # no header
    "Bearer wrong-token",
    f"Bearer {ADMIN_TOKEN}x",              # the token is a prefix of it
    f"Bearer {ADMIN_TOKEN[:-1]}",          # a prefix of the token
    "Bearer",                              # the scheme alone
    ADMIN_TOKEN,                           # no scheme
    f"Basic {ADMIN_TOKEN}",
])
def test_missing_or_wrong_token_is_401_with_bearer_challenge(admin_qri, authorization):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    client = srv.admin_client(token=None, headers={"Authorization": authorization} if authorization else {})
    for method, path, form in ROUTES:
        resp = send_route(client, method, path, form)
        assert_401_bearer(resp)
    # Nothing of it took effect: no stored message, no event on the stream.
    assert srv.admin("GET", "/backdoor").json() == []
    assert srv.admin("POST", "/publish", data={"peer": "p", "checksum": "c", "message": "marker"}).status_code == 202
    assert [e.data for e in stream.messages_until("marker")] == ["marker"]


def test_right_token_from_file_with_white_space(admin_qri):
    srv = admin_qri()           # the fixture writes "  TOKEN\n\n"
    for method, path, form in ROUTES:
        resp = send_route(srv.admin_client(), method, path, form)
        assert resp.status_code in (200, 202, 204), (method, path, resp.status_code, resp.text)


def test_right_token_from_environment(qri):
    srv = qri(env={"QRI_ADMIN_TOKEN": "env-token-31337"})
    assert srv.admin_client(token="env-token-31337").get("/backdoor").status_code == 200
    assert_401_bearer(srv.admin_client(token="env-token-3133").get("/backdoor"))
    assert_401_bearer(srv.admin_client(token=None).get("/backdoor"))


def test_token_file_wins_over_environment(admin_qri):
    srv = admin_qri(env={"QRI_ADMIN_TOKEN": "env-token-loses"})
    assert srv.admin_client(token=ADMIN_TOKEN).get("/backdoor").status_code == 200
    assert_401_bearer(srv.admin_client(token="env-token-loses").get("/backdoor"))


@pytest.mark.parametrize("env", [None, {"QRI_ADMIN_TOKEN": ""}, {"QRI_ADMIN_TOKEN": "   "}])
def test_no_token_configured_refuses_all_but_healthz(qri, env):
    srv = qri(env=env)
    assert srv.admin_token is None
    line = srv.wait_log(r"(?i)warn.*(token)|(token).*warn", 2).string
    assert "QRI_ADMIN_TOKEN" in line and "admin-token-file" in line, \
        f"the warning does not say how to set a token: {line}"
    for authorization in (None, "Bearer", "Bearer anything", "Bearer null"):
        client = srv.admin_client(token=None, headers={"Authorization": authorization} if authorization else {})
        for method, path, form in ROUTES:
            assert_401_bearer(send_route(client, method, path, form))
        resp = client.get("/healthz")
        assert resp.status_code == 200 and resp.text.strip() == "ok"


@pytest.mark.parametrize("source", ["file", "env"])
def test_token_never_in_the_log(qri, admin_qri, tls_files, source):
    token = "s3cr3t-Token-never-logged-8c1f"
    if source == "file":
        srv = admin_qri("--log-level", "trace", token=token)
    else:
        srv = qri("--log-level", "trace", env={"QRI_ADMIN_TOKEN": token})
    assert srv.admin_token == token
    srv.stream("p", "c")
    good, bad = srv.admin_client(), srv.admin_client(token=token[:-1])
    for method, path, form in ROUTES:
        send_route(good, method, path, form)
        send_route(bad, method, path, form)
    # A few failures, which a server is most tempted to log with the request.
    srv.admin_raw(srv.admin_bytes("POST", "/backdoor", {"Content-Length": "3", "Transfer-Encoding": "chunked"}))
    srv.admin_raw(srv.admin_bytes("GET", "/backdoor", {"X-Pad": "a" * 9000}))
    srv.signal(signal.SIGHUP)
    srv.wait_metric("qri_cert_reloads_total", lambda v: v >= 1, result="ok")
    srv.stop()
    log = srv.log_text() + srv.stdout.decode("utf-8", "replace")
    assert log.strip(), "no log at all"
    assert token not in log and token[:-1] not in log, "the admin token appears in the log"


# ---------------------------------------------------------------------------------------------
# Bodies: form, JSON, content types, chunked, size


def test_form_body_is_decoded(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    resp = srv.admin("POST", "/backdoor", content=b"type=003&message=a+b%26c%3D%E2%9C%93",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 204, resp.text
    assert srv.admin("GET", "/backdoor?type=003").json() == {"type": "003", "message": "a b&c=✓"}
    assert stream.wait_for(lambda e: e.data.startswith("003")).data == "003a b&c=✓"


def test_missing_content_type_is_form(admin_qri):
    srv = admin_qri()
    raw = srv.admin_bytes("POST", "/backdoor", body=b"type=005&message=no+content+type")
    assert b"content-type" not in raw.lower()
    resp = srv.admin_raw(raw, "POST")
    assert resp.status == 204, (resp.status, resp.text)
    assert srv.admin("GET", "/backdoor?type=005").json() == {"type": "005", "message": "no content type"}


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_body(admin_qri, ctype):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    message = 'json ✓ "quoted" \\ back\nslash'
    resp = srv.admin("POST", "/backdoor", content=json.dumps({"type": "004", "message": message}).encode(),
                     headers={"Content-Type": ctype})
    assert resp.status_code == 204, resp.text
    assert srv.admin("GET", "/backdoor?type=004").json() == {"type": "004", "message": message}
    assert stream.wait_for(lambda e: e.data.startswith("004")).data == "004" + message
    resp = srv.admin("DELETE", "/backdoor", content=b'{"type": "004"}', headers={"Content-Type": ctype})
    assert resp.status_code == 204, resp.text
    assert srv.admin("GET", "/backdoor?type=004").json() == {"type": "004", "message": None}


@pytest.mark.parametrize("body", [
    {"type": 4, "message": "x"},
    {"type": "004", "message": 5},
    {"type": "004", "message": None},
    {"type": "004", "message": ["x"]},
    {"type": "004", "message": {"x": "y"}},
    {"type": "004", "message": True},
    ["004", "x"],
    "004",
])
def test_json_with_a_non_string_field_is_400(admin_qri, body):
    srv = admin_qri()
    resp = srv.admin("POST", "/backdoor", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert_json_error(resp, 400)
    assert srv.admin("GET", "/backdoor").json() == []


def test_malformed_json_is_400(admin_qri):
    srv = admin_qri()
    for content in (b'{"type": "004", "message": "x"', b"type=004&message=x", b"\xff\xfe"):
        resp = srv.admin("POST", "/backdoor", content=content, headers={"Content-Type": "application/json"})
        assert_json_error(resp, 400)
    assert srv.admin("GET", "/backdoor").json() == []


@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x", "application/xml", "foo"])
def test_other_content_type_is_415(admin_qri, ctype):
    srv = admin_qri()
    for path, body in (("/backdoor", b"type=004&message=x"), ("/publish", b"peer=p&checksum=c&message=x")):
        resp = srv.admin("POST", path, content=body, headers={"Content-Type": ctype})
        assert_json_error(resp, 415)
    assert srv.admin("GET", "/backdoor").json() == []


def test_chunked_request_body(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    conn = srv.admin_connect()
    head = srv.admin_bytes("POST", "/backdoor", {"Transfer-Encoding": "chunked",
                                                 "Content-Type": "application/x-www-form-urlencoded"})
    conn.sendall(head)
    conn.sendall(b"6\r\ntype=0\r\n")
    conn.sendall(b"7;ext=1\r\n06&mess\r\n")
    conn.sendall(chunked(b"age=chunked", b"+ok"))
    resp = read_response(conn, "POST")
    assert resp.status == 204, (resp.status, resp.text)
    assert stream.wait_for(lambda e: e.data.startswith("006")).data == "006chunked ok"
    # The connection goes on after a chunked body.
    conn.sendall(srv.admin_bytes("GET", "/backdoor?type=006"))
    resp = read_response(conn)
    assert resp.status == 200 and json.loads(resp.body) == {"type": "006", "message": "chunked ok"}


def test_chunked_request_body_with_a_trailer(admin_qri):
    srv = admin_qri()
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("POST", "/backdoor", {"Transfer-Encoding": "chunked"})
                 + chunked(b"type=009&message=trail")[:-2] + b"X-Checksum: 1\r\n\r\n")
    resp = read_response(conn, "POST")
    assert resp.status == 204, (resp.status, resp.text)
    conn.sendall(srv.admin_bytes("GET", "/backdoor?type=009"))
    assert json.loads(read_response(conn).body) == {"type": "009", "message": "trail"}


def test_http10_request_is_answered_and_closed(admin_qri):
    srv = admin_qri()
    conn = srv.admin_connect()
    conn.sendall(f"GET /backdoor?type=001 HTTP/1.0\r\nAuthorization: Bearer {srv.admin_token}\r\n\r\n".encode())
    resp = read_response(conn)
    assert resp.status == 200 and json.loads(resp.body) == {"type": "001", "message": None}
    conn.wait_closed(5)


def test_body_at_the_limit_is_accepted(admin_qri):
    srv = admin_qri("--max-body-bytes", "1K")
    prefix = b"type=008&message="
    body = prefix + b"x" * (1024 - len(prefix))
    assert len(body) == 1024
    resp = srv.admin("POST", "/backdoor", content=body)
    assert resp.status_code == 204, resp.text


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit_is_413_and_the_client_sees_it(admin_qri, framing):
    srv = admin_qri("--max-body-bytes", "1K")
    body = b"type=008&message=" + b"x" * (256 * 1024)
    conn = srv.admin_connect()
    if framing == "chunked":
        conn.sendall(srv.admin_bytes("POST", "/backdoor", {"Transfer-Encoding": "chunked"}))
        data = chunked(*[body[i:i + 4000] for i in range(0, len(body), 4000)])
    else:
        conn.sendall(srv.admin_bytes("POST", "/backdoor", {"Content-Length": str(len(body))}))
        data = body
    try:
        conn.sendall(data)     # all of it: the server must drain, not reset
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
        pytest.fail(f"the server reset the connection while the body was being sent: {e!r}")
    resp = read_response(conn, "POST")
    assert_json_error(resp, 413)
    conn.wait_closed(5)
    assert srv.admin("GET", "/backdoor").json() == []
    assert srv.metric("qri_connections_rejected_total", reason="body_too_large") == 1


def test_body_over_the_limit_httpx_and_curl_see_413(admin_qri, tmp_path, tls_files):
    srv = admin_qri("--max-body-bytes", "1K")
    resp = srv.admin_client().post("/backdoor", content=b"type=008&message=" + b"y" * 200_000)
    assert_json_error(resp, 413)
    big = tmp_path / "big.txt"
    big.write_bytes(b"type=008&message=" + b"z" * 600_000)
    out = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\\n%{http_code}", "--cacert", str(tls_files.ca_crt),
         "-H", f"Authorization: Bearer {srv.admin_token}", "--data-binary", f"@{big}",
         f"https://127.0.0.1:{srv.admin_port}/backdoor"], capture_output=True, text=True, timeout=30)
    assert out.stdout.rsplit("\n", 1)[-1] == "413", f"curl: {out.stdout[-300:]!r} {out.stderr!r}"


def test_request_head_over_the_limit_is_431(admin_qri):
    srv = admin_qri()
    resp = srv.admin_raw(srv.admin_bytes("GET", "/backdoor", {"X-Pad": "a" * 9000}))
    assert resp.status == 431, (resp.status, resp.text)
    resp.conn.wait_closed(5)
    resp = srv.admin_raw(srv.admin_bytes("GET", "/backdoor?pad=" + "b" * 9000))
    assert resp.status == 431, (resp.status, resp.text)
    resp.conn.wait_closed(5)
    assert srv.metric("qri_connections_rejected_total", reason="header_too_large") == 2
    assert srv.admin_raw(srv.admin_bytes("GET", "/backdoor", {"X-Pad": "a" * 7000})).status == 200


def test_max_header_bytes_applies_to_admin(admin_qri):
    srv = admin_qri("--max-header-bytes", "1K")
    resp = srv.admin_raw(srv.admin_bytes("GET", "/backdoor", {"X-Pad": "a" * 1500}))
    assert resp.status == 431, (resp.status, resp.text)


# ---------------------------------------------------------------------------------------------
# Framing errors: 400 (or 501) and the connection closed, nothing smuggled through

SMUGGLING = {
    "cl-and-te": ({"Content-Length": "4", "Transfer-Encoding": "chunked"}, b"0\r\n\r\n"),
    "te-and-cl": ({"Transfer-Encoding": "chunked", "Content-Length": "4"}, b"0\r\n\r\n"),
    "two-differing-cl": ({"Content-Length": "4", "Content-length": "5"}, b"type"),
    "cl-list-differing": ({"Content-Length": "4, 5"}, b"type"),
    "cl-not-a-number": ({"Content-Length": "4x"}, b"type"),
    "cl-negative": ({"Content-Length": "-4"}, b"type"),
    "bad-chunk-size": ({"Transfer-Encoding": "chunked"}, b"zz\r\ntype=001\r\n0\r\n\r\n"),
    "chunk-size-overflow": ({"Transfer-Encoding": "chunked"}, b"10000000000000000000001\r\nx\r\n0\r\n\r\n"),
    "chunk-without-crlf": ({"Transfer-Encoding": "chunked"}, b"3\r\nabcX0\r\n\r\n"),
}


@pytest.mark.parametrize("shape", list(SMUGGLING))
def test_admin_smuggling_shape_is_400_and_closed(admin_qri, shape):
    srv = admin_qri()
    headers, body = SMUGGLING[shape]
    smuggled = srv.admin_bytes("POST", "/backdoor", body=b"type=666&message=smuggled",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("POST", "/publish", headers) + body + smuggled)
    resp = read_response(conn, "POST")
    assert_json_error(resp, 400)
    rest = conn.read_to_end(time.monotonic() + 5)
    assert b"HTTP/1.1" not in rest, f"a second answer came: {rest[:200]!r}"
    assert srv.admin("GET", "/backdoor").json() == [], "the smuggled request was served"
    assert srv.metric("qri_connections_rejected_total", reason="bad_request") >= 1


@pytest.mark.parametrize("raw, status", [
    (b"GET /backdoor HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", 400),          # obs-fold
    (b"GET /backdoor HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400),                      # bare CR
    (b"GET /backdoor HTTP/1.1\r\n\r\n", 400),                                         # no Host
    (b"GET /backdoor HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),                   # two Hosts
    (b"GET  /backdoor HTTP/1.1\r\nHost: x\r\n\r\n", 400),                             # bad request line
    (b"GET /backdoor HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),             # space in name
    (b"POST /backdoor HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /backdoor HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
])
def test_admin_malformed_head(admin_qri, raw, status):
    srv = admin_qri()
    resp = srv.admin_raw(raw.replace(b"Host: x", f"Authorization: Bearer {srv.admin_token}\r\nHost: x".encode(), 1))
    assert_json_error(resp, status)
    resp.conn.wait_closed(5)


# ---------------------------------------------------------------------------------------------
# Methods and routes


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/backdoor", {"GET", "POST", "DELETE"}),
    ("PATCH", "/backdoor", {"GET", "POST", "DELETE"}),
    ("GET", "/publish", {"POST"}),
    ("DELETE", "/publish", {"POST"}),
    ("POST", "/metrics", {"GET"}),
    ("DELETE", "/metrics", {"GET"}),
    ("POST", "/healthz", {"GET"}),
])
def test_other_method_is_405_with_allow(admin_qri, method, path, allowed):
    srv = admin_qri()
    resp = srv.admin(method, path, content=b"x=1" if method in ("POST", "PUT", "PATCH") else None)
    assert_json_error(resp, 405)
    allow = {t.strip().upper() for t in (resp.headers.get("allow") or "").split(",") if t.strip()}
    assert allowed <= allow and method not in allow, f"Allow: {resp.headers.get('allow')!r}"


@pytest.mark.parametrize("path", ["/", "/nope", "/backdoor/001", "/stream?p=1&s=x", "/Backdoor"])
def test_unknown_route_is_404(admin_qri, path):
    assert_json_error(admin_qri().admin("GET", path), 404)


# ---------------------------------------------------------------------------------------------
# Keep-alive, pipelining, idle timeout


def test_100_requests_on_one_raw_connection(admin_qri):
    srv = admin_qri()
    stream = srv.stream("ka", "c")
    conn = srv.admin_connect()
    for i in range(100):
        if i % 2:
            conn.sendall(srv.admin_bytes("POST", "/publish", body=f"peer=ka&checksum=c&message=m{i}".encode()))
            resp = read_response(conn, "POST")
            assert resp.status == 202 and published(json.loads(resp.body)) == {"delivered": 1}, (i, resp.status, resp.body)
        else:
            conn.sendall(srv.admin_bytes("GET", "/healthz" if i % 4 else "/backdoor"))
            resp = read_response(conn)
            assert resp.status == 200, (i, resp.status, resp.body)
        assert "close" not in resp.headers.tokens("connection"), f"request {i}: Connection: close"
    got = [e.data for e in stream.messages_until("m99")]
    assert got == [f"m{i}" for i in range(1, 100, 2)]


def test_100_requests_with_httpx_use_one_tcp_connection(admin_qri):
    srv = admin_qri()
    before = srv.metric("qri_tls_handshakes_total", result="ok")
    client = srv.admin_client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
    for i in range(100):
        resp = client.post("/publish", data={"peer": "p", "checksum": "c", "message": str(i)}) if i % 2 \
            else client.get("/backdoor?type=001")
        assert resp.status_code in (200, 202), (i, resp.status_code, resp.text)
    samples = srv.metrics()
    assert srv.metric("qri_tls_handshakes_total", samples, result="ok") == before + 1, "more than one TLS connection"
    assert srv.metric("qri_connections", samples, listener="admin") == 2    # this client's and metrics'
    assert srv.metric("qri_messages_received_total", samples, source="publish") == 50


def test_pipelined_requests_are_answered_in_order(admin_qri):
    srv = admin_qri()
    conn = srv.admin_connect()
    requests = [
        ("POST", srv.admin_bytes("POST", "/backdoor", {"Content-Type": "application/x-www-form-urlencoded"},
                                 b"type=007&message=pipelined")),
        ("GET", srv.admin_bytes("GET", "/backdoor?type=007")),
        ("GET", srv.admin_bytes("GET", "/nope")),
        ("DELETE", srv.admin_bytes("DELETE", "/backdoor?type=007")),
        ("GET", srv.admin_bytes("GET", "/backdoor?type=007")),
        ("GET", srv.admin_bytes("GET", "/healthz")),
    ]
    conn.sendall(b"".join(raw for _, raw in requests))      # one write
    answers = [read_response(conn, method) for method, _ in requests]
    assert [r.status for r in answers] == [204, 200, 404, 204, 200, 200]
    assert json.loads(answers[1].body) == {"type": "007", "message": "pipelined"}
    assert json.loads(answers[4].body) == {"type": "007", "message": None}
    assert answers[5].body.strip() == b"ok"


def test_pipelined_three_in_one_send(admin_qri):
    srv = admin_qri()
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("GET", "/backdoor?type=001") + srv.admin_bytes("GET", "/healthz")
                 + srv.admin_bytes("GET", "/backdoor"))
    first, second, third = read_response(conn), read_response(conn), read_response(conn)
    assert (first.status, json.loads(first.body)) == (200, {"type": "001", "message": None})
    assert (second.status, second.body.strip()) == (200, b"ok")
    assert (third.status, json.loads(third.body)) == (200, [])


def test_pipelined_connection_close_ends_the_connection(admin_qri):
    srv = admin_qri()
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("GET", "/healthz") + srv.admin_bytes("GET", "/healthz", {"Connection": "close"})
                 + srv.admin_bytes("POST", "/backdoor", body=b"type=001&message=after-close"))
    assert read_response(conn).status == 200
    second = read_response(conn)
    assert second.status == 200 and "close" in second.headers.tokens("connection")
    rest = conn.read_to_end(time.monotonic() + 5)
    now_stored = srv.admin("GET", "/backdoor").json()
    assert rest == b"" and now_stored == [], \
        f"a request after Connection: close was served: answer {rest[:120]!r}, stored now {now_stored}"


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(admin_qri):
    srv = admin_qri("--idle-timeout", "1")
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("GET", "/healthz"))
    assert read_response(conn).status == 200
    start = time.monotonic()
    how = conn.wait_closed(5)
    elapsed = time.monotonic() - start
    assert elapsed >= 0.7, f"closed after {elapsed:.2f}s, before the 1 s idle timeout ({how})"
    assert srv.admin_client().get("/healthz").status_code == 200
    assert srv.metric("qri_connections_rejected_total", reason="idle_timeout") >= 1


def test_requests_keep_a_connection_from_idling_out(admin_qri):
    srv = admin_qri("--idle-timeout", "1")
    conn = srv.admin_connect()
    start = time.monotonic()
    while time.monotonic() - start < 2.5:     # 2.5 s of traffic on a 1 s idle timeout
        conn.sendall(srv.admin_bytes("GET", "/healthz"))
        assert read_response(conn).status == 200
        time.sleep(0.3)


def test_idle_timeout_does_not_cut_a_request_in_progress_short_of_the_header_timeout(admin_qri):
    # From the first byte of the next request, HEADER_TIMEOUT counts (here longer than IDLE).
    srv = admin_qri("--idle-timeout", "1", "--header-timeout", "3")
    conn = srv.admin_connect()
    raw = srv.admin_bytes("GET", "/backdoor")
    conn.sendall(raw[:10])
    start = time.monotonic()
    with pytest.raises(Deadline):
        conn.recv_some(time.monotonic() + 1.8)       # still open past the idle timeout
    conn.sendall(raw[10:])
    assert read_response(conn).status == 200, "request finished within the header timeout"
    assert time.monotonic() - start < 3


# ---------------------------------------------------------------------------------------------
# curl, as the README shows it


def test_curl_examples(admin_qri, tls_files):
    srv = admin_qri()
    stream = srv.stream("1", "x")
    base = ["curl", "-sS", "--cacert", str(tls_files.ca_crt), "-w", "\n%{http_code}"]
    auth = ["-H", f"Authorization: Bearer {srv.admin_token}"]
    url = f"https://127.0.0.1:{srv.admin_port}"

    def curl(*args):
        out = subprocess.run(base + list(args), capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, f"curl {args}: {out.stderr}"
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body

    assert curl(*auth, "-d", "type=001", "-d", "message=Maintenance at 18:00", f"{url}/backdoor") == (204, "")
    assert stream.wait_for(lambda e: not e.is_tick).data == "001Maintenance at 18:00"
    code, body = curl(*auth, f"{url}/backdoor")
    assert (code, json.loads(body)) == (200, [{"type": "001", "message": "Maintenance at 18:00"}])
    code, body = curl(*auth, f"{url}/backdoor?type=001")
    assert (code, json.loads(body)) == (200, {"type": "001", "message": "Maintenance at 18:00"})
    assert curl(*auth, "-X", "DELETE", f"{url}/backdoor?type=001") == (204, "")
    assert stream.wait_for(lambda e: not e.is_tick).data == "001delete"
    code, body = curl(*auth, "-H", "Content-Type: application/json",
                      "-d", '{"peer": "1", "checksum": "x", "message": "hi"}', f"{url}/publish")
    assert (code, published(json.loads(body))) == (202, {"delivered": 1})
    assert stream.wait_for(lambda e: not e.is_tick).data == "hi"
    code, body = curl(*auth, f"{url}/metrics")
    assert code == 200 and 'qri_streams{protocol="h1"} 1' in body.replace("1.0", "1")
    assert curl(f"{url}/healthz") == (200, "ok")
    code, body = curl(f"{url}/backdoor")
    assert code == 401 and json.loads(body)["error"]


# ---------------------------------------------------------------------------------------------
# Plain HTTP


def test_admin_plaintext(admin_qri, tls_files):
    # A short header timeout: a ClientHello sent to a plain HTTP port may wait for it.
    srv = admin_qri("--admin-plaintext", "--header-timeout", "1")
    assert srv.admin_url.startswith("http://")
    stream = srv.stream("p", "c")                       # the public listener is still TLS
    assert srv.admin_client(token=None).get("/healthz").text.strip() == "ok"
    assert_401_bearer(srv.admin_client(token=None).get("/backdoor"))
    assert srv.admin("POST", "/backdoor", data={"type": "010", "message": "plain"}).status_code == 204
    assert stream.wait_for(lambda e: e.data.startswith("010")).data == "010plain"
    assert srv.admin("GET", "/backdoor").json() == [{"type": "010", "message": "plain"}]
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
        TLSConn(srv.admin_port, tls_files.ca_crt, timeout=4)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://{HOST}:{srv.admin_port}/healthz", verify=client_context(tls_files.ca_crt), timeout=4)


def test_admin_is_tls_by_default_with_the_public_certificate(admin_qri, tls_files):
    srv = admin_qri()
    conn = TLSConn(srv.admin_port, tls_files.ca_crt)
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    pub = TLSConn(srv.public_port, tls_files.ca_crt)
    assert conn.sock.getpeercert(True) == pub.sock.getpeercert(True)
    conn.close()
    pub.close()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{HOST}:{srv.admin_port}/healthz", timeout=5)


# ---------------------------------------------------------------------------------------------
# CORS


def preflight(srv, origin, method="POST"):
    return srv.admin_client(token=None).options("/backdoor", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})


def tokens(value):
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def test_cors_preflight_from_a_listed_origin(admin_qri):
    srv = admin_qri("--cors-origins", "https://ops.example,https://app.example")
    for origin in ("https://ops.example", "https://app.example"):
        resp = preflight(srv, origin)
        assert resp.status_code == 204, (resp.status_code, resp.text)
        assert resp.headers.get("access-control-allow-origin") == origin
        assert "origin" in tokens(resp.headers.get("vary"))
        assert tokens(resp.headers.get("access-control-allow-methods")) == {"get", "post", "delete"}
        assert {"authorization", "content-type"} <= tokens(resp.headers.get("access-control-allow-headers"))
    # The request itself carries the origin back too.
    resp = srv.admin("POST", "/backdoor", data={"type": "011", "message": "cors"}, headers={"Origin": "https://ops.example"})
    assert resp.status_code == 204
    assert resp.headers.get("access-control-allow-origin") == "https://ops.example"


def test_cors_preflight_with_default_star(admin_qri):
    srv = admin_qri()
    resp = preflight(srv, "https://anything.example", "DELETE")
    assert resp.status_code == 204, (resp.status_code, resp.text)
    assert resp.headers.get("access-control-allow-origin") in ("*", "https://anything.example")
    assert tokens(resp.headers.get("access-control-allow-methods")) == {"get", "post", "delete"}
    assert {"authorization", "content-type"} <= tokens(resp.headers.get("access-control-allow-headers"))


def test_cors_unlisted_origin_gets_no_allow_origin(admin_qri):
    srv = admin_qri("--cors-origins", "https://ops.example")
    resp = preflight(srv, "https://evil.example")
    assert "access-control-allow-origin" not in resp.headers, resp.headers
    resp = srv.admin("GET", "/backdoor", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers, resp.headers


def test_options_without_preflight_header_needs_the_token(admin_qri):
    srv = admin_qri()
    resp = srv.admin_client(token=None).options("/backdoor", headers={"Origin": "https://a.example"})
    assert resp.status_code in (401, 405), (resp.status_code, resp.text)
