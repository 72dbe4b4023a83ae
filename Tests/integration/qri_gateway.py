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

from qri_http import DEFAULT_WAIT, HOST, Deadline, Response, SSEStream, TLSConn, \
    read_response_body, read_response_head, stream_target
from qri_ingest import Ingest, QriPy

REPO = Path(__file__).resolve().parents[2]
# QRI_TEST_BINARY points the tests at another build (it is not passed on to the gateway).
BINARY = Path(os.environ.get("QRI_TEST_BINARY") or REPO / ".build" / "release" / "qri")

LISTENING_RE = re.compile(r"listening public=([^\s\"',;]+) admin=([^\s\"',;]+) ingest=([^\s\"',;]+)")
START_DEADLINE = 20.0   # seconds for the `listening …` line
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
            thing.close()
        self._owned.clear()
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
