"""The TLS configuration, checked by a real scanner (sslyze, from PyPI) against the running
gateway: only TLS 1.2 and 1.3, AEAD ciphers with forward secrecy, no compression, no insecure
renegotiation, session resumption by id and by ticket, and the chain sent along with the leaf."""

from pathlib import Path

import pytest
from sslyze import (CertificateInfoExtraArgument, ScanCommand, ScanCommandAttemptStatusEnum,
                    ScanCommandsExtraArguments, Scanner, ServerNetworkConfiguration, ServerNetworkLocation,
                    ServerScanRequest, ServerScanStatusEnum)

from qri_gateway import make_chain

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

COMMANDS = {
    ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES,
    ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES,
    ScanCommand.TLS_1_2_CIPHER_SUITES, ScanCommand.TLS_1_3_CIPHER_SUITES,
    ScanCommand.TLS_COMPRESSION, ScanCommand.SESSION_RENEGOTIATION, ScanCommand.CERTIFICATE_INFO,
    ScanCommand.HEARTBLEED, ScanCommand.OPENSSL_CCS_INJECTION, ScanCommand.ELLIPTIC_CURVES,
    ScanCommand.SESSION_RESUMPTION,
}
AEAD = ("_GCM_", "_CHACHA20_POLY1305_", "_CCM")
FORWARD_SECRET = ("TLS_ECDHE_", "TLS_DHE_")


def scan(port: int, ca: Path):
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1"),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication="localhost"),
        scan_commands=COMMANDS,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca)))
    scanner = Scanner()
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    assert len(results) == 1
    result = results[0]
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, \
        f"sslyze could not connect: {result.connectivity_error_trace}"
    return result.scan_result


def attempt(scan_result, name):
    att = getattr(scan_result, name)
    assert att.status == ScanCommandAttemptStatusEnum.COMPLETED, f"{name}: {att.status} {att.error_trace}"
    return att.result


@pytest.fixture(params=["ec", "rsa"])
def chained_gateway(request, admin_qri, tls_files, tmp_path):
    chain, key, _ = make_chain(tls_files, tmp_path / "chain", key_type=request.param)
    return admin_qri("--cert", chain, "--key", key)


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_tls_scan(chained_gateway, tls_files, listener):
    srv = chained_gateway
    port = srv.public_port if listener == "public" else srv.admin_port
    result = scan(port, tls_files.ca_crt)
    problems = []

    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        accepted = [c.cipher_suite.name for c in attempt(result, old).accepted_cipher_suites]
        if accepted:
            problems.append(f"{old}: accepted {accepted}")

    tls12 = [c.cipher_suite.name for c in attempt(result, "tls_1_2_cipher_suites").accepted_cipher_suites]
    tls13 = [c.cipher_suite.name for c in attempt(result, "tls_1_3_cipher_suites").accepted_cipher_suites]
    if not tls12 or not tls13:
        problems.append(f"TLS 1.2 suites {tls12}, TLS 1.3 suites {tls13}: both versions must be served")
    for name in tls12:
        if not any(a in name for a in AEAD):
            problems.append(f"TLS 1.2 cipher without AEAD: {name}")
        if not name.startswith(FORWARD_SECRET):
            problems.append(f"TLS 1.2 cipher without forward secrecy: {name}")
    for name in tls13:
        if not any(a in name for a in AEAD):
            problems.append(f"TLS 1.3 cipher without AEAD: {name}")

    if attempt(result, "tls_compression").supports_compression:
        problems.append("TLS compression is supported (CRIME)")
    reneg = attempt(result, "session_renegotiation")
    if not reneg.supports_secure_renegotiation:
        problems.append("no secure renegotiation (RFC 5746): insecure legacy renegotiation")
    if reneg.is_vulnerable_to_client_renegotiation_dos:
        problems.append(f"client-initiated renegotiation accepted ({reneg.client_renegotiations_success_count} times)")
    resumption = attempt(result, "session_resumption")
    for how, done, tried in (
            ("session id", resumption.session_id_successful_resumptions_count, resumption.session_id_attempted_resumptions_count),
            ("TLS 1.2 ticket", resumption.tls_ticket_successful_resumptions_count, resumption.tls_ticket_attempted_resumptions_count)):
        if not tried or done != tried:
            problems.append(f"{how} resumption: {done} of {tried}")
    if attempt(result, "heartbleed").is_vulnerable_to_heartbleed:
        problems.append("heartbleed")
    if attempt(result, "openssl_ccs_injection").is_vulnerable_to_ccs_injection:
        problems.append("CCS injection")
    curves = attempt(result, "elliptic_curves")
    weak = [c.name for c in (curves.supported_curves or []) if c.name not in
            ("X25519", "X448", "prime256v1", "secp256r1", "secp384r1", "secp521r1", "X25519MLKEM768")]
    if weak:
        problems.append(f"weak or unexpected groups: {weak}")

    deployments = attempt(result, "certificate_info").certificate_deployments
    assert deployments, "no certificate seen"
    chain = deployments[0].received_certificate_chain
    if len(chain) != 2:
        problems.append(f"the server sent {len(chain)} certificate(s), expected leaf + intermediate: "
                        + ", ".join(c.subject.rfc4514_string() for c in chain))
    supplied = [p for p in deployments[0].path_validation_results if p.trust_store.name == "Supplied CA file"]
    if not supplied or not supplied[0].was_validation_successful:
        problems.append(f"the chain does not validate against the test root: {supplied}")

    assert not problems, f"TLS scan of the {listener} listener:\n" + "\n".join(problems)


def test_scanner_sees_a_missing_chain(admin_qri, tls_files, tmp_path):
    """Control: with the leaf alone (no intermediate) the scanner reports one certificate and a
    failed validation, so the chain check above can fail."""
    chain, key, _ = make_chain(tls_files, tmp_path / "chain")
    leaf_only = tmp_path / "leaf-only.crt"
    leaf_only.write_text((tmp_path / "chain" / "leaf.crt").read_text())
    srv = admin_qri("--cert", leaf_only, "--key", key)
    deployment = attempt(scan(srv.public_port, tls_files.ca_crt), "certificate_info").certificate_deployments[0]
    assert len(deployment.received_certificate_chain) == 1
    supplied = [p for p in deployment.path_validation_results if p.trust_store.name == "Supplied CA file"]
    assert supplied and not supplied[0].was_validation_successful
