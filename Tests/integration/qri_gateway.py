"""The gateway under test: test certificates and the `qri` process (`.build/release/qri`)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

import pytest

from qri_http import DEFAULT_WAIT, HOST, Deadline, PlainConn, Response, SSEStream, TLSConn, \
    client_context, parse_prometheus, read_response, read_response_body, read_response_head, \
    request_bytes, stream_target, wait_until
from qri_ingest import Ingest, QriPy

REPO = Path(__file__).resolve().parents[2]
# QRI_TEST_BINARY points the tests at another build (it is not passed on to the gateway).
BINARY = Path(os.environ.get("QRI_TEST_BINARY") or REPO / ".build" / "release" / "qri")

# Set by `make sanitize-test`: the binary is built with AddressSanitizer, whose quarantine
# and shadow memory make RSS meaningless and every path several times slower.
SANITIZED = bool(os.environ.get("QRI_TEST_SANITIZER"))
rss_test = pytest.mark.skipif(SANITIZED, reason="RSS under AddressSanitizer measures its quarantine")

LISTENING_RE = re.compile(r"listening public=([^\s\"',;]+) admin=([^\s\"',;]+) ingest=([^\s\"',;]+)")
START_DEADLINE = 20.0   # seconds for the `listening …` line
# The admin token the `admin_qri` fixture configures (long enough to be unmistakable in a log).
ADMIN_TOKEN = "qri-test-token-7d3f9b2e51c4a8"
STOP_DEADLINE = 10.0    # seconds after SIGTERM before SIGKILL


def require_binary() -> None:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} not found: run `make build` first", pytrace=False)


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    dir: Path
    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_tls_files(dir: Path, cn: str = "localhost") -> TLSFiles:
    """A test CA and an ECDSA P-256 server certificate for localhost and 127.0.0.1, made with
    the openssl CLI. Our own config files keep the system's openssl.cnf defaults out."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = ca\nprompt = no\n"
        "[dn]\nCN = Qri test CA\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    (dir / "server.cnf").write_text(
        f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n"
        "[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", "-new", "-config", "ca.cnf", *ec, "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "30", "-sha256", cwd=dir)
    _openssl("req", "-new", "-config", "server.cnf", *ec, "-keyout", "server.key",
             "-out", "server.csr", "-sha256", cwd=dir)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "30", "-sha256",
             "-extfile", "server.cnf", "-extensions", "leaf", cwd=dir)
    return TLSFiles(dir, dir / "ca.crt", dir / "ca.key", dir / "server.crt", dir / "server.key")


_LEAF_EXT = ("[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n"
             "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
             "[inter]\nbasicConstraints = critical, CA:TRUE, pathlen:0\n"
             "keyUsage = critical, keyCertSign, cRLSign\n"
             "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")


def make_key(dir: Path, name: str, key_type: str = "ec") -> Path:
    """A fresh private key, `dir/name.key`: ECDSA P-256 ("ec") or RSA 2048 ("rsa")."""
    dir.mkdir(parents=True, exist_ok=True)
    algorithm = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if key_type == "rsa" \
        else ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _openssl("genpkey", *algorithm, "-out", f"{name}.key", cwd=dir)
    return dir / f"{name}.key"


def make_cert(dir: Path, name: str, issuer_crt: Path, issuer_key: Path, cn: str = "localhost",
              days: int = 20, extensions: str = "leaf", key_type: str = "ec") -> tuple[Path, Path]:
    """A certificate `dir/name.crt` with a new key `dir/name.key`, signed by the issuer.
    `extensions`: "leaf" (server certificate for localhost and 127.0.0.1) or "inter" (an
    intermediate CA). Returns (certificate, key)."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / f"{name}.cnf").write_text(f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n" + _LEAF_EXT)
    make_key(dir, name, key_type)
    _openssl("req", "-new", "-config", f"{name}.cnf", "-key", f"{name}.key", "-out", f"{name}.csr",
             "-sha256", cwd=dir)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(issuer_crt), "-CAkey", str(issuer_key),
             "-set_serial", str(int.from_bytes(os.urandom(8), "big") | 1), "-out", f"{name}.crt",
             "-days", str(days), "-sha256", "-extfile", f"{name}.cnf", "-extensions", extensions, cwd=dir)
    return dir / f"{name}.crt", dir / f"{name}.key"


def make_chain(tls: TLSFiles, dir: Path, cn: str = "localhost", key_type: str = "ec") -> tuple[Path, Path, Path]:
    """An intermediate CA under the test CA and a leaf under it. Returns (chain file: leaf
    then intermediate, leaf key, intermediate certificate)."""
    inter_crt, inter_key = make_cert(dir, "intermediate", tls.ca_crt, tls.ca_key,
                                     cn="Qri test intermediate", days=25, extensions="inter")
    leaf_crt, leaf_key = make_cert(dir, "leaf", inter_crt, inter_key, cn=cn, key_type=key_type)
    chain = dir / "chain.crt"
    chain.write_bytes(leaf_crt.read_bytes() + inter_crt.read_bytes())
    return chain, leaf_key, inter_crt


def cert_info(crt: Path) -> dict:
    """subject (one line), serial (int) and notAfter (epoch seconds) of a PEM certificate."""
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-serial", "-enddate",
                          "-nameopt", "oneline", "-in", str(crt)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    import ssl as _ssl
    return {"subject": fields["subject"].strip(), "serial": int(fields["serial"], 16),
            "not_after": _ssl.cert_time_to_seconds(fields["notAfter"].strip())}


def output_lines(result) -> list[str]:
    """The non-blank lines a finished `qri` printed (stdout and stderr)."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def _split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def qri_command(tls: TLSFiles, workdir: Path, args: Iterable[str]) -> list[str]:
    """The command line: loopback port 0 everywhere, the test certificate, a private state
    file, then `args`; a base flag that `args` names is left out (no reliance on "last wins")."""
    args = [str(a) for a in args]
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    base = {
        "--listen": f"{HOST}:0",
        "--admin-listen": f"{HOST}:0",
        "--ingest-listen": f"{HOST}:0",
        "--cert": str(tls.server_crt),
        "--key": str(tls.server_key),
        "--state-file": str(workdir / "backdoor.json"),
    }
    cmd = [str(BINARY)]
    for flag, value in base.items():
        if flag not in given:
            cmd += [flag, value]
    return cmd + args


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so that a test run that
    is killed leaves no gateway behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


def qri_env(extra: Optional[dict] = None) -> dict:
    """The test's environment without any QRI_* variable (they are options), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRI_")}
    env.update(extra or {})
    return env


class QriServer:
    """A running gateway. Its stderr is drained by a thread into `lines`."""

    def __init__(self, tls: TLSFiles, workdir: Path, args: Iterable[str], env: Optional[dict]):
        self.tls = tls
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cmd = qri_command(tls, workdir, args)
        self.lines: list[str] = []
        self.stdout = bytearray()
        self.cond = threading.Condition()
        self.eof = False
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=qri_env(env), cwd=workdir,
                                     preexec_fn=_die_with_parent)
        self.threads = [threading.Thread(target=self._drain_stderr, daemon=True),
                        threading.Thread(target=self._drain_stdout, daemon=True)]
        for t in self.threads:
            t.start()
        self._owned: list = []
        self._qripy: Optional[QriPy] = None
        self._admin_client = None
        self.admin_plaintext = "--admin-plaintext" in self.cmd
        self.admin_token: Optional[str] = self._configured_token(env)
        try:
            m = self.wait_log(LISTENING_RE, START_DEADLINE)
        except Deadline as e:
            self.stop()
            pytest.fail(f"qri did not start: {e}\ncommand: {' '.join(self.cmd)}", pytrace=False)
        self.public_host, self.public_port = _split_host_port(m.group(1))
        self.admin_host, self.admin_port = _split_host_port(m.group(2))
        self.ingest_port: Optional[int] = None
        if m.group(3) != "off":
            _, self.ingest_port = _split_host_port(m.group(3))

    def _configured_token(self, env: Optional[dict]) -> Optional[str]:
        """The admin token this gateway was given: `--admin-token-file`, else QRI_ADMIN_TOKEN."""
        if "--admin-token-file" in self.cmd:
            path = Path(self.cmd[self.cmd.index("--admin-token-file") + 1])
            try:
                return (path if path.is_absolute() else self.workdir / path).read_text().strip() or None
            except OSError:
                return None
        return ((env or {}).get("QRI_ADMIN_TOKEN") or "").strip() or None

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- log

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _drain_stdout(self) -> None:
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
            self.stdout += chunk

    def log_text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout: float = DEFAULT_WAIT, start: int = 0) -> re.Match:
        """Waits for a stderr line (from index `start`) matching `pattern`."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = start
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = max(seen, len(self.lines))
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    why = "qri's stderr closed" if self.eof else f"{timeout:.1f}s passed"
                    tail = "\n".join(self.lines[-60:])
                    raise Deadline(f"{why} without a line matching {rx.pattern!r}; stderr:\n{tail}")
                self.cond.wait(remaining)

    # -- clients

    def _own(self, thing):
        self._owned.append(thing)
        return thing

    def connect(self, **kw) -> TLSConn:
        """A TLS connection to the public listener."""
        return self._own(TLSConn(self.public_port, self.tls.ca_crt, **kw))

    def request(self, method: str, target: str, headers: Optional[dict] = None, body: bytes = b"",
                raw: Optional[bytes] = None, timeout: float = DEFAULT_WAIT, **conn_kw) -> Response:
        """One request on a new connection to the public listener; `raw` replaces the whole
        request. The body of a 200 event stream is left unread."""
        conn = self.connect(**conn_kw)
        if raw is None:
            hdrs = {"Host": f"localhost:{self.public_port}", **(headers or {})}
            if body:
                hdrs.setdefault("Content-Length", str(len(body)))
            raw = (f"{method} {target} HTTP/1.1\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode("latin-1") + body
        conn.sendall(raw)
        deadline = time.monotonic() + timeout
        status, reason, hdrs_in = read_response_head(conn, deadline)
        is_stream = status == 200 and (hdrs_in.get("content-type") or "").startswith("text/event-stream")
        body_in = b"" if is_stream else read_response_body(conn, method, status, hdrs_in, deadline)
        return Response(status, reason, hdrs_in, body_in, conn)

    def stream(self, p="1", s="x", *, target: Optional[str] = None, headers: Optional[dict] = None,
               wait_tick: bool = True, timeout: float = DEFAULT_WAIT, **query_and_conn) -> SSEStream:
        """Opens `GET /stream` and, unless told not to, waits for the first `Tick`: from then on
        the stream is registered and receives the messages routed to its pair."""
        conn_kw = {k: query_and_conn.pop(k) for k in ("rcvbuf", "context", "suppress_ragged_eofs")
                   if k in query_and_conn}
        target = target or stream_target(p, s, **query_and_conn)
        resp = self.request("GET", target, headers={"Accept": "text/event-stream", **(headers or {})},
                            timeout=timeout, **conn_kw)
        assert resp.status == 200, f"GET {target}: {resp.status} {resp.text!r}"
        stream = SSEStream(resp.conn, resp.status, resp.headers)
        if wait_tick:
            stream.first_tick = stream.wait_for(lambda e: e.is_tick, timeout)
        return stream

    def ingest(self) -> Ingest:
        assert self.ingest_port, "ingest listener is off"
        return self._own(Ingest(self.ingest_port))

    def qripy(self) -> QriPy:
        """qri-py connected to this gateway (one per server, made on first use)."""
        if self._qripy is None:
            self._qripy = QriPy(self.ingest_port)
        return self._qripy

    # -- admin listener

    @property
    def admin_url(self) -> str:
        return f"{'http' if self.admin_plaintext else 'https'}://{HOST}:{self.admin_port}"

    def admin_client(self, token: object = True, **kw):
        """A new httpx.Client for the admin listener (TLS with the test CA unless
        --admin-plaintext); `token`: True for this gateway's token, None for no
        Authorization header, or a string to send instead."""
        import httpx
        headers = dict(kw.pop("headers", {}))
        if token is True:
            token = self.admin_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        verify = True if self.admin_plaintext else client_context(self.tls.ca_crt)
        client = httpx.Client(base_url=self.admin_url, verify=verify, headers=headers,
                              timeout=kw.pop("timeout", DEFAULT_WAIT), **kw)
        return self._own(client)

    def admin(self, method: str, path: str, **kw):
        """One admin request with this gateway's token on a kept httpx client (keep-alive)."""
        if self._admin_client is None:
            self._admin_client = self.admin_client()
        return self._admin_client.request(method, path, **kw)

    def admin_connect(self, **kw) -> TLSConn:
        """A raw connection to the admin listener (TLS unless --admin-plaintext)."""
        if self.admin_plaintext:
            return self._own(PlainConn(self.admin_port, **kw))
        return self._own(TLSConn(self.admin_port, self.tls.ca_crt, **kw))

    def admin_bytes(self, method: str, target: str, headers: Optional[dict] = None, body: bytes = b"",
                    auth: bool = True) -> bytes:
        """A raw admin request, with this gateway's token unless `auth` is false."""
        hdrs = {}
        if auth and self.admin_token:
            hdrs["Authorization"] = f"Bearer {self.admin_token}"
        hdrs.update(headers or {})
        return request_bytes(method, target, f"localhost:{self.admin_port}", hdrs, body)

    def admin_raw(self, raw: bytes, method: str = "GET", timeout: float = DEFAULT_WAIT) -> Response:
        """Sends `raw` on a new admin connection and reads one response."""
        conn = self.admin_connect()
        conn.sendall(raw)
        return read_response(conn, method, timeout)

    def metrics(self) -> dict:
        """`GET /metrics` (on the kept admin connection), parsed: {(name, frozenset(labels)): value}."""
        resp = self.admin("GET", "/metrics")
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return parse_prometheus(resp.text)

    def metric(self, name: str, samples: Optional[dict] = None, **labels) -> float:
        """One series' value from `samples` (fetched when not given); fails when absent."""
        samples = self.metrics() if samples is None else samples
        key = (name, frozenset((k, str(v)) for k, v in labels.items()))
        if key not in samples and not labels:
            # A series split by labels (qri_streams{protocol}) asked for without: their sum.
            split = [v for (n, _), v in samples.items() if n == name]
            if split:
                return sum(split)
        assert key in samples, f"no series {name}{labels or ''} in /metrics; have " + \
            repr(sorted(f"{n}{dict(l)}" for n, l in samples if n == name))
        return samples[key]

    def wait_metric(self, name: str, predicate, timeout: float = DEFAULT_WAIT, **labels) -> float:
        """Polls /metrics until the series' value satisfies `predicate`."""
        seen = []

        def check():
            value = self.metric(name, **labels)
            seen.append(value)
            return (value,) if predicate(value) else None

        try:
            return wait_until(check, timeout, f"{name}{labels or ''}", interval=0.05)[0]
        except Deadline as e:
            raise Deadline(f"{e}; last values {seen[-5:]}") from None

    # -- process

    def rss_bytes(self) -> int:
        """Resident set size (VmRSS of /proc/PID/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    # -- life

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Deadline(f"qri still running {timeout:.1f}s later") from None

    def stop(self) -> Optional[int]:
        if self._qripy:
            self._qripy.close()
            self._qripy = None
        for thing in self._owned:
            try:
                thing.close()
            except Exception:
                pass
        self._owned.clear()
        self._admin_client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.threads:
            t.join(5)
        return self.proc.returncode
