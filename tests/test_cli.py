"""The command line end to end, as real processes talking over loopback."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, ENV, Served, read_until, run_cli, start_serve, stop_serve

pytestmark = pytest.mark.e2e


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def test_watch_shows_serve_demo(serve_demo: Served) -> None:
    result = run_cli("watch", serve_demo.url, "--count", "6")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'AppName="ecaptureq"' in out
    assert "Listen for eCaptureQ=" + serve_demo.url in out
    assert out.count("--- event ") == 6
    assert "pid 2746  process curl" in out or "process grpc-gateway" in out or "process python3" in out
    assert "-> " in out and "length " in out
    assert "heartbeat" not in out
    no_traceback(result.stderr)


def test_watch_verbose_shows_heartbeats(serve_demo: Served) -> None:
    result = run_cli("watch", serve_demo.url, "--count", "2", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "[heartbeat] #0 " in result.stdout and "heartbeat:0" in result.stdout
    assert "malformed frames skipped" in result.stderr


def test_watch_json_lines(serve_demo: Served) -> None:
    result = run_cli("watch", serve_demo.url, "--count", "5", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["kind"] for r in records} == {"log", "event"}
    events = [r for r in records if r["kind"] == "event"]
    assert len(events) == 5
    for ev in events:
        for key in (
            "timestamp",
            "uuid",
            "src_ip",
            "src_port",
            "dst_ip",
            "dst_port",
            "pid",
            "pname",
            "type",
            "length",
            "payload",
        ):
            assert key in ev
        assert len(base64.b64decode(ev["payload"])) == ev["length"]
        assert ev["time"].startswith("20") and ev["time"].endswith("Z")
    assert all("run_log" in r for r in records if r["kind"] == "log")


def test_watch_adds_the_missing_slash_with_a_warning(serve_demo: Served) -> None:
    result = run_cli("watch", serve_demo.url.rstrip("/"), "--count", "1")
    assert result.returncode == 0
    assert "added the missing trailing '/'" in result.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ws://0.0.0.0:28257/", "use 127.0.0.1"),
        ("ftp://127.0.0.1/", "ws:// or wss://"),
        ("ws://h:xx/", "port"),
    ],
)
def test_watch_bad_url_exits_2_with_one_line(url: str, fragment: str) -> None:
    result = run_cli("watch", url)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result.stderr)


def test_watch_bad_arguments_exit_2() -> None:
    result = run_cli("watch", "ws://127.0.0.1:1/", "--count", "zero")
    assert result.returncode == 2
    no_traceback(result.stderr)


def test_watch_refused_exits_3() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        result = run_cli("watch", f"ws://127.0.0.1:{port}/")
    assert result.returncode == 3
    assert "cannot connect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    no_traceback(result.stderr)


def test_watch_connection_lost_exits_3() -> None:
    served = start_serve("--demo", "--interval", "0.05")
    watcher = subprocess.Popen(
        [*CLI, "watch", served.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    seen = read_until(watcher, "--- event")
    code, _ = stop_serve(served)
    assert code == 0
    rest, err = watcher.communicate(timeout=20)
    out = seen + rest
    assert watcher.returncode == 3
    assert "1001" in err and "shutting down" in err
    assert "--- event" in out
    no_traceback(err)


def test_watch_timeout_and_incomplete_count(tmp_path: Path) -> None:
    recording = tmp_path / "logs-only.jsonl"
    recording.write_text(json.dumps({"kind": "log", "run_log": "only a log"}) + "\n")
    served = start_serve("--replay", str(recording))
    try:
        idle = run_cli("watch", served.url, "--timeout", "1")
        assert idle.returncode == 0
        assert "only a log" in idle.stdout
        assert "no event or log for 1 s" in idle.stderr
        short = run_cli("watch", served.url, "--timeout", "1", "--count", "3")
        assert short.returncode == 4
        assert "got 0 of 3 events" in short.stderr
    finally:
        stop_serve(served)


def test_watch_ctrl_c_is_quiet(serve_demo: Served) -> None:
    watcher = subprocess.Popen(
        [*CLI, "watch", serve_demo.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    read_until(watcher, "--- event")  # connected, and past start-up
    watcher.send_signal(signal.SIGINT)
    _out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 130
    assert err.strip() == ""


def test_demo_json_recording_replays_byte_exact(tmp_path: Path) -> None:
    recorded = run_cli("demo", "--json", "--count", "30", "--interval", "0")
    assert recorded.returncode == 0, recorded.stderr
    path = tmp_path / "demo.jsonl"
    path.write_text(recorded.stdout)
    original = [json.loads(line) for line in recorded.stdout.splitlines()]
    original_events = [r for r in original if r["kind"] == "event"]
    assert len(original_events) == 30

    served = start_serve("--replay", str(path), "--speed", "0")
    try:
        # Connects after the replay has been published: the log lines still arrive from the cache.
        time.sleep(0.5)
        late = run_cli("watch", served.url, "--json", "--timeout", "1")
        late_logs = [json.loads(x)["run_log"] for x in late.stdout.splitlines() if '"kind":"log"' in x]
        original_logs = [r["run_log"] for r in original if r["kind"] == "log"]
        assert late_logs[: len(original_logs)] == original_logs
    finally:
        stop_serve(served)

    served = start_serve("--replay", str(path), "--speed", "50")
    try:
        replayed = run_cli("watch", served.url, "--json", "--count", "30")
    finally:
        stop_serve(served)
    assert replayed.returncode == 0, replayed.stderr
    events = [json.loads(x) for x in replayed.stdout.splitlines() if '"kind":"event"' in x]

    # The events wait for the first client, so this one gets every one of them, unchanged. (The decoded
    # "http" view is left out: it carries latencies measured on arrival.)
    def proto_fields(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "http"} for r in records]

    assert proto_fields(events) == proto_fields(original_events)


def test_serve_refuses_a_corrupt_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "log", "run_log": "ok"}) + "\n{not json\n")
    result = run_cli("serve", "--replay", str(bad), "--listen", "ws://127.0.0.1:0/")
    assert result.returncode == 2
    assert "bad.jsonl:2" in result.stderr
    no_traceback(result.stderr)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"kind": "event", "payload": "@@not base64@@"}) + "\n")
    result = run_cli("serve", "--replay", str(wrong), "--listen", "ws://127.0.0.1:0/")
    assert result.returncode == 2 and "base64" in result.stderr
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = run_cli("serve", "--replay", str(binary), "--listen", "ws://127.0.0.1:0/")
    assert result.returncode == 2
    no_traceback(result.stderr)
    missing = run_cli("serve", "--replay", str(tmp_path / "missing.jsonl"), "--listen", "ws://127.0.0.1:0/")
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr


def test_serve_port_in_use_exits_3(serve_demo: Served) -> None:
    result = run_cli("serve", "--demo", "--listen", serve_demo.url)
    assert result.returncode == 3
    assert "cannot listen" in result.stderr
    no_traceback(result.stderr)


def test_serve_needs_a_source() -> None:
    result = run_cli("serve")
    assert result.returncode == 2
    assert "--demo" in result.stderr


def test_demo_count() -> None:
    result = run_cli("demo", "--count", "4", "--interval", "0.01")
    assert result.returncode == 0, result.stderr
    assert 'AppName="ecaptureq demo"' in result.stdout
    assert result.stdout.count("--- event ") == 4


@pytest.mark.parametrize("command", ["watch", "serve", "demo"])
def test_help_explains_each_command(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "watch" in result.stdout and "serve" in result.stdout


def test_serve_stats_and_shutdown_totals() -> None:
    served = start_serve("--demo", "--interval", "0.02", "--stats", "0.5")
    watcher = subprocess.Popen(
        [*CLI, "watch", served.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    seen = read_until(watcher, "--- event")  # connected
    time.sleep(1.1)  # two --stats intervals with the watcher connected (the stats lines are timed)
    code, err = stop_serve(served)
    rest, _ = watcher.communicate(timeout=20)
    out = seen + rest
    assert code == 0
    stats = [line for line in err.splitlines() if "stats:" in line]
    assert len(stats) >= 2, err
    assert "1 client, " in stats[-1] and "events (" in stats[-1] and "queue max" in stats[-1]
    assert "refused 0 origin / 0 token / 0 capacity" in stats[-1]
    # The totals line is a run-log line, so the connected watcher saw it before the close.
    totals = r"INF Shutting down: \d+ events published, 1 connections, 0 closed as too slow"
    assert re.search(totals, out), out


def test_watch_filter_takes_the_query_condition(serve_demo: Served) -> None:
    result = run_cli(
        "watch", serve_demo.url, "--json", "--count", "5", "--filter", "pname = 'curl' AND type = 1"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines() if '"kind":"event"' in x]
    assert len(events) == 5 and all(e["pname"] == "curl" and e["type"] == 1 for e in events)
    bad = run_cli("watch", serve_demo.url, "--filter", "pname = = 1")
    assert bad.returncode == 2 and "invalid --filter" in bad.stderr


def test_watch_shows_a_message_still_in_progress_at_exit(tmp_path: Path) -> None:
    """An HTTP/1.0 response without Content-Length ends when its connection closes: shown at exit."""
    request = b"GET /stream HTTP/1.0\r\nHost: example.com\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part of an unbounded body"
    lines = [
        {"kind": "event", "uuid": "7_7_wget_3_1", "pid": 7, "pname": "wget", "type": 1,
         "timestamp": 1760495631000000000, "payload": base64.b64encode(request).decode()},
        {"kind": "event", "uuid": "7_7_wget_3_0", "pid": 7, "pname": "wget", "type": 3,
         "timestamp": 1760495631100000000, "payload": base64.b64encode(response).decode()},
    ]  # fmt: skip
    recording = tmp_path / "unbounded.jsonl"
    recording.write_text("".join(json.dumps(x) + "\n" for x in lines))
    served = start_serve("--replay", str(recording), "--speed", "0")
    try:
        result = run_cli("watch", served.url, "--timeout", "1")
    finally:
        stop_serve(served)
    assert result.returncode == 0, result.stderr
    tail = result.stdout.partition("--- still in progress at exit")[2]
    assert "200" in tail and "first part of an unbounded body" in tail
