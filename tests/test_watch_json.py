"""``json_line`` writes with orjson but must give exactly the text the standard library's encoder gives."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecaptureq.cli.terminal import JsonFloat, json_float, json_line, plain_float

_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def stdlib_line(obj: Any) -> str:
    """The reference: ``json.dumps`` compact and unescaped, then the terminal-unsafe characters escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # beyond 64 bits orjson refuses: json.dumps then
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # lone surrogates, controls, C1, bidi: all go through
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), inner, max_size=4)
    ),  # int keys: json.dumps
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_json_line_is_json_dumps_text(obj: Any) -> None:
    assert json_line(obj) == stdlib_line(obj)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_plain_float_is_where_orjson_and_json_agree(value: float) -> None:
    if plain_float(value):
        assert json_line(value, floats_checked=True) == json.dumps(value)


def test_odd_floats_wrapped_take_the_fast_path_with_json_dumps_text() -> None:
    """A latency of 5e-05 s (json writes ``5e-05``, orjson ``0.00005``) wrapped by json_float: written as
    json.dumps writes it, with or without the walk; a plain one stays a plain float."""
    odd = {"kind": "response", "latency": json_float(5e-05), "more": [{"latency": json_float(float("nan"))}]}
    assert type(odd["latency"]) is JsonFloat and type(json_float(0.25)) is float and json_float(None) is None
    assert json_line(odd, floats_checked=True) == json_line(odd) == stdlib_line(odd)
    assert '"latency":5e-05' in json_line(odd) and '"latency":NaN' in json_line(odd)


@given(SCALARS)
def test_json_float_any_value(value: Any) -> None:
    if isinstance(value, float):
        assert json_line([json_float(value)], floats_checked=True) == stdlib_line([value])


def test_raw_json_fields_match_the_uncached_path() -> None:
    """``--json --no-decode`` keeps each connection's ``meta``; an event with a text header, or other
    fields, on the same uuid gets its own."""
    from ecaptureq.cli.render_http import HttpView
    from ecaptureq.protocol import Event

    uuid = "42_42_curl_5_1"
    events = [
        Event(timestamp=1_760_000_000_000_000_000, uuid=uuid, type=1, payload=b"GET / HTTP/1.1\r\n"),
        Event(timestamp=1_760_000_000_000_000_001, uuid=uuid, type=1, payload=b"Host: a\r\n\r\n"),
        Event(uuid=uuid, type=1, payload=b"PID:7, Comm:wget, Src:10.0.0.1:5, Dest:10.0.0.2:443,\nGET /"),
        Event(uuid=uuid, type=1, pname="other", payload=b"x"),
        Event(uuid=uuid, type=0, payload=b"\x00\x01"),
        Event(uuid=uuid, type=1, payload=b"again"),
    ]
    cached = HttpView(decode=False)
    assert cached.raw
    for event in events:
        fresh = HttpView(decode=False)
        shown = fresh.feed(event)
        assert shown is not None
        assert cached.raw_json_fields(event) == fresh.json_fields(shown)
    assert cached.raw_json_fields(events[2])["meta"]["pname"] == "wget"
    assert not HttpView().raw
