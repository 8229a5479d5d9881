"""``ecaptureq agent --tls``: the eBPF capture of ``ecaptureq tls``, published to a real JetStream and
collected. Needs root and eBPF, as the capture tests (skipped elsewhere)."""

# ruff: noqa: F401, F811  (pytest fixtures imported from the support modules are then named as parameters)

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))  # the capture tests' fixtures

from capture_support import Cert, TlsServer, body_of, cert, requires_bpf, tls_server
from fleet_support import NatsServer, db_rows, nats_server, reap_processes, start_cli, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.capture
@requires_bpf
def test_tls_agent_publishes_the_capture(
    nats_server: NatsServer, tls_server: TlsServer, cert: Cert, tmp_path: Path
) -> None:
    db = tmp_path / "fleet.db"
    collector = start_cli(tmp_path, "collect", "collect", "--nats", nats_server.url("collector"),
                          "--db", str(db), "--flush-interval", "0.2")  # fmt: skip
    agent = start_cli(tmp_path, "agent", "agent", "--nats", nats_server.url("node-3"), "--node", "node-3",
                      "--spool", str(tmp_path / "spool.db"), "--tls",
                      "--pid", str(tls_server.pid))  # fmt: skip

    def hooked() -> bool:  # the capture's "INF hooked openssl path=..." run-log line
        return any(" hooked " in line and " path=" in line for line in _logs(db).splitlines())

    wait_for("the capture to start", hooked, 30, on_fail=agent.text)
    client = subprocess.run(
        ["curl", "-sS", "--cacert", str(cert.cert), f"https://127.0.0.1:{tls_server.port}/300"],
        capture_output=True,
        timeout=30,
    )
    assert client.stdout == body_of(300)

    def response_stored() -> bool:
        rows = db_rows(
            db, "SELECT payload_binary FROM packets WHERE node = 'node-3' AND pid = ?", (tls_server.pid,)
        )
        return body_of(300) in b"".join(bytes(r[0]) for r in rows)  # type: ignore[arg-type]

    wait_for("the server's response in the database", response_stored, 30, on_fail=agent.text)
    assert agent.terminate() == 0, agent.text()
    wait_for("the capture's totals line", lambda: "capture stopped" in _logs(db), 30, on_fail=collector.text)
    assert collector.terminate() == 0, collector.text()
    assert db_rows(db, "SELECT DISTINCT node FROM packets") == [("node-3",)]
    assert "capturing 1 TLS file (libraries or programs)" in agent.text()  # the --pid process's libssl


def _logs(db: Path) -> str:
    return "\n".join(str(r[0]) for r in db_rows(db, "SELECT line FROM run_logs WHERE node = 'node-3'"))
