"""Library errors carry data and speak the protocol's terms; ``ecaptureq.cli.explain`` adds what to do in our
options. Each error here is produced by the real thing (a server refusing, SQLite refusing, a bad file)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from ecaptureq.cli.errors import ExitCode
from ecaptureq.cli.explain import agent_notice, connect_error, filter_error, replay_error
from ecaptureq.cli.fleet import fleet_error
from ecaptureq.client import Client, ConnectError, HandshakeRefused
from ecaptureq.fleet import BadSince, ConsumerRefused, NatsAuthError, SpoolOverflow, parse_since
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.protocol.messages import RunLog
from ecaptureq.server.hub import Server
from ecaptureq.sources.replay import NotARecording, ReplayError, load_recording
from ecaptureq.store import FilterError, PacketFilter

TOKEN = "s3cret-token-for-the-test"


async def _refusal(client: Client) -> ConnectError:
    with pytest.raises(ConnectError) as caught:
        async for _ in client:
            pass
    return caught.value


@pytest.mark.e2e
async def test_a_refused_handshake_carries_status_token_and_origin() -> None:
    async with Server(token=TOKEN) as server:
        no_token = await _refusal(Client(server.url))
        wrong = await _refusal(Client(server.url, headers={"Authorization": "Bearer wrong"}))
        foreign = await _refusal(Client(server.url, origin="https://evil.example"))
    assert isinstance(no_token, HandshakeRefused) and isinstance(wrong, HandshakeRefused)
    assert (no_token.status, no_token.token_sent) == (401, False)
    assert (wrong.status, wrong.token_sent) == (401, True)
    assert isinstance(foreign, HandshakeRefused) and foreign.status == 403
    assert foreign.origin == "https://evil.example"
    for exc in (no_token, wrong, foreign):
        assert "--" not in str(exc)  # the library says what happened, in the protocol's terms
    worded = connect_error(no_token)
    assert worded.exit_code == ExitCode.AUTH and "HTTP 401" in str(worded) and "--token" in str(worded)
    assert "--token" not in str(connect_error(wrong))  # it was sent: the advice would be wrong
    worded = connect_error(foreign, "--source")
    assert worded.exit_code == ExitCode.FORBIDDEN and str(worded).startswith("--source: cannot connect")
    assert "use --origin" in str(worded)


def test_an_invalid_filter_carries_its_text_and_reason() -> None:
    with pytest.raises(FilterError) as caught:
        PacketFilter("dst_port = = 443")
    exc = caught.value
    assert exc.condition == "dst_port = = 443" and exc.table == "packets" and "syntax error" in exc.reason
    assert str(exc).startswith("invalid filter: ") and "--" not in str(exc).replace("= = ", "")
    assert str(filter_error(exc)) == f"invalid --filter: {exc.reason}"
    with pytest.raises(FilterError) as whole:
        PacketFilter("SELECT * FROM packets")
    assert "a condition on packets is expected" in str(filter_error(whole.value))


def test_a_bad_recording_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "capture.jsonl"
    bad.write_text(json.dumps(to_json(RunLog("a good first line"))) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(NotARecording) as caught:
        load_recording(bad)
    assert (caught.value.path, caught.value.line) == (bad, 2)
    assert "watch --json" in str(replay_error(caught.value)) and "--" not in str(caught.value)
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(NotARecording) as nested:  # json's RecursionError was an internal error
        load_recording(deep)
    assert nested.value.line == 1 and "nested too deeply" in nested.value.reason
    with pytest.raises(ReplayError) as missing:
        load_recording(tmp_path / "absent.jsonl")
    assert missing.value.line is None and "watch --json" not in str(replay_error(missing.value))


def test_fleet_errors_and_notices_are_worded_in_cli() -> None:
    with pytest.raises(BadSince) as caught:
        parse_since("yesterday", datetime.datetime.now(datetime.UTC))
    assert caught.value.text == "yesterday" and "--since" not in str(caught.value)
    auth = NatsAuthError("nats://127.0.0.1:4222", "Authorization Violation")
    assert "--creds" in str(fleet_error(auth)) and fleet_error(auth).exit_code == ExitCode.AUTH
    refused = ConsumerRefused("ECAPTUREQ", "collect-web", "filter subject mismatch")
    assert "use another --durable" in str(fleet_error(refused))
    overflow = SpoolOverflow(4096, 3, 900)
    assert str(overflow) == "spool full (4096 bytes): 3 messages (900 bytes) dropped so far"
    assert agent_notice(overflow).endswith("; raise --spool-size or fix the NATS link")
    assert agent_notice("NATS is back") == "NATS is back"
