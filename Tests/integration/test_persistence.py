"""Stored backdoor messages survive a restart (SPEC.md, *Admin listener*): written to
STATE_FILE before the answer, read back at start-up; a corrupt file stops start-up."""

import json
import signal

import pytest

from qri_gateway import output_lines

MESSAGES = {"001": 'first "quoted" ✓', "002": "second\nwith a line break", "010": "\\ and \t \x01 \u2028 end"}


def state_path(tmp_path):
    return tmp_path / "state" / "backdoor.json"


def store_messages(srv):
    for t, m in MESSAGES.items():
        assert srv.admin("POST", "/backdoor", data={"type": t, "message": m}).status_code == 204
    assert srv.admin("POST", "/backdoor", data={"type": "003", "message": "deleted before the restart"}).status_code == 204
    assert srv.admin("DELETE", "/backdoor?type=003").status_code == 204


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stored_messages_survive_a_restart(admin_qri, tmp_path, sig):
    state = state_path(tmp_path)
    first = admin_qri("--state-file", state)
    store_messages(first)
    # Written before the answer: the file holds the last message already.
    assert "deleted before the restart" not in state.read_text()
    first.signal(sig)
    code = first.wait_exit(10)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)

    second = admin_qri("--state-file", state)
    got = {d["type"]: d["message"] for d in second.admin("GET", "/backdoor").json()}
    assert got == MESSAGES
    stream = second.stream("p", "c", wait_tick=False)
    first_events = [stream.next_event() for _ in range(4)]
    assert [e.data for e in first_events] == ["Tick"] + [t + MESSAGES[t] for t in sorted(MESSAGES)]


def test_sigkill_right_after_the_answer_keeps_the_change(admin_qri, tmp_path):
    state = state_path(tmp_path)
    for round_ in range(3):
        srv = admin_qri("--state-file", state)
        expected = {str(100 + i): f"round {i}" for i in range(round_)}
        assert {d["type"]: d["message"] for d in srv.admin("GET", "/backdoor").json()} == expected
        assert srv.admin("POST", "/backdoor", data={"type": str(100 + round_), "message": f"round {round_}"}).status_code == 204
        srv.proc.kill()                       # at once, after the 204
        srv.wait_exit(10)


def test_missing_state_file_means_none_and_its_folder_is_created(admin_qri, tmp_path):
    state = tmp_path / "deep" / "er" / "backdoor.json"
    srv = admin_qri("--state-file", state)
    assert state.parent.is_dir()
    assert srv.admin("GET", "/backdoor").json() == []
    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "x"}).status_code == 204
    assert state.exists()


def good_state_text(admin_qri, tmp_path):
    """The state file as the gateway itself writes it for {"001": "persist-me"}."""
    state = tmp_path / "good" / "backdoor.json"
    srv = admin_qri("--state-file", state)
    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "persist-me"}).status_code == 204
    srv.stop()
    text = state.read_text()
    assert '"001"' in text and '"persist-me"' in text, text
    return text


CORRUPTIONS = {
    "not-json": lambda good: "{not json",
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: "",
    "array": lambda good: "[]",
    "number": lambda good: "42",
    "null": lambda good: "null",
    "type-two-digits": lambda good: good.replace('"001"', '"01"'),
    "type-letters": lambda good: good.replace('"001"', '"abc"'),
    "type-four-digits": lambda good: good.replace('"001"', '"0001"'),
    "message-not-a-string": lambda good: good.replace('"persist-me"', "5"),
    "message-null": lambda good: good.replace('"persist-me"', "null"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_state_file_refuses_start_up(admin_qri, qri_cli, tmp_path, corruption):
    good = good_state_text(admin_qri, tmp_path)
    bad = CORRUPTIONS[corruption](good)
    assert bad != good
    state = tmp_path / "bad" / "backdoor.json"
    state.parent.mkdir()
    state.write_text(bad)
    result = qri_cli("--state-file", state, env={"QRI_ADMIN_TOKEN": "t0ken"})
    lines = output_lines(result)
    assert result.returncode != 0, f"started with a corrupt state file ({corruption}): {lines}"
    assert len(lines) == 1, f"expected a one-line error, got:\n" + "\n".join(lines)
    assert str(state) in lines[0] or "state-file" in lines[0], f"the error does not name the state file: {lines[0]}"
    assert state.read_text() == bad, "the corrupt state file was changed"


def test_state_file_that_is_a_folder_refuses_start_up(qri_cli, tmp_path):
    state = tmp_path / "is-a-folder"
    state.mkdir()
    result = qri_cli("--state-file", state, env={"QRI_ADMIN_TOKEN": "t0ken"})
    lines = output_lines(result)
    assert result.returncode != 0 and len(lines) == 1, lines
    assert str(state) in lines[0] or "state-file" in lines[0], lines[0]


def test_a_change_that_cannot_be_saved_is_500_and_not_made(admin_qri, tmp_path):
    folder = tmp_path / "st"
    srv = admin_qri("--state-file", folder / "backdoor.json")
    stream = srv.stream("p", "c")
    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "saved"}).status_code == 204
    # The folder becomes a plain file: the next write cannot happen.
    (folder / "backdoor.json").unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    resp = srv.admin("POST", "/backdoor", data={"type": "002", "message": "unsaved"})
    assert resp.status_code == 500, (resp.status_code, resp.text)
    assert isinstance(resp.json().get("error"), str)
    resp = srv.admin("DELETE", "/backdoor?type=001")
    assert resp.status_code == 500, (resp.status_code, resp.text)
    assert {d["type"]: d["message"] for d in srv.admin("GET", "/backdoor").json()} == {"001": "saved"}
    srv.admin("POST", "/publish", data={"peer": "p", "checksum": "c", "message": "marker"})
    assert [e.data for e in stream.messages_until("marker")] == ["001saved", "marker"]
    # Once the folder is back, changes are saved again.
    folder.unlink()
    folder.mkdir()
    assert srv.admin("POST", "/backdoor", data={"type": "002", "message": "saved too"}).status_code == 204
