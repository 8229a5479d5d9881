"""An endless HTTP/2 CONTINUATION cannot grow the decoder's memory (and the bound sees what it holds)."""

from __future__ import annotations

import tracemalloc

import hpack
from hostile_support import H2_PREFACE, event, h2_frame

from ecaptureq.decode import Decoder, MessageDone

FRAME = 16 * 1024
EVENT = 1024 * 1024
TOTAL = 96 * 1024 * 1024


def test_endless_continuation_is_dropped_as_it_arrives() -> None:
    decoder = Decoder()
    headers = hpack.Encoder().encode([(":method", "GET"), (":scheme", "https"), (":path", "/")])
    first = H2_PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 0x1, 1, headers)  # END_STREAM, no END_HEADERS
    decoder.feed(event("attacker", 3, 1, first, 0))
    chunk = h2_frame(9, 0, 1, b"\x00" * (FRAME - 9)) * (EVENT // FRAME)  # CONTINUATION, no END_HEADERS
    tracemalloc.start()
    most_buffered = 0
    try:
        for n in range(TOTAL // EVENT):
            decoder.feed(event("attacker", 3, 1, chunk, n + 1))
            most_buffered = max(most_buffered, decoder.buffered)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0 < most_buffered <= 2 * 1024 * 1024  # counted, and bounded by the header-block cap
    assert peak < 16 * 1024 * 1024, peak  # 96 MiB went through
    # the block ends: the request is reported with the error, and the connection goes on
    items = decoder.feed(event("attacker", 3, 1, h2_frame(9, 0x4, 1, b""), 200))
    errors = [e for item in items if isinstance(item, MessageDone) for e in item.message.errors]
    assert any("exceeds" in e and "dropped" in e for e in errors), items
    assert decoder.buffered == 0
