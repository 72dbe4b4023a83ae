"""Configuration (SPEC.md, *Command line*): a YAML `--config` file, `QRI_*` variables and
flags, precedence flag > environment > file > default, and one-line errors."""

import json

import httpx
import pytest

from qri_gateway import ADMIN_TOKEN, output_lines
from qri_http import HOST


def assert_one_line_error(result, *names):
    lines = output_lines(result)
    assert result.returncode != 0, f"exit status 0 with output {lines}"
    assert len(lines) == 1, f"expected a one-line error, got {len(lines)} lines:\n" + "\n".join(lines)
    assert any(n in lines[0] for n in names), f"the error does not name {' or '.join(names)}: {lines[0]}"


def origin_echoed(srv, origin):
    stream = srv.stream("p", "c", headers={"Origin": origin})
    value = stream.headers.get("access-control-allow-origin")
    stream.close()
    return value == origin


@pytest.fixture
def config_file(tmp_path):
    def write(text, name="qri.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


YAML = """\
# Qri test configuration
cors-origins: https://file.example   # a comment after a value
max-header-bytes: 1K
tick-interval: 1
herald-interval: 30
"""


def test_config_file_sets_options(qri, config_file):
    srv = qri("--config", config_file(YAML))
    assert origin_echoed(srv, "https://file.example")
    assert not origin_echoed(srv, "https://other.example")
    resp = srv.request("GET", "/stream?p=1&s=x", headers={"X-Pad": "a" * 1500})
    assert resp.status == 431, "max-header-bytes from the file"
    stream = srv.stream("p", "c")
    second_tick = stream.wait_for(lambda e: e.is_tick, 3)          # tick-interval 1 from the file
    assert second_tick.id_int > stream.first_tick.id_int


def test_config_file_from_qri_config_variable(qri, config_file):
    srv = qri(env={"QRI_CONFIG": str(config_file(YAML))})
    assert origin_echoed(srv, "https://file.example")


def test_json_config_file(qri, config_file):
    srv = qri("--config", config_file(json.dumps({"cors-origins": "https://json.example", "history": 8}), "qri.json"))
    assert origin_echoed(srv, "https://json.example")


def test_environment_overrides_file_and_flag_overrides_environment(qri, config_file):
    path = config_file(YAML)
    srv = qri("--config", path, env={"QRI_CORS_ORIGINS": "https://env.example"})
    assert origin_echoed(srv, "https://env.example")
    assert not origin_echoed(srv, "https://file.example")
    # The file's other keys still apply.
    assert srv.request("GET", "/stream?p=1&s=x", headers={"X-Pad": "a" * 1500}).status == 431

    srv = qri("--config", path, "--cors-origins", "https://flag.example", env={"QRI_CORS_ORIGINS": "https://env.example"})
    assert origin_echoed(srv, "https://flag.example")
    assert not origin_echoed(srv, "https://env.example")
    assert not origin_echoed(srv, "https://file.example")


def test_flag_overrides_file_without_environment(qri, config_file):
    srv = qri("--config", config_file(YAML), "--max-header-bytes", "8K")
    assert srv.stream("p", "c", headers={"X-Pad": "a" * 1500}).first_tick.is_tick


def test_admin_options_from_the_file(qri, config_file, tmp_path):
    token = tmp_path / "token"
    token.write_text(ADMIN_TOKEN + "\n")
    srv = qri("--config", config_file(f"admin-token-file: {token}\nadmin-plaintext: true\n"))
    resp = httpx.get(f"http://{HOST}:{srv.admin_port}/backdoor", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert resp.status_code == 200 and resp.json() == []


def test_environment_variables_that_are_not_options_are_ignored(qri):
    srv = qri(env={"QRI_NOT_AN_OPTION": "1", "QRI_": "x", "QRI_ADMIN_TOKEN_FILE_X": "y"})
    assert srv.stream("p", "c").first_tick.is_tick


# ---------------------------------------------------------------------------------------------
# Errors: one line naming the key or file, non-zero exit


@pytest.mark.parametrize("text, names", [
    ("no-such-key: 1\n", ["no-such-key"]),
    ("admin-token: s3cret\n", ["admin-token"]),               # secrets are never config keys
    ("listen: 127.0.0.1:0\nListen: 127.0.0.1:0\n", ["Listen"]),
    ("tick_interval: 5\n", ["tick_interval"]),
])
def test_unknown_config_key(qri_cli, config_file, text, names):
    assert_one_line_error(qri_cli("--config", config_file(text)), *names)


@pytest.mark.parametrize("text, key", [
    ("tick-interval: soon\n", "tick-interval"),
    ("max-header-bytes: 12Q\n", "max-header-bytes"),
    ("history-memory: -1\n", "history-memory"),
    ("history-ttl: forever\n", "history-ttl"),
    ("shutdown-timeout: -5\n", "shutdown-timeout"),
    ("admin-plaintext: maybe\n", "admin-plaintext"),
    ("log-level: loud\n", "log-level"),
    ("threads: 0\n", "threads"),
    ("cors-origins: not an origin\n", "cors-origins"),
    ("cors-origins:\n  host: https://a.example\n", "cors-origins"),
    ("history: [1, 2]\n", "history"),
])
def test_bad_value_in_the_file(qri_cli, config_file, text, key):
    assert_one_line_error(qri_cli("--config", config_file(text)), key)


def test_stream_buffer_rule_applies_to_file_values(qri_cli, config_file):
    result = qri_cli("--config", config_file("stream-buffer-bytes: 1M\nmax-frame-bytes: 1M\n"))
    assert_one_line_error(result, "stream-buffer-bytes", "max-frame-bytes")


@pytest.mark.parametrize("text", [
    "listen: [unclosed\n",
    "a: b: c\n",
    "key: 'unterminated\n",
    "\tlisten: 127.0.0.1:0\n",
    "- listen\n- admin-listen\n",
    "just a string\n",
])
def test_malformed_yaml_names_the_file(qri_cli, config_file, text):
    path = config_file(text)
    assert_one_line_error(qri_cli("--config", path), str(path), path.name)


def test_unreadable_config_file_names_it(qri_cli, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(qri_cli("--config", missing), str(missing))
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert_one_line_error(qri_cli("--config", folder), str(folder))


def test_bad_environment_value_names_the_variable(qri_cli):
    assert_one_line_error(qri_cli(env={"QRI_TICK_INTERVAL": "soon"}), "QRI_TICK_INTERVAL", "tick-interval")
    assert_one_line_error(qri_cli(env={"QRI_CONFIG": "/nonexistent/qri.yaml"}), "/nonexistent/qri.yaml")


def test_admin_token_is_not_a_flag(qri_cli):
    assert_one_line_error(qri_cli("--admin-token", "s3cret"), "admin-token")


def test_unreadable_admin_token_file_names_it(qri_cli, tmp_path):
    missing = tmp_path / "no-token"
    assert_one_line_error(qri_cli("--admin-token-file", missing), str(missing))
