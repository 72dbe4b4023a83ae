"""docs/openapi.yaml is true of the admin API: schemathesis (PyPI) generates requests from
it — every route, form, JSON and NDJSON bodies, valid and invalid data — against a live Qri,
and fails on a 5xx, on a status, content type or body the document does not allow, or on a
request the document says is valid that Qri rejects."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.yaml"
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
])


def test_admin_api_conforms_to_its_openapi_document(admin_qri, tmp_path):
    srv = admin_qri("--admin-plaintext", "--state-file", str(tmp_path / "state.json"))
    schemathesis = Path(sys.executable).with_name("schemathesis")
    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(Path(__file__).with_name("schemathesis_hooks.py")))
    out = subprocess.run(
        [str(schemathesis), "run", str(DOCUMENT), "--url", f"http://127.0.0.1:{srv.admin_port}",
         "-H", f"Authorization: Bearer {srv.admin_token}", "--checks", CHECKS,
         "--max-examples", "100", "--seed", "1", "--workers", "1", "--no-color",
         "--generation-database", "none"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    # Every operation of the document was exercised, and requests got through to routing.
    assert "Selected: 7/7" in out.stdout and "Tested: 7" in out.stdout, report
    assert srv.metric("qri_messages_received_total", source="publish") > 0
    assert srv.metric("qri_messages_received_total", source="backdoor") > 0
