"""Content-Encoding with a cap, charsets and gRPC framing."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from ecaptureq.decode import decode_body, decompress
from ecaptureq.decode.bodies import is_json_text, split_grpc
from ecaptureq.decode.model import HttpMessage

ZEROS = bytes(64 * 1024 * 1024)
BOMBS = {
    "gzip": lambda: gzip.compress(ZEROS, 1),
    "deflate": lambda: zlib.compress(ZEROS, 1),
    "br": lambda: brotli.compress(ZEROS, quality=1),
    "zstd": lambda: zstandard.ZstdCompressor(level=1).compress(ZEROS),
}


@pytest.mark.parametrize("coding", sorted(BOMBS))
def test_bomb_in_every_coding_stops_at_the_limit(coding: str) -> None:
    bomb = BOMBS[coding]()
    assert len(bomb) < 1024 * 1024
    out, truncated, err = decompress(bomb, coding, limit=1024 * 1024)
    assert truncated and err is None and len(out) == 1024 * 1024
    body = decode_body(bomb, "application/octet-stream", coding, limit=1024 * 1024)
    assert body.truncated and any("bomb" in n for n in body.notes)


def test_raw_deflate_without_zlib_wrapper() -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = c.compress(b"raw deflate body") + c.flush()
    assert decode_body(raw, "text/plain", "deflate").text == "raw deflate body"


def test_stacked_codings_are_undone_right_to_left() -> None:
    data = brotli.compress(gzip.compress(b"twice"))
    assert decode_body(data, "text/plain", "gzip, br").text == "twice"


def test_unknown_coding_and_charset() -> None:
    body = decode_body(b"abc", "text/plain; charset=klingon", "x-magic")
    assert body.errors == ["unknown content-encoding 'x-magic'"]
    assert body.text == "abc" and any("klingon" in n for n in body.notes)


def test_charsets() -> None:
    assert decode_body("żółw".encode("utf-16"), "text/plain; charset=UTF-16").text == "żółw"
    assert decode_body("naïve".encode("cp1252"), "text/html; charset=windows-1252").text == "naïve"
    assert decode_body("naïve".encode("latin-1"), "text/plain").text == "naïve"  # not UTF-8: ISO-8859-1


def test_truncated_gzip_is_an_error_with_partial_output() -> None:
    data = gzip.compress(bytes(range(256)) * 100)
    out, truncated, err = decompress(data[: len(data) // 2], "gzip")
    assert not truncated and err is not None and out and (bytes(range(256)) * 100).startswith(out)


_COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("coding", sorted(_COMPRESS))
def test_a_body_cut_short_says_so_in_every_coding(coding: str) -> None:
    whole = bytes(range(256)) * 100
    data = _COMPRESS[coding](whole)
    out, truncated, err = decompress(data[: len(data) // 2], coding)
    assert not truncated and err == "compressed data ends early" and whole.startswith(out)  # zstd: no error


def test_grpc_framing() -> None:
    assert split_grpc(b"\x00\x00\x00\x00\x01a\x00\x00\x00\x00\x00") == ([b"a", b""], None)
    msgs, err = split_grpc(b"\x00\x00\x00\x00\x09abc")
    assert msgs == [b"abc"] and err is not None
    assert split_grpc(b"\x07\x00\x00\x00\x00")[1] == "bad gRPC compressed-flag 7"


JSON_EDGES = [
    '{"a": [1, 2.5, "x", null, true]}',
    "NaN",
    "-Infinity",
    "1e400",
    "123456789012345678901234567890",
    '"\\ud800"',
    '"\ud800"',
    "\ufeff{}",
    '"a\x01b"',
    "01",
    "1.",
    "[1,]",
    "\x0c1",
    "\u00a01",
    "1 2",
    "",
    "[" * 1100 + "]" * 1100,  # deeper than orjson goes
    "[" * 900 + "]" * 900,
]


@pytest.mark.parametrize("text", JSON_EDGES, ids=range(len(JSON_EDGES)))
def test_is_json_text_is_what_json_loads_accepts(text: str) -> None:
    try:
        json.loads(text)
        expected = True
    except (ValueError, RecursionError):
        expected = False
    assert is_json_text(text) is expected


_TYPES = [
    "",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/html; charset=iso-8859-1",
    "application/grpc",
    "application/grpc+proto",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "image/png",
    "application/vnd.api+json",
    "x/unknown",
]
_BODIES = [
    b'{"a": [1, 2, {"b": null}]}',
    b"[1, 2",
    b"NaN",
    b'{"n": 1e999}',
    b"hello world\r\n",
    b"caf\xc3\xa9",
    b"caf\xe9",
    b"\x00\x01\x02binary",
    b"a=1&b=2&c",
    b"\x00\x00\x00\x00\x03abc\x00\x00\x00\x00\x01z",
    b"\x00\x00\x00\x00\x09abc",
    b"\x02\x00\x00\x00\x00",
    b"\x1b[31mred\x1b[0m\x07\x07\x07",
    b"  [true]",
]


@given(
    st.sampled_from(_BODIES) | st.binary(min_size=1, max_size=64),
    st.sampled_from(_TYPES),
    st.sampled_from(["", "identity"]),
    st.sampled_from([8, 1024]),
)
def test_set_body_fast_path_decodes_as_decode_body(body: bytes, ctype: str, coding: str, limit: int) -> None:
    """HttpMessage.set_body takes plain_body's short cut for unencoded bodies; what it stores is what
    decode_body gives, field by field (identity coding and over-limit bodies go the long way)."""
    msg = HttpMessage(kind="response", content_type=ctype, content_encoding=coding)
    msg.set_body(body, len(body), False, limit)
    decoded = decode_body(body, ctype, coding, limit)
    got = (msg.body, msg.body_text, msg.charset, msg.is_json, msg.form, msg.grpc_messages, msg.truncated)
    want = (
        decoded.data,
        decoded.text,
        decoded.charset,
        decoded.is_json,
        decoded.form,
        decoded.grpc_messages,
        decoded.truncated,
    )
    assert got == want
    assert (msg.errors, msg.notes) == (decoded.errors, decoded.notes)


def test_whether_a_body_is_json_is_the_same_whichever_path_decoded_it() -> None:
    # Plain bodies and content-encoded ones take two paths through set_body; both leave is_json to be
    # worked out when asked, from the decoded text and the type.
    cases = [
        ("application/json", b'{"a": [1, 2.5]}', True),
        ("application/json", b"{not json", False),
        ("", b'[1, "x"]', True),
        ("text/plain", b'{"a": 1}', False),
    ]
    for ctype, body, expected in cases:
        for coding, carried in (("", body), ("gzip", gzip.compress(body)), ("br", brotli.compress(body))):
            msg = HttpMessage("response", content_type=ctype, content_encoding=coding)
            msg.set_body(carried, len(carried), False, 1024 * 1024)
            assert msg.body_text == body.decode() and msg.is_json is expected, (ctype, body, coding)
            assert decode_body(carried, ctype, coding).is_json is expected
