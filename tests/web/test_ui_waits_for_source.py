"""``ui --source URL`` started before its source: it waits and retries, and says so (/api/status)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from server_support import ServerThread
from ui_support import start_ui, stop_ui

from ecaptureq.protocol import Event

pytestmark = pytest.mark.e2e

httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install -e '.[test]')")


@contextmanager
def refusing_port() -> Iterator[tuple[int, Callable[[], None]]]:
    """A loopback port that refuses connections (bound, not listening) until ``release()``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1], sock.close
    sock.close()


def wait_status(base: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        live = httpx.get(f"{base}/api/status", timeout=10).json()["live"]
        if check(live):
            return live  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, live
        time.sleep(0.1)


def test_ui_waits_for_a_source_that_is_not_up_yet(tmp_path: Path) -> None:
    db = tmp_path / "later.db"
    with refusing_port() as (port, release):
        ui = start_ui("--source", f"ws://127.0.0.1:{port}/", "--db", str(db))
        try:
            waiting = wait_status(ui.base, lambda live: "retrying" in live["status"])
            assert waiting["connected"] is False and waiting["waiting"] is True
            assert waiting["status"].startswith(
                f"waiting for source ws://127.0.0.1:{port}/: connection refused"
            )
            assert ui.proc.poll() is None  # still running: it did not give up
            release()
            server = ServerThread(port=port)
            try:
                up = wait_status(ui.base, lambda live: live["connected"], timeout=60)  # backoff ≤ 30 s
                assert up["waiting"] is False and up["status"] == f"connected to ws://127.0.0.1:{port}/"
                request = Event(timestamp=1, uuid="1_1_curl_5_1", payload=b"GET / HTTP/1.1\r\n\r\n")
                server.publish_event(request)
                wait_status(ui.base, lambda live: live["events"] >= 1)
            finally:
                server.close()
        finally:
            code, err = stop_ui(ui)
    assert code == 0, err
    assert f"ecaptureq ui: waiting for source ws://127.0.0.1:{port}/: connection refused" in ui.banner + err
    assert "1 event, 0 exchanges written to" in err
