"""Fuzzing the front door: garbage, truncated and hostile handshakes over raw TCP never break the server.

A seeded, generated corpus (so a failure reproduces) is thrown at a real server on 127.0.0.1 over raw
sockets: random bytes, a valid handshake cut at every few bytes and with bytes flipped, huge request lines
and headers, bad Upgrade/Connection/version/key, odd methods and versions, duplicate and hostile Origin
and Authorization headers, frames after the handshake that break RFC 6455, and slowloris-style
handshakes that never finish and must be cut by the handshake timeout. Afterwards a normal client still
connects and receives events, and nothing was answered with 500 or logged as a handler failure. The
policy functions get the same treatment from hypothesis.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeaderValue
from websockets.http11 import Request

from ecaptureq.access import check_handshake, origin_allowed, parse_origin, presented_tokens
from ecaptureq.client import Client
from ecaptureq.protocol import Event
from ecaptureq.server import Server
from ecaptureq.server.handshake import handshake_request

TOKEN = "fuzz-token-123"
KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake(*extra: str, path: str = "/", method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [
        f"{method} {path} {version}",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def corpus(seed: int = 7) -> list[bytes]:
    """The generated corpus: about 350 requests, the same for a given seed."""
    rng = random.Random(seed)
    good = handshake(f"Authorization: Bearer {TOKEN}")
    cases: list[bytes] = [b"", b"\r\n\r\n", b"\x00" * 64, b"\x16\x03\x01\x02\x00" + bytes(300)]  # TLS hello
    cases += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2048))) for _ in range(40)]
    cases += [good[:cut] for cut in range(0, len(good), 3)]  # truncated at every third byte
    for _ in range(200):  # bit flips, byte drops and duplications of a valid handshake
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[i]
            else:
                data[i:i] = data[i : i + rng.randrange(1, 40)]
        cases.append(bytes(data))
    cases += [
        handshake(path="/" + "a" * 70_000),  # huge request line
        handshake("X-Big: " + "b" * 200_000),  # one huge header
        handshake(*(f"X-H{i}: {i}" for i in range(1000))),  # too many headers
        handshake("Upgrade: h2c"),
        handshake(method="POST"),
        handshake(method="GET\x00"),
        handshake(version="HTTP/1.0"),
        handshake(version="HTTP/2.0"),
        handshake(version="HTTP/1.1 extra"),
        good.replace(b"Upgrade: websocket", b"Upgrade: nope"),
        good.replace(b"Connection: Upgrade", b"Connection: keep-alive"),
        good.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        good.replace(KEY.encode(), b"short"),
        good.replace(KEY.encode(), b"!!!not base64!!!!!!!!!!!"),
        good.replace(KEY.encode(), b""),
        handshake(f"Sec-WebSocket-Key: {KEY}"),  # the key twice
        handshake("Origin: http://localhost", "Origin: https://evil.example"),
        handshake("Origin: " + "x" * 5000),
        handshake("Origin: http://[::1"),
        handshake("Origin: http://localhost:99999999999999999999"),
        handshake("Origin: \x7f\x80\xff"),
        handshake("Authorization: Bearer"),
        handshake("Authorization: Bearer " + "t" * 10_000),
        handshake("Authorization: " + "\xff" * 20),
        handshake(f"Authorization: Bearer {TOKEN}", "Authorization: Bearer other"),
        handshake(path=f"/?token={TOKEN}&token=%ff%fe&token"),
        handshake(path="/?token=%" + "%" * 100),
        handshake(path="http://evil.example/?token=" + TOKEN),
        handshake(path="//["),  # urlsplit raises on this target (hypothesis found it)
        handshake(path="//[?token=" + TOKEN),
        handshake("Content-Length: 99999999999999999999"),
        handshake("Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n",
        good + good,  # a pipelined second handshake
        good.replace(b"\r\n", b"\n"),
        good.replace(b": ", b":"),
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
    ]
    # valid handshakes followed by frames that break RFC 6455
    cases += [
        good + frame(0x2, b"x", mask=False),  # unmasked client frame
        good + frame(0x3, b"reserved opcode"),
        good + frame(0x1, b"a", rsv=7),  # reserved bits
        good + frame(0x1, b"\xff\xfe not utf-8"),
        good + frame(0x9, b"p" * 200),  # control frame over 125 bytes
        good + frame(0x8, b"\x03\xe7bad code 999"),
        good + frame(0x8, b"\x03"),  # one-byte close payload
        good + frame(0x0, b"continuation without a start"),
        good + frame(0x2, b"", fin=False) + frame(0x9, b"") + frame(0x1, b"interleaved"),
        good + bytes([0x82, 0xFF]) + struct.pack("!Q", 2**63 - 1) + b"\x00\x00\x00\x00",  # absurd length
        good + frame(0x2, b"z" * 100_000),  # over max_message_size
        good + b"".join(frame(0x2, b"flood") for _ in range(500)),  # over max_inbound_rate
    ]
    return cases


async def throw(port: int, data: bytes, split: bool) -> bytes:
    """Send ``data`` (at once, or in a few pieces), then read what comes back until EOF (bounded)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return b""
    try:
        if split and len(data) > 4:
            step = max(1, len(data) // 4)
            for i in range(0, len(data), step):
                writer.write(data[i : i + step])
                await writer.drain()
                await asyncio.sleep(0.01)
        else:
            writer.write(data)
            await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 15)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def one_event_through_a_client(server: Server) -> Event:
    async def publish() -> None:
        for i in range(200):
            server.publish_event(Event(uuid=f"after-fuzz-{i}"))
            await asyncio.sleep(0.05)

    publisher = asyncio.create_task(publish())
    try:
        client = Client(server.url, headers={"Authorization": f"Bearer {TOKEN}"})
        async for message in client:
            if isinstance(message, Event):
                await client.close()
                return message
        raise AssertionError("the stream ended without an event")
    finally:
        publisher.cancel()


@pytest.mark.e2e
@pytest.mark.timeout(240)
async def test_the_corpus_never_breaks_the_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    server = Server(port=0, token=TOKEN, open_timeout=1.0, max_message_size=4096, max_inbound_rate=20)
    async with server:
        server.publish_log("fuzz target")
        cases = corpus()
        assert len(cases) > 300
        semaphore = asyncio.Semaphore(40)

        async def bounded(i: int, data: bytes) -> bytes:
            async with semaphore:
                return await throw(server.port, data, split=i % 5 == 0)

        replies = await asyncio.gather(*(bounded(i, d) for i, d in enumerate(cases)))
        for data, reply in zip(cases, replies, strict=True):
            status_line = reply.split(b"\r\n", 1)[0]
            assert not status_line.startswith(b"HTTP/1.1 5") or b" 503 " in status_line, (data[:200], reply)
        assert any(r.startswith(b"HTTP/1.1 101") for r in replies)  # the corpus did reach the server
        assert any(r.startswith(b"HTTP/1.1 401") for r in replies)
        assert any(r.startswith(b"HTTP/1.1 403") for r in replies)
        assert any(r.startswith(b"HTTP/1.1 400") for r in replies)
        event = await one_event_through_a_client(server)
        assert event.uuid.startswith("after-fuzz-")
        assert server.stats.flood_closes >= 1
    # "process_request failed" or "connection handler failed" would be a bug of ours. (websockets 17 logs
    # "unexpected internal error" when bytes follow an invalid handshake in the same packet: it sends EOF
    # twice; the connection is dropped without a 400 and the server goes on. That is upstream's, and the
    # corpus keeps those cases.)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert not failures, failures


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_slowloris_handshakes_are_cut_by_the_timeout_while_others_are_served() -> None:
    async with Server(port=0, open_timeout=0.5) as server:
        server.publish_log("slowloris target")
        request = handshake()
        streams = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(30)]
        closed = [False] * len(streams)
        meanwhile = asyncio.create_task(one_event_through_a_client(server))  # served while dripped on
        for step in range(200):  # one byte per stream per step, never the whole handshake
            for i, (reader, writer) in enumerate(streams):
                if closed[i]:
                    continue
                if reader.at_eof() or writer.is_closing():
                    closed[i] = True
                    continue
                writer.write(request[step % (len(request) - 4) : step % (len(request) - 4) + 1])
                try:
                    await writer.drain()
                except OSError:
                    closed[i] = True
            for i, (reader, _writer) in enumerate(streams):
                if not closed[i]:
                    try:
                        data = await asyncio.wait_for(reader.read(1024), 0.05)
                        closed[i] = data == b""
                    except TimeoutError:
                        pass
                    except OSError:
                        closed[i] = True
            if all(closed):
                break
        assert all(closed), f"{closed.count(False)} slow handshakes were never cut"
        assert (await asyncio.wait_for(meanwhile, 60)).uuid.startswith("after-fuzz-")
        for _reader, writer in streams:
            writer.close()
        event = await one_event_through_a_client(server)
        assert event.uuid.startswith("after-fuzz-")
        assert server.stats.connections == 2  # the two real clients; no dripped handshake got in


header_values = st.text(alphabet=st.characters(codec="latin-1"), max_size=300) | st.sampled_from(
    ["http://localhost", "null", "Bearer x", "http://[::1]:1", "*", "http://127.0.0.1:0"]
)


@settings(max_examples=400, deadline=None)
@given(
    path=st.text(max_size=200).map(lambda p: "/" + p),
    origins=st.lists(header_values, max_size=3),
    auths=st.lists(header_values, max_size=3),
    allowed=st.lists(st.sampled_from(["*", "https://app.example"]), max_size=2),
    token=st.sampled_from([None, TOKEN]),
)
def test_the_policy_never_raises(
    path: str, origins: list[str], auths: list[str], allowed: list[str], token: str | None
) -> None:
    headers = Headers()
    for name, values in (("Origin", origins), ("Authorization", auths)):
        for value in values:
            with contextlib.suppress(InvalidHeaderValue):  # what websockets' parser refuses never gets here
                headers[name] = value
    request = handshake_request(Request(path, headers))
    refusal = check_handshake(request, allowed_origins=allowed, token=token, max_connections=10)
    if refusal is not None:
        assert refusal.status in (401, 403, 503)
        assert token is None or token not in refusal.body
    presented_tokens(request)
    for value in origins:
        parse_origin(value)
        origin_allowed(value)
