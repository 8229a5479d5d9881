"""Event types from the connection's protocol and direction, and the metadata ``watch --json`` recovers.

The bytes are real: curl fetching from nginx (HTTP/1.1 and h2c) through a tapping loopback proxy. The
events are typed one chunk at a time by :func:`classify_payload`, as a capture source does, then served
by a real :class:`Server` to a real ``ecaptureq watch`` process.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decode_taps import C2S, S2C, TapProxy, events_from_chunks, nginx

from ecaptureq.decode import EventTyper
from ecaptureq.decode.classify import classify_payload
from ecaptureq.protocol import Event, EventType
from ecaptureq.protocol.uuid import DATA_TYPE_READ, DATA_TYPE_WRITE, format_uuid
from ecaptureq.server import Server

CLI = [sys.executable, "-m", "ecaptureq"]
PING_LIKE = b"\x00\x00\x08\x06\x00\x00\x00\x00\x0012345678"  # 17 bytes that parse as an HTTP/2 PING frame
WS_LIKE = b"\x82\x0fbinary ws frame"  # 17 bytes that parse as a WebSocket binary frame


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    root = tmp_path_factory.mktemp("www")
    (root / "frames.bin").write_bytes(PING_LIKE * 60 + WS_LIKE * 60)
    (root / "page.txt").write_text("plain text page\n" * 50)
    with nginx(root, tmp_path_factory.mktemp("nginx")) as ports:
        yield ports


def curl(port: int, path: str, *args: str) -> TapProxy:
    tap = TapProxy(port)
    subprocess.run(["curl", "-sS", *args, f"http://127.0.0.1:{tap.port}{path}", "-o", "/dev/null"],
                   check=True, timeout=30)  # fmt: skip
    tap.close()
    return tap


def split_body(chunks: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """The response as a client reads it: the head, then the body in ``size``-byte reads."""
    out: list[tuple[str, bytes]] = []
    s2c = b"".join(d for n, d in chunks if n == S2C)
    head, _, body = s2c.partition(b"\r\n\r\n")
    out.extend((n, d) for n, d in chunks if n == C2S)
    out.append((S2C, head + b"\r\n\r\n"))
    out.extend((S2C, body[i : i + size]) for i in range(0, len(body), size))
    return out


def frame_writes(chunks: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The server's side as one write per HTTP/2 frame (nginx writes SETTINGS, HEADERS and DATA apart)."""
    out: list[tuple[str, bytes]] = []
    for name, data in chunks:
        if name == C2S:
            out.append((name, data))
            continue
        pos = 0
        while pos < len(data):
            end = pos + 9 + int.from_bytes(data[pos : pos + 3], "big")
            out.append((name, data[pos:end]))
            pos = end
    return out


def server_view(chunks: list[tuple[str, bytes]], pid: int = 900, fd: int = 7) -> list[Event]:
    """Events as a capture of nginx (the server) publishes them: nginx writes what the client reads."""
    events = []
    for i, (name, data) in enumerate(chunks):
        is_write = name == S2C
        data_type = DATA_TYPE_WRITE if is_write else DATA_TYPE_READ
        events.append(Event(timestamp=1_760_495_631_000_000_000 + i, pid=pid, pname="nginx",
                            uuid=format_uuid(pid, pid, "nginx", fd, data_type),
                            src_ip="127.0.0.1", src_port=443, dst_ip="127.0.0.1", dst_port=40000,
                            type=classify_payload(data, is_write), payload=data))  # fmt: skip
    return events


async def watch_json(events: list[Event], *args: str) -> list[dict[str, Any]]:
    """Serve ``events`` to ``ecaptureq watch --json ARGS`` and return the event records it printed."""
    async with Server(heartbeat_interval=0.2) as server:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "watch", server.url, "--json", "--timeout", "1", *args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.wait_for(server.wait_for_client(), 20)
        for event in events:
            server.publish_event(event)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in out.decode().splitlines()]
    return [r for r in records if r["kind"] == "event"]


# -- 8. types from the connection's protocol -------------------------------------------------------


@pytest.mark.e2e
def test_http1_body_chunks_that_look_like_h2_or_websocket_are_http1(site: tuple[int, int]) -> None:
    tap = curl(site[0], "/frames.bin")
    events = events_from_chunks(split_body(tap.chunks, 17 * 20))
    chunk_types = {e.type for e in events if e.uuid.endswith(f"_{DATA_TYPE_READ}")}
    assert {EventType.HTTP2_RESPONSE, EventType.WEBSOCKET} <= chunk_types  # what one chunk at a time says
    typer = EventTyper()
    typed = [typer.type_of(e) for e in events]
    reads = [t for e, t in zip(events, typed, strict=True) if e.uuid.endswith(f"_{DATA_TYPE_READ}")]
    assert reads == [EventType.HTTP1_RESPONSE] * len(reads)
    assert typed[0] == EventType.HTTP1_REQUEST


@pytest.mark.e2e
async def test_watch_type_filters_on_the_connection_protocol(site: tuple[int, int]) -> None:
    tap = curl(site[0], "/frames.bin")
    events = events_from_chunks(split_body(tap.chunks, 17 * 20))
    reads = sum(1 for e in events if e.uuid.endswith(f"_{DATA_TYPE_READ}"))
    assert await watch_json(events, "--type", "http2-response") == []
    assert await watch_json(events, "--type", "websocket") == []
    responses = await watch_json(events, "--type", "http1-response")
    assert len(responses) == reads
    for record in responses:
        assert record["meta"]["type"] == 3 and record["meta"]["type_name"] == "HTTP/1.x response"
        assert record["meta"]["sources"]["type"] == "decoder"
    assert {r["type"] for r in responses} >= {4, 5}  # the proto field stays as it was sent


@pytest.mark.e2e
def test_a_servers_http2_writes_are_responses(site: tuple[int, int]) -> None:
    tap = curl(site[1], "/page.txt", "--http2-prior-knowledge")
    events = server_view(frame_writes(tap.chunks))
    writes = [e for e in events if e.uuid.endswith(f"_{DATA_TYPE_WRITE}")]
    assert EventType.HTTP2_REQUEST in {e.type for e in writes}  # what one chunk at a time says
    typer = EventTyper()
    typed = {e.uuid + str(i): typer.type_of(e) for i, e in enumerate(events)}
    for i, e in enumerate(events):
        want = EventType.HTTP2_RESPONSE if e in writes else EventType.HTTP2_REQUEST
        assert typed[e.uuid + str(i)] == want, (i, e.payload[:40])


@pytest.mark.e2e
async def test_watch_type_http2_request_leaves_out_the_servers_writes(site: tuple[int, int]) -> None:
    tap = curl(site[1], "/page.txt", "--http2-prior-knowledge")
    events = server_view(frame_writes(tap.chunks))
    requests = await watch_json(events, "--type", "http2-request")
    assert requests and all(r["uuid"].endswith(f"_{DATA_TYPE_READ}") for r in requests)
    responses = await watch_json(events, "--type", "http2-response")
    assert responses and all(r["uuid"].endswith(f"_{DATA_TYPE_WRITE}") for r in responses)


# -- 4. metadata recovered from eCapture 2.x text headers -------------------------------------------


HEADER_ONLY = Event(
    timestamp=1_760_495_631_914_807_673,
    type=1,
    payload=b"PID:5151, Comm:wget, Src:10.0.0.5:40522, Dest:93.184.216.34:443,\n"
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
)


@pytest.mark.e2e
async def test_watch_json_meta_has_what_the_text_header_said() -> None:
    [record] = await watch_json([HEADER_ONLY])
    assert (record["pid"], record["pname"], record["src_ip"], record["dst_port"]) == (0, "", "", 0)  # as sent
    assert record["meta"] == {
        "pid": 5151, "tid": None, "pname": "wget", "fd": None,
        "src_ip": "10.0.0.5", "src_port": 40522, "dst_ip": "93.184.216.34", "dst_port": 443,
        "direction": None, "type": 1, "type_name": "HTTP/1.x request",
        "sources": {"pid": "header", "tid": None, "pname": "header", "fd": None, "src_ip": "header",
                    "src_port": "header", "dst_ip": "header", "dst_port": "header", "direction": None,
                    "type": "decoder"},
    }  # fmt: skip


@pytest.mark.e2e
async def test_watch_json_meta_from_proto_and_uuid() -> None:
    event = Event(timestamp=1, uuid="2746_2747_curl_5_1", pid=2746, pname="curl", src_ip="10.0.0.5",
                  src_port=40522, dst_ip="93.184.216.34", dst_port=443, type=1,
                  payload=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # fmt: skip
    [record] = await watch_json([event])
    meta = record["meta"]
    assert (meta["pid"], meta["tid"], meta["fd"], meta["direction"]) == (2746, 2747, 5, "write")
    assert meta["sources"] == {"pid": "proto", "tid": "uuid", "pname": "proto", "fd": "uuid",
                               "src_ip": "proto", "src_port": "proto", "dst_ip": "proto",
                               "dst_port": "proto", "direction": "uuid", "type": "decoder"}  # fmt: skip


@pytest.mark.e2e
async def test_text_header_line_uses_the_recovered_values() -> None:
    async with Server(heartbeat_interval=0.2) as server:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "watch", server.url, "--count", "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        await asyncio.wait_for(server.wait_for_client(), 20)
        server.publish_event(HEADER_ONLY)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert "    pid 5151  process wget  10.0.0.5:40522 -> 93.184.216.34:443" in lines, lines


def test_readme_documents_meta() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## The JSON Lines format")[1].split("\n## ")[0]
    assert "`meta`" in section and '"header"' in section and '"uuid"' in section
