"""Hostile header values in HTTP/2 never cost the messages around them."""

from __future__ import annotations

import hpack
import hyperframe.frame

from ecaptureq.decode.http2 import H2Connection


def _headers_frame(sid: int, block: bytes) -> bytes:
    frame = hyperframe.frame.HeadersFrame(sid, block)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def test_a_status_of_non_ascii_digits_is_no_status_and_the_next_response_still_decodes() -> None:
    enc = hpack.Encoder()
    wire = _headers_frame(1, enc.encode([(":status", "²")]))
    wire += _headers_frame(3, enc.encode([(":status", "200")]))
    result = H2Connection().feed("server", wire)
    assert not result.errors
    assert [(m.stream_id, m.status) for m in result.messages] == [(1, None), (3, 200)]
