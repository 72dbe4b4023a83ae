"""OCSP stapling from `--ocsp-file` (SPEC.md, *Command line*): a DER response made by the openssl
CLI as responder is stapled while valid — for the certificate in use, thisUpdate ≤ now <
nextUpdate with 5 minutes of skew — and re-read on SIGHUP; one that does not fit is logged and
not stapled. `openssl s_client -status` is the client."""

import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from qri_gateway import make_cert, make_chain
from qri_http import HOST

STAPLED = "OCSP Response Status: successful"
NOT_STAPLED = "OCSP response: no response sent"
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def openssl(*args, cwd, prefix=()):
    result = subprocess.run([*prefix, "openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{result.stderr}"
    return result.stdout


def ocsp_response(dir: Path, crt: Path, issuer_crt: Path, issuer_key: Path, name="resp",
                  revoked=False, faketime=None) -> Path:
    """`dir/name.der`: the issuer's OCSP response for `crt`, valid one day from now (or from
    `faketime`, a date(1) phrase like "-3 days", when given), made by `openssl ocsp` as responder over a one-line
    index.txt CA database."""
    dir.mkdir(parents=True, exist_ok=True)
    serial = openssl("x509", "-noout", "-serial", "-in", crt, cwd=dir).strip().split("=", 1)[1]
    subject = openssl("x509", "-noout", "-subject", "-nameopt", "compat", "-in", crt, cwd=dir).strip().split("=", 1)[1]
    status, revocation = ("R", "260101000000Z") if revoked else ("V", "")
    (dir / f"{name}.index.txt").write_text(f"{status}\t491231000000Z\t{revocation}\t{serial.upper()}\tunknown\t{subject}\n")
    openssl("ocsp", "-issuer", issuer_crt, "-cert", crt, "-no_nonce", "-reqout", f"{name}.req.der", cwd=dir)
    prefix = ("faketime", faketime) if faketime else ()
    openssl("ocsp", "-index", f"{name}.index.txt", "-CA", issuer_crt, "-rsigner", issuer_crt, "-rkey", issuer_key,
            "-reqin", f"{name}.req.der", "-respout", f"{name}.der", "-ndays", "1", cwd=dir, prefix=prefix)
    return dir / f"{name}.der"


def next_update(resp: Path) -> float:
    text = openssl("ocsp", "-respin", resp, "-resp_text", "-noverify", cwd=resp.parent)
    line = next(l for l in text.splitlines() if "Next Update:" in l)
    return ssl.cert_time_to_seconds(line.split("Next Update:", 1)[1].strip())


def status(port, *args) -> str:
    """What `openssl s_client -status` says about the staple of a new handshake."""
    result = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost",
                             "-status", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    out = result.stdout.decode("latin-1", "replace")
    assert STAPLED in out or NOT_STAPLED in out, out[-2000:]
    return out


def replace_file(path: Path, source: Path):
    tmp = path.with_name(path.name + ".new")
    shutil.copy(source, tmp)
    tmp.replace(path)


@pytest.fixture
def good(tls_files, tmp_path) -> Path:
    return ocsp_response(tmp_path / "ocsp", tls_files.server_crt, tls_files.ca_crt, tls_files.ca_key)


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_response_is_stapled(qri, good, version):
    srv = qri("--ocsp-file", good)
    out = status(srv.public_port, version)
    assert STAPLED in out and "Cert Status: good" in out, out[-2000:]
    assert srv.wait_log(r"OCSP response stapled until nextUpdate \d{4}-\d\d-\d\dT")


def test_no_file_no_staple(qri):
    assert NOT_STAPLED in status(qri().public_port)


@pytest.mark.parametrize("responder", ["intermediate", "sibling", "impostor"])
def test_chain_issuer_is_used_to_match(qri, tls_files, tmp_path, responder):
    """With the issuer in the certificate file the whole CertID is matched: the
    intermediate's response for the leaf is stapled; its response for a sibling certificate
    (same issuer, same name) is not, nor a response for the leaf's serial from an impostor CA
    of the intermediate's name and another key (issuer name hash alike, key hash not)."""
    chain, key, inter_crt = make_chain(tls_files, tmp_path / "chain")
    inter_key = tmp_path / "chain" / "intermediate.key"
    leaf = tmp_path / "chain" / "leaf.crt"
    if responder == "intermediate":
        resp = ocsp_response(tmp_path / "ocsp", leaf, inter_crt, inter_key)
    elif responder == "sibling":
        sibling, _ = make_cert(tmp_path / "chain", "sibling", inter_crt, inter_key)
        resp = ocsp_response(tmp_path / "ocsp", sibling, inter_crt, inter_key)
    else:
        impostor, impostor_key = make_cert(tmp_path / "impostor", "impostor", tls_files.ca_crt, tls_files.ca_key,
                                           cn="Qri test intermediate", extensions="inter")
        resp = ocsp_response(tmp_path / "ocsp", leaf, impostor, impostor_key)
        assert "Cert Status: good" in openssl("ocsp", "-respin", resp, "-resp_text", "-noverify", cwd=tmp_path)
    srv = qri("--cert", chain, "--key", key, "--ocsp-file", resp)
    if responder == "intermediate":
        assert STAPLED in status(srv.public_port)
    else:
        srv.wait_log(r"OCSP response not stapled: no response for the certificate in use")
        assert NOT_STAPLED in status(srv.public_port)


@pytest.mark.parametrize("case, logged", [
    ("other certificate", "no response for the certificate in use"),
    ("revoked", "certificate status revoked"),
    ("expired", "expired at nextUpdate"),
    ("not yet valid", "yet: thisUpdate is"),
    ("empty", "empty file"),
    ("garbage", "not a DER OCSP response"),
])
def test_response_that_does_not_fit_is_logged_and_not_stapled(qri, tls_files, tmp_path, case, logged):
    d = tmp_path / "ocsp"
    if case == "other certificate":
        other, _ = make_cert(tmp_path / "other", "other", tls_files.ca_crt, tls_files.ca_key)
        resp = ocsp_response(d, other, tls_files.ca_crt, tls_files.ca_key)
    elif case == "revoked":
        resp = ocsp_response(d, tls_files.server_crt, tls_files.ca_crt, tls_files.ca_key, revoked=True)
    elif case in ("expired", "not yet valid"):
        if not shutil.which("faketime"):
            pytest.skip("faketime (Debian package faketime) is not installed")
        shift = "-3 days" if case == "expired" else "+1 day"
        resp = ocsp_response(d, tls_files.server_crt, tls_files.ca_crt, tls_files.ca_key, faketime=shift)
    else:
        d.mkdir()
        resp = d / "resp.der"
        resp.write_bytes(b"" if case == "empty" else b"\x30\x03\x0a\x01" + b"not ocsp")
    srv = qri("--ocsp-file", resp)
    srv.wait_log(rf"warning .*OCSP response not stapled.*{logged}")
    assert NOT_STAPLED in status(srv.public_port)


def test_missing_file_is_a_one_line_startup_error(qri_cli, tmp_path):
    missing = tmp_path / "nowhere" / "resp.der"
    result = qri_cli("--ocsp-file", missing)
    lines = [l for l in (result.stdout + result.stderr).splitlines() if l.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and str(missing) in lines[0], lines


def test_sighup_rereads_the_response(qri, tls_files, tmp_path, good):
    other, _ = make_cert(tmp_path / "other", "other", tls_files.ca_crt, tls_files.ca_key)
    live = tmp_path / "live.der"
    shutil.copy(ocsp_response(tmp_path / "ocsp", other, tls_files.ca_crt, tls_files.ca_key, name="other"), live)
    srv = qri("--ocsp-file", live)
    srv.wait_log("OCSP response not stapled")
    assert NOT_STAPLED in status(srv.public_port)

    mark = len(srv.lines)
    replace_file(live, good)
    srv.signal(signal.SIGHUP)
    srv.wait_log("OCSP response stapled until", start=mark)
    assert STAPLED in status(srv.public_port)

    # A file gone at reload fails the reload as a missing certificate would: the old
    # context, with its staple, stays.
    mark = len(srv.lines)
    live.unlink()
    srv.signal(signal.SIGHUP)
    srv.wait_log(live.name + r".*certificate reload failed; keeping the old certificate", start=mark)
    assert STAPLED in status(srv.public_port)

    # An unfit one replaces the staple with none.
    mark = len(srv.lines)
    replace_file(live, tmp_path / "ocsp" / "other.der")
    srv.signal(signal.SIGHUP)
    srv.wait_log("OCSP response not stapled", start=mark)
    assert NOT_STAPLED in status(srv.public_port)


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime (Debian package faketime) is not installed")
def test_window_is_checked_at_each_handshake(qri, tls_files, tmp_path, good):
    """The gateway's clock moves (libfaketime, re-read at each call): the same loaded response
    is stapled up to 5 minutes past nextUpdate, and not after."""
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    # Under libfaketime the Swift runtime does not see argv: every option goes by environment.
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1",
           "DONT_FAKE_MONOTONIC": "1", "QRI_LISTEN": f"{HOST}:0", "QRI_ADMIN_LISTEN": f"{HOST}:0",
           "QRI_INGEST_LISTEN": "off", "QRI_CERT": str(tls_files.server_crt), "QRI_KEY": str(tls_files.server_key),
           "QRI_OCSP_FILE": str(good)}
    srv = qri(env=env)
    assert STAPLED in status(srv.public_port)
    until = next_update(good)
    for past, expected in ((240, STAPLED), (360, NOT_STAPLED)):
        clock.write_text(f"+{int(until + past - time.time())}\n")
        assert expected in status(srv.public_port), f"{past} s past nextUpdate"
    clock.write_text("+0\n")
    assert STAPLED in status(srv.public_port)
