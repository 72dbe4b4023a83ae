"""Fixtures for Qri's integration tests.

Every test drives the real release binary (`.build/release/qri`) over real sockets:

* `tls_files`  (session)  a throw-away test CA and a server certificate signed by it;
* `qri`        (factory)  starts a gateway on free loopback ports and stops it afterwards;
* `qri_cli`    (factory)  runs the binary for start-up errors and returns the finished process;
* `admin_qri`  (factory)  like `qri`, with an admin token file (`srv.admin_token`).

The helpers live beside this file: `qri_gateway` (the process, certificates), `qri_http`
(TLS, HTTP and the SSE reader) and `qri_ingest` (BER frames, qri-py).
"""

from __future__ import annotations

import subprocess
from typing import Optional

import pytest

from qri_gateway import ADMIN_TOKEN, START_DEADLINE, QriServer, TLSFiles, make_tls_files, qri_command, qri_env, require_binary
from qri_http import Deadline


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item, so fixtures can print logs of failed tests."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _failed(request) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def qri(tls_files, tmp_path, request):
    """Factory: `qri(*args, env=None)` starts a gateway with extra command-line `args`."""
    require_binary()
    servers: list[QriServer] = []

    def start(*args, env: Optional[dict] = None) -> QriServer:
        server = QriServer(tls_files, tmp_path / f"qri{len(servers)}", args, env)
        servers.append(server)
        return server

    yield start
    sanitizer_reports = []
    for server in reversed(servers):
        code = server.stop()
        report = [line for line in server.lines if "Sanitizer" in line]
        if report:
            sanitizer_reports.append(f"qri exited {code} with a sanitizer report:\n" + "\n".join(server.lines[-80:]))
        if _failed(request):
            print(f"--- qri {' '.join(server.cmd[1:])} (exit {code}); stderr:")
            print("\n".join(server.lines[-200:]))
    # Under `make sanitize-test` the binary is built with AddressSanitizer: a leak or a bad
    # access shows at exit in its stderr, and fails the test that started it.
    assert not sanitizer_reports, "\n\n".join(sanitizer_reports)


@pytest.fixture
def qri_cli(tls_files, tmp_path):
    """Factory: `qri_cli(*args, env=None, timeout=20)` runs the binary to completion (for
    start-up errors) and returns the CompletedProcess (text)."""
    require_binary()

    def run(*args, env: Optional[dict] = None, timeout: float = START_DEADLINE):
        workdir = tmp_path / "cli"
        workdir.mkdir(exist_ok=True)
        try:
            return subprocess.run(qri_command(tls_files, workdir, args), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, env=qri_env(env), cwd=workdir,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise Deadline(f"qri {' '.join(map(str, args))} still running after {timeout}s "
                           f"(expected a start-up error); stderr: {e.stderr!r}") from None

    return run


@pytest.fixture
def admin_qri(qri, tmp_path):
    """Factory: `admin_qri(*args, env=None, token=ADMIN_TOKEN)` starts a gateway whose admin
    token comes from `--admin-token-file` (written with surrounding white space, which the
    gateway must ignore); the server's `admin(…)`, `admin_client()` and `metrics()` use it."""

    def start(*args, env: Optional[dict] = None, token: str = ADMIN_TOKEN):
        path = tmp_path / "admin.token"
        path.write_text(f"  {token}\n\n")
        return qri("--admin-token-file", str(path), *args, env=env)

    return start


@pytest.fixture
def redis_server(tmp_path):
    """Factory: `redis_server(persist=False, tls=None, password=None)` starts a real
    redis-server on a free loopback port; all are stopped after the test."""
    from qri_redis import RedisServer
    servers = []

    def start(**kw):
        server = RedisServer(tmp_path / f"redis{len(servers)}", **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
