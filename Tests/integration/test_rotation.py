"""Certificate rotation on SIGHUP (SPEC.md, *Certificate rotation*): new handshakes on every
listener get the new certificate, open streams are untouched; a bad pair changes nothing."""

import re
import shutil
import signal
import ssl
import subprocess
import time

import pytest

from qri_gateway import cert_info, make_cert, make_chain, make_key
from qri_http import HOST, Deadline, TLSConn, read_response, wait_until
from qri_ingest import ber_frame


def der(crt_path):
    """DER of the first certificate of a PEM file."""
    pem = crt_path.read_text()
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def served(port, tls_files):
    """DER of the certificate a new handshake on `port` gets (verified against the test CA)."""
    conn = TLSConn(port, tls_files.ca_crt, timeout=5)
    try:
        return conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


def replace_file(path, content: bytes):
    """Replaces `path` atomically, as certificate tools do."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content)
    tmp.replace(path)


@pytest.fixture
def live(tls_files, tmp_path):
    """Copies of the test certificate and key that the test may replace."""
    d = tmp_path / "live"
    d.mkdir()
    crt, key = d / "server.crt", d / "server.key"
    shutil.copy(tls_files.server_crt, crt)
    shutil.copy(tls_files.server_key, key)
    return crt, key


def start(admin_qri, live, *args):
    crt, key = live
    return admin_qri("--cert", crt, "--key", key, *args)


def test_sighup_rotates_to_a_second_certificate(admin_qri, tls_files, live, tmp_path):
    srv = start(admin_qri, live)
    old = der(tls_files.server_crt)
    assert served(srv.public_port, tls_files) == old
    stream = srv.stream("p", "c")
    admin_conn = srv.admin_connect()
    admin_conn.sendall(srv.admin_bytes("GET", "/healthz"))
    assert read_response(admin_conn).status == 200
    ingest = srv.ingest()

    new_crt, new_key = make_cert(tmp_path / "second", "second", tls_files.ca_crt, tls_files.ca_key,
                                 cn="qri rotated", days=11)
    new = der(new_crt)
    info = cert_info(new_crt)
    assert info["serial"] != cert_info(tls_files.server_crt)["serial"]
    replace_file(live[1], new_key.read_bytes())
    replace_file(live[0], new_crt.read_bytes())
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)

    wait_until(lambda: served(srv.public_port, tls_files) == new, 10, "the new certificate on the public listener")
    assert served(srv.admin_port, tls_files) == new, "the admin listener still serves the old certificate"
    conn = TLSConn(srv.public_port, tls_files.ca_crt)
    peer = conn.sock.getpeercert()
    conn.close()
    assert int(peer["serialNumber"], 16) == info["serial"]
    assert ("commonName", "qri rotated") in [rdn[0] for rdn in peer["subject"]]

    # What was open before is untouched.
    ingest.frames(ber_frame("p", "c", "after rotation"))
    assert stream.wait_for(lambda e: not e.is_tick).data == "after rotation"
    admin_conn.sendall(srv.admin_bytes("GET", "/healthz"))
    assert read_response(admin_conn).status == 200

    line = srv.wait_log(r"qri rotated", 5, start=mark).string
    expiry = time.gmtime(info["not_after"])
    assert str(info["not_after"]) in line or time.strftime("%Y-%m-%d", expiry) in line \
        or time.strftime("%b %e %H:%M:%S %Y", expiry) in line or time.strftime("%b %d %H:%M:%S %Y", expiry) in line, \
        f"the reload log line does not give the expiry ({info['not_after']}): {line}"
    samples = srv.metrics()
    assert srv.metric("qri_cert_reloads_total", samples, result="ok") == 1
    assert srv.metric("qri_cert_reloads_total", samples, result="failed") == 0
    assert srv.metric("qri_cert_expiry_timestamp_seconds", samples) == info["not_after"]


BREAKAGES = {
    "mismatched-key": lambda crt, key, d, tls: replace_file(key, make_key(d, "other").read_bytes()),
    "garbage-cert": lambda crt, key, d, tls: replace_file(
        crt, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
    "empty-cert": lambda crt, key, d, tls: replace_file(crt, b""),
    "missing-key": lambda crt, key, d, tls: key.unlink(),
    "cert-of-another-key": lambda crt, key, d, tls: replace_file(
        crt, make_cert(d, "another", tls.ca_crt, tls.ca_key)[0].read_bytes()),
}

WHY = {
    "mismatched-key": r"(?i)match",
    "garbage-cert": r"(?i)cert",
    "empty-cert": r"(?i)cert",
    "missing-key": r"(?i)key",
    "cert-of-another-key": r"(?i)match",
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_sighup_with_a_bad_pair_keeps_the_old_certificate(admin_qri, tls_files, live, tmp_path, breakage):
    srv = start(admin_qri, live)
    old = der(tls_files.server_crt)
    expiry_before = srv.metric("qri_cert_expiry_timestamp_seconds")
    stream = srv.stream("p", "c")
    BREAKAGES[breakage](live[0], live[1], tmp_path / "bad", tls_files)
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)

    srv.wait_metric("qri_cert_reloads_total", lambda v: v == 1, result="failed")
    line = srv.wait_log(r"(?i)(reload|certificate|key).*(fail|error|cannot|invalid)|(fail|error|cannot).*(reload|certificate|key)",
                        5, start=mark).string
    assert re.search(WHY[breakage], line), f"the log does not say why the reload failed: {line}"
    assert served(srv.public_port, tls_files) == old
    assert served(srv.admin_port, tls_files) == old
    assert srv.metric("qri_cert_reloads_total", result="ok") == 0
    assert srv.metric("qri_cert_expiry_timestamp_seconds") == expiry_before
    srv.qripy().send(b"p", b"c", b"still alive")
    assert stream.wait_for(lambda e: not e.is_tick).data == "still alive"
    assert srv.stream("p2", "c2").first_tick.is_tick

    # Fixed files load on the next SIGHUP.
    new_crt, new_key = make_cert(tmp_path / "fixed", "fixed", tls_files.ca_crt, tls_files.ca_key, cn="qri fixed")
    replace_file(live[1], new_key.read_bytes())
    replace_file(live[0], new_crt.read_bytes())
    srv.signal(signal.SIGHUP)
    wait_until(lambda: served(srv.public_port, tls_files) == der(new_crt), 10, "the fixed certificate")
    assert srv.metric("qri_cert_reloads_total", result="ok") == 1


def showcerts(port, ca):
    out = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost",
                          "-showcerts", "-CAfile", str(ca), "-verify_return_error"],
                         input=b"", capture_output=True, timeout=20).stdout.decode("latin-1")
    return out.count("-----BEGIN CERTIFICATE-----"), "Verify return code: 0 (ok)" in out, out


def test_sighup_to_a_certificate_with_its_chain(admin_qri, tls_files, live, tmp_path):
    srv = start(admin_qri, live)
    count, verified, _ = showcerts(srv.public_port, tls_files.ca_crt)
    assert (count, verified) == (1, True)
    chain, key, _ = make_chain(tls_files, tmp_path / "chain")
    replace_file(live[1], key.read_bytes())
    replace_file(live[0], chain.read_bytes())
    srv.signal(signal.SIGHUP)
    srv.wait_metric("qri_cert_reloads_total", lambda v: v == 1, result="ok")
    # Only the root is trusted: the handshake verifies only if the intermediate is sent.
    count, verified, out = showcerts(srv.public_port, tls_files.ca_crt)
    assert count == 2 and verified, f"after rotation: {count} certificates, verified={verified}\n{out[-1500:]}"


def test_repeated_sighups_keep_serving(admin_qri, tls_files, live):
    srv = start(admin_qri, live, "--tick-interval", "1")
    stream = srv.stream("p", "c")
    for _ in range(20):
        srv.signal(signal.SIGHUP)
        time.sleep(0.02)
    srv.wait_metric("qri_cert_reloads_total", lambda v: v >= 1, result="ok")
    assert srv.metric("qri_cert_reloads_total", result="failed") == 0
    srv.qripy().send(b"p", b"c", b"after many")
    assert stream.wait_for(lambda e: not e.is_tick).data == "after many"
    assert srv.proc.poll() is None
