"""hexdump's text is the byte-by-byte definition: offset, each byte as two hex digits, and printable ASCII
as itself (anything else a dot), whatever the bytes and the width."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ecaptureq.decode.bodies import HEX_CHUNK_LINES, hexdump, hexdump_chunks, hexdump_pieces


def _by_the_byte(data: bytes, width: int) -> str:
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off : off + width]
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexpart:<{width * 3 - 1}}  |{asc}|")
    return "\n".join(lines)


@given(st.binary(max_size=600), st.sampled_from([1, 8, 16, 32]))
def test_hexdump_is_the_byte_by_byte_definition(data: bytes, width: int) -> None:
    assert hexdump(data, width) == _by_the_byte(data, width)
    assert hexdump(bytearray(data), width) == _by_the_byte(data, width)


def test_hexdump_of_every_byte_value() -> None:
    every = bytes(range(256))
    assert hexdump(every) == _by_the_byte(every, 16)
    assert hexdump(every).splitlines()[2] == (
        "00000020  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f  | !\"#$%&'()*+,-./|"
    )
    assert hexdump(b"") == ""


def test_hexdump_in_chunks_is_the_same_dump_across_chunk_boundaries() -> None:
    step = 16 * HEX_CHUNK_LINES
    for size in (step - 1, step, step + 1, 3 * step + 5):
        data = bytes(i * 7 % 256 for i in range(size))
        chunks = list(hexdump_chunks(data))
        assert len(chunks) == -(-size // step)
        assert all(c.count("\n") == HEX_CHUNK_LINES - 1 for c in chunks[:-1])
        assert "\n".join(chunks) == hexdump(data) == _by_the_byte(data, 16)
        assert hexdump_pieces(data) == (chunks if size > step else [hexdump(data)])
    assert list(hexdump_chunks(b"")) == []
    assert hexdump_pieces(b"") == [""]  # a text block's empty line, as hexdump(b"") was
