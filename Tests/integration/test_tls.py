"""TLS on the public listener: versions 1.2 and 1.3 only, ALPN http/1.1 (SPEC.md, *Command line*)."""

import socket
import ssl
import subprocess
import threading

import pytest

from qri_http import HOST, TLSConn, client_context

# OpenSSL 3 allows TLS 1.0/1.1 only at security level 0, on either side.
LEGACY_CIPHERS = "DEFAULT@SECLEVEL=0"


def tls11_client_context(ca):
    ctx = client_context(ca, minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers(LEGACY_CIPHERS)
    return ctx


class LegacyServer:
    """A control server that does speak TLS 1.1: it proves that the TLS 1.1 clients below can
    really make a TLS 1.1 handshake, so their failure against Qri is Qri's refusal."""

    def __init__(self, tls):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1
        self.ctx.set_ciphers(LEGACY_CIPHERS)
        self.ctx.load_cert_chain(str(tls.server_crt), str(tls.server_key))
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.listener.close()


@pytest.fixture
def legacy_server(tls_files):
    server = LegacyServer(tls_files)
    yield server
    server.close()


def test_tls11_refused_python(qri, tls_files, legacy_server):
    ctx = tls11_client_context(tls_files.ca_crt)
    control = TLSConn(legacy_server.port, tls_files.ca_crt, context=ctx)
    assert control.sock.version() == "TLSv1.1", "control: this client can do TLS 1.1"
    control.close()

    srv = qri()
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        TLSConn(srv.public_port, tls_files.ca_crt, context=ctx)


def s_client(port, *args, input=b"", timeout=20):
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost", *args],
        input=input, capture_output=True, timeout=timeout)


def test_tls11_refused_openssl_s_client(qri, tls_files, legacy_server):
    args = ["-tls1_1", "-cipher", LEGACY_CIPHERS, "-CAfile", str(tls_files.ca_crt)]
    # s_client prints "Cipher is (NONE)" when no session was made (and, either way, the
    # version it tried as "Protocol").
    control = s_client(legacy_server.port, *args)
    out = control.stdout.decode("latin-1", "replace")
    assert control.returncode == 0 and "Cipher is (NONE)" not in out and "Protocol  : TLSv1.1" in out, \
        f"control: s_client can do TLS 1.1:\n{out[-1500:]}"

    result = s_client(qri().public_port, *args)
    out = result.stdout.decode("latin-1", "replace")
    assert result.returncode != 0 and "Cipher is (NONE)" in out, f"s_client -tls1_1 connected:\n{out[-1500:]}"


@pytest.mark.parametrize("version, name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls12_and_tls13_accepted(qri, tls_files, version, name):
    srv = qri()
    ctx = client_context(tls_files.ca_crt, minimum_version=version, maximum_version=version)
    stream = srv.stream("p", "c", context=ctx)
    assert stream.conn.sock.version() == name
    assert stream.first_tick.is_tick


@pytest.mark.parametrize("flag, name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls12_and_tls13_openssl_s_client(qri, tls_files, flag, name):
    srv = qri()
    request = f"GET /nope HTTP/1.1\r\nHost: localhost:{srv.public_port}\r\n\r\n".encode()
    result = s_client(srv.public_port, flag, "-CAfile", str(tls_files.ca_crt), "-verify_return_error",
                      "-alpn", "http/1.1", "-ign_eof", input=request)
    out = result.stdout.decode("latin-1", "replace")
    assert f"Protocol  : {name}" in out or f"New, {name}" in out, out[-1500:]
    assert "Verify return code: 0 (ok)" in out
    assert "ALPN protocol: http/1.1" in out
    assert "HTTP/1.1 404" in out, "the request went through"


@pytest.mark.parametrize("offered", [["http/1.1"], ["spdy/3", "http/1.1"]])
def test_alpn_selects_http11(qri, tls_files, offered):
    srv = qri()
    stream = srv.stream("p", "c", context=client_context(tls_files.ca_crt, alpn=offered))
    assert stream.conn.sock.selected_alpn_protocol() == "http/1.1"


@pytest.mark.parametrize("offered", [["h2", "http/1.1"], ["http/1.1", "h2"], ["h2"]])
def test_alpn_selects_h2_on_the_public_listener_only(admin_qri, tls_files, offered):
    """The server's order wins: h2 whenever offered on the public listener (SPEC.md,
    *HTTP/2*); the admin listener selects http/1.1 and fails a client offering only h2."""
    srv = admin_qri()
    public = TLSConn(srv.public_port, tls_files.ca_crt, context=client_context(tls_files.ca_crt, alpn=offered))
    assert public.sock.selected_alpn_protocol() == "h2"
    public.close()
    if "http/1.1" in offered:
        admin = TLSConn(srv.admin_port, tls_files.ca_crt, context=client_context(tls_files.ca_crt, alpn=offered))
        assert admin.sock.selected_alpn_protocol() == "http/1.1"
        admin.close()
    else:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            TLSConn(srv.admin_port, tls_files.ca_crt, context=client_context(tls_files.ca_crt, alpn=offered))


def test_no_alpn_is_fine(qri, tls_files):
    srv = qri()
    stream = srv.stream("p", "c", context=client_context(tls_files.ca_crt, alpn=None))
    assert stream.conn.sock.selected_alpn_protocol() is None


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("offered", [["h3"], ["spdy/3", "h3"]])
def test_only_other_protocols_offered_fails_the_handshake(qri, tls_files, version, offered):
    srv = qri()
    ctx = client_context(tls_files.ca_crt, alpn=offered, minimum_version=version, maximum_version=version)
    # RFC 7301 says: a no_application_protocol alert; any failed handshake passes here.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        TLSConn(srv.public_port, tls_files.ca_crt, context=ctx)
    # The gateway is fine afterwards.
    assert srv.stream("p", "c").first_tick.is_tick


def test_server_still_serves_after_failed_handshakes(qri, tls_files):
    srv = qri()
    for _ in range(5):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            TLSConn(srv.public_port, tls_files.ca_crt, context=tls11_client_context(tls_files.ca_crt))
        raw = socket.create_connection((HOST, srv.public_port))
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")      # plain HTTP to a TLS port
        raw.close()
    assert srv.stream("p", "c").first_tick.is_tick
