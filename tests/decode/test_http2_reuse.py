"""What the HTTP/2 decoder keeps between frames to go faster: header blocks remembered with what they decoded
to (valid only while the HPACK table is unchanged), frames held across captures, Huffman strings. Each must
give what decoding afresh gives (``hpack.Decoder`` is the reference) and stay bounded."""

from __future__ import annotations

import hpack
import hyperframe.frame
from hypothesis import given, settings
from hypothesis import strategies as st

from ecaptureq.decode.http2 import _CACHED_BLOCKS, H2_PREFACE, H2Connection

_REQUESTS = [
    [(":method", "POST"), (":scheme", "https"), (":path", "/a.B/C"), (":authority", "x"), ("te", "trailers")],
    [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "x")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/q"), (":authority", "y"), ("x-id", "1")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/q"), (":authority", "y"), ("x-id", "2")],
]


def _headers_frame(sid: int, block: bytes, end_stream: bool = True) -> bytes:
    frame = hyperframe.frame.HeadersFrame(sid, block)
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def _data_frame(sid: int, data: bytes, end_stream: bool) -> bytes:
    frame = hyperframe.frame.DataFrame(sid, data)
    if end_stream:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def _requests(blocks: list[bytes]) -> list[list[tuple[str, str]]]:
    """The request headers the decoder gives for ``blocks``, sent from the connection's start."""
    conn = H2Connection()
    data = H2_PREFACE + b"".join(_headers_frame(1 + 2 * i, b) for i, b in enumerate(blocks))
    result = conn.feed("client", data)
    assert not result.errors
    return [m.headers for m in result.messages]


def _reference(blocks: list[bytes]) -> list[list[tuple[str, str]]]:
    dec = hpack.Decoder()
    return [[(k.decode(), v.decode()) for k, v in dec.decode(b, raw=True)] for b in blocks]


def test_a_repeated_header_block_follows_the_table_it_refers_to() -> None:
    # b"\xbe" is "dynamic table entry 62", the newest one: the same byte means a new field after each add.
    add_a = hpack.Encoder().encode([("x-a", "1")])
    add_b = hpack.Encoder().encode([("x-b", "2")])
    assert add_a[0] & 0xC0 == 0x40 and add_b[0] & 0xC0 == 0x40  # literals with incremental indexing
    blocks = [add_a, b"\xbe", b"\xbe", add_b, b"\xbe", b"\xbe\xbf", b"\xbe"]
    got = _requests(blocks)
    assert got == _reference(blocks)
    assert got[2] == [("x-a", "1")] and got[4] == [("x-b", "2")]


def test_a_table_size_update_invalidates_what_was_remembered() -> None:
    enc = hpack.Encoder()
    first = enc.encode([("x-a", "1")])
    again = enc.encode([("x-a", "1")])
    assert again == b"\xbe"
    conn = H2Connection()
    result = conn.feed("client", H2_PREFACE + _headers_frame(1, first) + _headers_frame(3, again) * 1)
    assert [m.headers for m in result.messages] == [[("x-a", "1")], [("x-a", "1")]]
    # Emptying the table (size 0) drops the entry: the same reference is now beyond the table.
    result = conn.feed("client", _headers_frame(5, b"\x20") + _headers_frame(7, again))
    late = result.messages[-1]
    assert late.stream_id == 7 and late.headers == []
    assert any("beyond the table" in e for e in late.errors)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_REQUESTS) - 1), st.sampled_from([None, 0, 64, 4096])),
        min_size=1,
        max_size=30,
    )
)
def test_requests_chosen_from_a_few_decode_as_hpack_decodes_them(picks: list[tuple[int, int | None]]) -> None:
    enc = hpack.Encoder()
    blocks = []
    for index, table_size in picks:
        if table_size is not None:
            enc.header_table_size = table_size
        blocks.append(enc.encode(_REQUESTS[index]))
    assert _requests(blocks) == _reference(blocks)


def test_remembered_blocks_are_bounded() -> None:
    # Blocks of static table references only: each leaves the table unchanged, so each may be remembered.
    conn = H2Connection()
    statics = [bytes([0x80 | i, 0x80 | j]) for i in range(2, 12) for j in range(14, 24)]
    data = H2_PREFACE + b"".join(_headers_frame(1 + 2 * i, b) for i, b in enumerate(statics))
    result = conn.feed("client", data)
    assert len(result.messages) == len(statics) and not result.errors
    cache = conn._dirs["client"].cache
    assert 0 < len(cache) <= _CACHED_BLOCKS


def test_a_frame_split_over_many_captures_is_joined_whole() -> None:
    body = bytes(range(256)) * 800  # 200 KiB in 13 DATA frames
    head = _headers_frame(1, hpack.Encoder().encode(_REQUESTS[0]), end_stream=False)
    frames = [_data_frame(1, body[i : i + 16384], i + 16384 >= len(body)) for i in range(0, len(body), 16384)]
    wire = H2_PREFACE + head + b"".join(frames)
    conn = H2Connection(body_limit=1 << 20)
    messages = []
    for i in range(0, len(wire), 1000):
        result = conn.feed("client", wire[i : i + 1000])
        assert not result.errors
        messages += result.messages
        if not messages:
            # what is held: the frame in progress and the body so far, no more
            assert conn.buffered <= min(i + 1000, len(wire)) - len(H2_PREFACE)
    assert len(messages) == 1
    assert messages[0].raw_body == body and messages[0].body_size == len(body)
    assert conn.buffered == 0
