"""The tolerant HPACK decoder: never raises, equals ``hpack.Decoder`` when the table is known, and after a
late join decodes every field it can, marking the others, at the positions the encoder put them."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from ecaptureq.decode.hpack_tolerant import TolerantDecoder, UnknownField

_NAMES = st.sampled_from(
    [":method", ":path", ":authority", ":status", "content-type", "x-trace", "user-agent", "cookie", "te"]
)
_VALUES = st.one_of(
    st.sampled_from(["GET", "POST", "/", "/index.html", "200", "404", "application/grpc", "trailers"]),
    st.text(max_size=40),
)
_HEADERS = st.lists(st.tuples(_NAMES, _VALUES), max_size=12)
_BLOCKS = st.lists(st.tuples(_HEADERS, st.booleans(), st.sampled_from([None, 0, 256, 4096])), max_size=8)


def _encode(blocks: list[tuple[list[tuple[str, str]], bool, int | None]]) -> list[bytes]:
    enc = hpack.Encoder()
    out = []
    for headers, huffman, table_size in blocks:
        if table_size is not None:
            enc.header_table_size = table_size
        out.append(enc.encode(headers, huffman=huffman))
    return out


def _reference(max_table: int) -> hpack.Decoder:
    dec = hpack.Decoder(max_header_list_size=1 << 20)
    dec.max_allowed_table_size = max_table
    return dec


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6), st.booleans())
def test_never_raises_and_agrees_with_hpack_when_it_succeeds(blocks: list[bytes], from_start: bool) -> None:
    ours = TolerantDecoder(from_start=True, max_table_size=1 << 16)
    late = TolerantDecoder(from_start=from_start)
    ref = _reference(1 << 16)
    ref_ok = True
    for data in blocks:
        got = ours.decode(data)
        late.decode(data)  # whatever it makes of garbage, it returns
        if not ref_ok:
            continue
        try:
            want = [tuple(h) for h in ref.decode(data, raw=True)]
        except Exception:
            ref_ok = False  # hpack's table is now in a state of its own: compare no further
            continue
        assert not got.errors and not got.unknown
        assert [tuple(f) for f in got.known] == want


@settings(max_examples=200, deadline=None)
@given(_BLOCKS)
def test_equals_hpack_from_the_start(blocks: list[tuple[list[tuple[str, str]], bool, int | None]]) -> None:
    ours = TolerantDecoder(from_start=True)
    ref = _reference((1 << 24) - 1)
    for data in _encode(blocks):
        got = ours.decode(data)
        assert not got.errors and not got.unknown
        assert got.known == [tuple(h) for h in ref.decode(data, raw=True)]


@settings(max_examples=200, deadline=None)
@given(_BLOCKS, st.integers(min_value=0, max_value=8))
def test_late_join_keeps_positions_and_learns(
    blocks: list[tuple[list[tuple[str, str]], bool, int | None]], skip: int
) -> None:
    encoded = _encode(blocks)
    late = TolerantDecoder()  # joined after ``skip`` blocks
    for (headers, _huffman, _size), data in list(zip(blocks, encoded, strict=True))[skip:]:
        got = late.decode(data)
        assert not got.errors
        assert len(got.fields) == len(headers)
        for f, (name, value) in zip(got.fields, headers, strict=True):
            if isinstance(f, UnknownField):
                # only what refers to the table: a name and value in the static table always decode
                assert f.name is None or f.name == name.encode()
                assert f.value is None or f.value == value.encode()
            else:
                assert f == (name.encode(), value.encode())


def test_static_and_literal_fields_decode_after_a_late_join_and_literals_are_learned() -> None:
    enc = hpack.Encoder()
    first = [(":method", "POST"), (":path", "/helloworld.Greeter/SayHello"), ("x-a", "1")]
    enc.encode(first)  # never seen by the late joiner: its entries fill the encoder's table
    second = enc.encode([(":method", "POST"), (":path", "/helloworld.Greeter/SayHello"), ("x-b", "2")])
    third = enc.encode([("x-b", "2"), (":path", "/helloworld.Greeter/SayHello")])
    late = TolerantDecoder()
    got = late.decode(second)
    assert got.fields[0] == (b":method", b"POST")  # static table
    assert isinstance(got.fields[1], UnknownField)  # an entry added before the join
    assert got.fields[2] == (b"x-b", b"2")  # literal, and learned
    assert late.decode(third).fields[0] == (b"x-b", b"2")  # a reference to what was learned


def test_a_literal_with_an_unknown_name_is_learned_as_a_placeholder_that_keeps_indices_aligned() -> None:
    enc = hpack.Encoder()
    enc.encode([("x-tenant", "a")])  # before the join: entry 62 is x-tenant: a
    second = enc.encode([("x-tenant", "b"), ("x-zone", "eu")])  # name from entry 62; both learned
    third = enc.encode([("x-tenant", "b"), ("x-zone", "eu")])  # two references to what was learned
    late = TolerantDecoder()
    got = late.decode(second)
    assert got.fields == [UnknownField(62, None, b"b"), (b"x-zone", b"eu")]
    again = late.decode(third)
    assert again.fields == [UnknownField(63, None, b"b"), (b"x-zone", b"eu")]
    assert "unknown" in again.fields[0].describe() and ": b" in again.fields[0].describe()


def test_huffman_strings_decode_alike_each_time_and_a_bad_one_fails_each_time() -> None:
    enc = hpack.Encoder()
    block = enc.encode([("user-agent", "grpc-go/1.64.0 (linux; amd64)")], huffman=True)
    for _ in range(3):  # a fresh table each time: the same literal bytes, from the cache after the first
        assert TolerantDecoder(from_start=True).decode(block).fields == [
            (b"user-agent", b"grpc-go/1.64.0 (linux; amd64)")
        ]
    # A literal name (0x00), Huffman-coded, of one byte: 0xff alone is not a whole Huffman string.
    bad = b"\x00\x81\xff\x01v"
    for _ in range(2):
        got = TolerantDecoder(from_start=True).decode(bad)
        assert got.fields == [] and got.errors and "Huffman" in got.errors[0]


def test_a_bytearray_block_decodes_as_bytes_do() -> None:
    block = hpack.Encoder().encode([(":path", "/x"), ("x-k", "vvvvvvvv")], huffman=True)
    assert TolerantDecoder(from_start=True).decode(bytearray(block)).fields == [
        (b":path", b"/x"),
        (b"x-k", b"vvvvvvvv"),
    ]
