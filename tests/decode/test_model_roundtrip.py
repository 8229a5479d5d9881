"""The exchange model round-trips: ``Exchange.from_dict(x.to_dict()) == x`` for generated exchanges, through
JSON and through a real capture database; rows written before the format had a version still load; a
malformed dict raises :class:`FlowFormatError` naming the field, never ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flow_support import FORMAT_1, FORMAT_1_ROW
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.decode.bodies import form_fields
from ecaptureq.decode.model import (
    FLOW_FORMAT,
    FLOW_FORMATS,
    STORED_FORMAT,
    Exchange,
    FlowFormatError,
    HttpMessage,
    UnknownFlowFormat,
)
from ecaptureq.store import CaptureStore
from ecaptureq.store.export import STORED_SELECT, load_exchange
from ecaptureq.store.writer import exchange_row

EXAMPLES = 200

# Captured text is decoded from bytes (ISO-8859-1 for HTTP/1 headers, UTF-8 with replacement for bodies),
# so it never holds a lone surrogate; anything else goes, control characters, NUL and RTL marks included.
any_text = st.text(st.characters(codec="utf-8"), max_size=30)
odd_text = st.one_of(
    any_text, st.sampled_from(["", "\x00", "\r\n", "[", "caf\xe9", "\u202e", "\x1b]52;c;x\x07", "a:b:c"])
)
pairs = st.lists(st.tuples(odd_text, odd_text), max_size=4)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
u16 = st.integers(min_value=0, max_value=65535)


@st.composite
def messages(draw: st.DrawFn, kind: str | None = None) -> HttpMessage:
    """Any message the model can hold: bodies binary, text, or text in another charset than UTF-8."""
    body = draw(st.binary(max_size=64))
    text_kind = draw(st.sampled_from(["none", "utf-8", "latin-1", "unrelated"]))
    body_text: str | None
    if text_kind == "utf-8":
        body_text = draw(any_text)
        body = body_text.encode("utf-8")
    elif text_kind == "latin-1":
        body_text = body.decode("iso-8859-1")
    elif text_kind == "unrelated":  # a body cut inside a character: text and bytes disagree
        body_text = draw(any_text)
    else:
        body_text = None
    message = HttpMessage(
        kind=kind or draw(st.sampled_from(["request", "response"])),
        protocol=draw(st.sampled_from(["http/1.1", "http/1.0", "h2"])),
        method=draw(odd_text),
        url=draw(odd_text),
        path=draw(odd_text),
        scheme=draw(odd_text),
        authority=draw(odd_text),
        status=draw(st.one_of(st.none(), st.integers(min_value=-1, max_value=999))),
        reason=draw(odd_text),
        headers=draw(pairs),
        trailers=draw(pairs),
        raw_body=draw(st.one_of(st.just(body), st.binary(max_size=64))),
        body=body,
        body_text=body_text,
        body_size=draw(st.integers(min_value=0, max_value=2**40)),
        content_type=draw(st.one_of(odd_text, st.just("application/x-www-form-urlencoded"))),
        content_encoding=draw(odd_text),
        charset=draw(st.one_of(st.none(), odd_text)),
        form=draw(st.one_of(st.none(), pairs)),
        grpc_messages=draw(st.one_of(st.none(), st.lists(st.binary(max_size=16), max_size=3))),
        stream_id=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1))),
        truncated=draw(st.booleans()),
        complete=draw(st.booleans()),
        errors=draw(st.lists(odd_text, max_size=3)),
        notes=draw(st.lists(odd_text, max_size=3)),
        raw=draw(st.binary(max_size=32)),
        time_ns=draw(st.one_of(st.none(), i64)),
    )
    if draw(st.booleans()):  # else worked out from the text and type when asked
        message.is_json = draw(st.booleans())
    return message


def json_flags(ex: Exchange) -> list[bool]:
    """is_json of each message (equality leaves it out: it may be known or yet to be worked out)."""
    return [m.is_json for m in (ex.request, ex.response) if m is not None]


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    """Any exchange: either message may be missing, times and latency may be unknown."""
    return Exchange(
        id=draw(st.integers(min_value=1, max_value=2**62)),
        connection=draw(odd_text),
        protocol=draw(st.sampled_from(["http/1.1", "http/1.0", "h2"])),
        stream_id=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1))),
        request=draw(st.one_of(st.none(), messages("request"))),
        response=draw(st.one_of(st.none(), messages("response"))),
        pid=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**32))),
        pname=draw(odd_text),
        tid=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**32))),
        fd=draw(st.one_of(st.none(), st.integers(min_value=-1, max_value=2**31))),
        src_ip=draw(odd_text),
        src_port=draw(u16),
        dst_ip=draw(odd_text),
        dst_port=draw(u16),
        clock=draw(st.sampled_from(["epoch", "boot", "unset"])),
        started_ns=draw(st.one_of(st.none(), i64)),
        ended_ns=draw(st.one_of(st.none(), i64)),
        latency=draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))),
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(ex=exchanges())
def test_exchange_round_trips(ex: Exchange) -> None:
    d = ex.to_dict()
    assert d["format_version"] == FLOW_FORMAT
    back = Exchange.from_dict(d)
    assert back == ex and json_flags(back) == json_flags(ex)


@settings(max_examples=EXAMPLES, deadline=None)
@given(ex=exchanges())
def test_exchange_round_trips_through_json(ex: Exchange) -> None:
    # as the store writes its JSON: UTF-8 text, compact
    text = json.dumps(ex.to_dict(), ensure_ascii=False, separators=(",", ":"))
    back = Exchange.from_dict(json.loads(text))
    assert back == ex and json_flags(back) == json_flags(ex)


@settings(max_examples=EXAMPLES, deadline=None)
@given(msg=messages())
def test_message_round_trips(msg: HttpMessage) -> None:
    back = HttpMessage.from_dict(json.loads(json.dumps(msg.to_dict())))
    assert back == msg and back.is_json == msg.is_json


def _as_stored(msg: HttpMessage | None) -> HttpMessage | None:
    """What the store documents it keeps of a (small) message: the body as decoded, not as carried;
    form fields derived again from the text; no gRPC messages; undecodable bytes only beside errors."""
    if msg is None:
        return None
    return dataclasses.replace(
        msg,
        raw_body=b"",
        form=form_fields(msg.content_type, msg.body_text),
        grpc_messages=None,
        raw=msg.raw if msg.errors else b"",
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ex=exchanges())
def test_exchange_round_trips_through_the_store(ex: Exchange, tmp_path: Path) -> None:
    db = tmp_path / "roundtrip.db"
    db.unlink(missing_ok=True)
    CaptureStore(db).close()  # the schema as record writes it
    with sqlite3.connect(db) as conn:
        row = exchange_row(ex.id, ex)
        conn.execute(f"INSERT INTO exchanges VALUES ({', '.join('?' * len(row))})", row)
        stored = conn.execute(f"{STORED_SELECT} WHERE id = ?", (ex.id,)).fetchone()
    conn.close()
    loaded = load_exchange(stored)
    want = dataclasses.replace(ex, request=_as_stored(ex.request), response=_as_stored(ex.response))
    assert loaded == want


def test_format_1_loads() -> None:
    ex = Exchange.from_dict(FORMAT_1)
    req, resp = ex.request, ex.response
    assert req is not None and resp is not None
    assert (ex.id, ex.connection, ex.pid, ex.pname, ex.clock, ex.latency) == (
        7,
        "1234_5678",
        42,
        "curl",
        "epoch",
        0.05,
    )
    assert req.method == "POST" and req.host == "api.example.com"
    assert ex.url == "https://api.example.com/v1/login?next=/a"
    assert req.headers[2] == ("X-Odd", "caf\u00e9 \x01")
    # format 1 kept no bytes beside a text body: they are its UTF-8, and the body as carried is the body
    assert req.body == req.raw_body == b"user=o%27neil&pass=hunter2"
    assert req.form == [("user", "o'neil"), ("pass", "hunter2")]
    assert resp.status == 200 and resp.body == b"\x00\x01\x02binary\xff" and resp.body_text is None
    assert resp.raw == b"\xde\xad" and resp.errors == ["HTTP/1.x: example error"]
    # once loaded, it is written in the current format and reads back equal
    again = ex.to_dict()
    assert again["format_version"] == FLOW_FORMAT
    assert Exchange.from_dict(again) == ex


def test_format_1_row_in_a_database_loads(tmp_path: Path) -> None:
    # a database written before bodies had their own columns: everything is in detail
    db = tmp_path / "old.db"
    CaptureStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO exchanges (id, connection, protocol, complete, detail)"
            " VALUES (7, '1234_5678', 'http/1.1', 1, ?)",
            (json.dumps(FORMAT_1),),
        )
        row = conn.execute(f"{STORED_SELECT} WHERE id = 7").fetchone()
    conn.close()
    assert load_exchange(row) == Exchange.from_dict(FORMAT_1)


def test_format_1_row_as_the_store_wrote_it_loads(tmp_path: Path) -> None:
    # headers and bodies in their columns, the rest in detail: the body as carried was never stored
    db = tmp_path / "old.db"
    CaptureStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"INSERT INTO exchanges VALUES ({', '.join('?' * len(FORMAT_1_ROW))})", FORMAT_1_ROW)
        row = conn.execute(f"{STORED_SELECT} WHERE id = 7").fetchone()
    conn.close()
    ex = Exchange.from_dict(FORMAT_1)
    assert ex.request is not None and ex.response is not None
    want = dataclasses.replace(
        ex,
        request=dataclasses.replace(ex.request, raw_body=b""),
        response=dataclasses.replace(ex.response, raw_body=b""),
    )
    assert load_exchange(row) == want


def _with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    d = json.loads(json.dumps(FORMAT_1))
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("data", "field", "value"),
    [
        (_with(("format_version",), max(FLOW_FORMATS) + 1), "format_version", max(FLOW_FORMATS) + 1),
        (_with(("format_version",), "2"), "format_version", "2"),
        (_with(("format_version",), True), "format_version", True),
        (_with(("id",), None), "id", None),
        (_with(("id",), "7"), "id", "7"),
        (_with(("connection",), 5), "connection", 5),
        (_with(("src_port",), 1.5), "src_port", 1.5),
        (_with(("clock",), "mars"), "clock", "mars"),
        (_with(("latency",), "fast"), "latency", "fast"),
        (_with(("request",), "GET /"), "request", "GET /"),
        (_with(("request", "kind"), "reply"), "request.kind", "reply"),
        (_with(("request", "headers"), {"Host": "a"}), "request.headers", {"Host": "a"}),
        (_with(("request", "headers", 1), ["Host"]), "request.headers[1]", ["Host"]),
        (_with(("request", "headers", 1), ["Host", 5]), "request.headers[1]", ["Host", 5]),
        (_with(("request", "errors"), [1]), "request.errors[0]", 1),
        (_with(("request", "complete"), 1), "request.complete", 1),
        (_with(("response", "status"), "200"), "response.status", "200"),
        (_with(("response", "body_b64"), "not base64!"), "response.body_b64", "not base64!"),
        (_with(("response", "grpc_messages"), [None]), "response.grpc_messages[0]", None),
        ([1, 2], "exchange", [1, 2]),
        # beyond what the store's INTEGER columns and clocks hold (float() and datetime raised on them)
        (_with(("latency",), 10**400), "latency", 10**400),
        (_with(("latency",), math.inf), "latency", math.inf),
        (_with(("started_ns",), 10**30), "started_ns", 10**30),
        (_with(("pid",), -(2**63) - 1), "pid", -(2**63) - 1),
        (_with(("id",), 2**63), "id", 2**63),
        (_with(("response", "status"), 2**64), "response.status", 2**64),
    ],
)
def test_malformed_dict_names_the_field(data: object, field: str, value: object) -> None:
    with pytest.raises(FlowFormatError) as raised:
        Exchange.from_dict(data)
    assert raised.value.field == field and raised.value.value == value
    assert field in str(raised.value)


def test_unknown_format_is_its_own_error() -> None:
    with pytest.raises(UnknownFlowFormat) as raised:
        Exchange.from_dict({**FORMAT_1, "format_version": max(FLOW_FORMATS) + 1})
    assert raised.value.version == max(FLOW_FORMATS) + 1


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    _containers,
    max_leaves=10,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), value=json_values)
def test_any_field_replaced_loads_or_raises_flow_format_error(data: st.DataObject, value: object) -> None:
    d = json.loads(json.dumps(FORMAT_1))
    side = data.draw(st.sampled_from([None, "request", "response"]))
    target = d if side is None else d[side]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = value
    try:
        ex = Exchange.from_dict(d)
    except FlowFormatError as exc:  # named: the replaced field, or a part of it
        path = key if side is None else f"{side}.{key}"
        assert exc.field == path or exc.field.startswith((f"{path}.", f"{path}[")), (exc.field, path)
    else:
        assert isinstance(ex, Exchange)


def test_base64_fields_are_validated_not_guessed() -> None:
    d = json.loads(json.dumps(FORMAT_1))
    d["response"]["raw_b64"] = base64.b64encode(b"ok").decode() + "=="  # too much padding
    with pytest.raises(FlowFormatError) as raised:
        Exchange.from_dict(d)
    assert raised.value.field == "response.raw_b64"


@pytest.mark.parametrize(
    ("request_", "want"),
    [
        (
            HttpMessage("request", url="http://a.example:8080/x?q=1", path="/x?q=1"),
            "http://a.example:8080/x?q=1",
        ),
        (HttpMessage("request", path="/x", headers=[("Host", "a.example")]), "https://a.example/x"),
        (HttpMessage("request", path="/x", scheme="http", authority="b.example:81"), "http://b.example:81/x"),
        (HttpMessage("request", path="/x"), "https://10.0.0.1:8443/x"),  # no Host: the address it went to
        (HttpMessage("request", url="x", path=""), "https://10.0.0.1:8443/x"),
        (HttpMessage("request", path="/p", headers=[("Host", "[")]), "https://[/p"),  # carried as text
        (HttpMessage("request", method="GET"), ""),  # a late join lost the path: not made up
        (None, ""),
    ],
)
def test_url_is_derived_once_on_the_model(request_: HttpMessage | None, want: str) -> None:
    assert Exchange(1, "c", request=request_, dst_ip="10.0.0.1", dst_port=8443).url == want


@pytest.mark.parametrize(
    ("headers", "authority", "host", "netloc"),
    [
        ([("HOST", "a.example:443")], "", "a.example", "a.example:443"),
        ([("Host", "ignored")], "b.example", "b.example", "b.example"),
        ([("Host", "[::1]:8080")], "", "::1", "[::1]:8080"),
        ([("Host", "::1")], "", "::1", "::1"),
        ([], "", "", ""),
    ],
)
def test_host_and_netloc(headers: list[tuple[str, str]], authority: str, host: str, netloc: str) -> None:
    msg = HttpMessage("request", headers=headers, authority=authority)
    assert (msg.host, msg.netloc) == (host, netloc)


def _stored_and_loaded(ex: Exchange, db: Path) -> tuple[dict[str, Any], Exchange]:
    CaptureStore(db).close()
    with sqlite3.connect(db) as conn:
        row = exchange_row(ex.id, ex)
        conn.execute(f"INSERT INTO exchanges VALUES ({', '.join('?' * len(row))})", row)
        stored = conn.execute(f"{STORED_SELECT} WHERE id = ?", (ex.id,)).fetchone()
    conn.close()
    return json.loads(stored[0]), load_exchange(stored)


def test_the_stored_detail_holds_only_what_the_columns_do_not(tmp_path: Path) -> None:
    # each fact once: the columns hold the process, addresses, times, the request line and status, the
    # content types and sizes; detail the rest, and no field at its default
    request = HttpMessage(kind="request", method="POST", url="https://a.example/x", path="/x", time_ns=5)
    request.set_body(b'{"a": 1}', 8, False, 1 << 20)
    response = HttpMessage(kind="response", status=201, reason="Created", content_type="application/json")
    ex = Exchange(7, "1_2_curl_3", request=request, response=response, pid=1, pname="curl", tid=9, fd=3,
                  src_ip="10.0.0.1", src_port=5, dst_ip="10.0.0.2", dst_port=443, clock="epoch",
                  started_ns=5, ended_ns=9, latency=0.5)  # fmt: skip
    detail, loaded = _stored_and_loaded(ex, tmp_path / "once.db")
    assert detail == {
        "format_version": STORED_FORMAT,
        "tid": 9,
        "fd": 3,
        "clock": "epoch",
        "request": {"kind": "request", "time_ns": 5},
        "response": {"kind": "response", "reason": "Created"},
    }
    assert loaded == dataclasses.replace(ex, request=_as_stored(request), response=_as_stored(response))


def test_values_a_column_cuts_or_cannot_tell_apart_stay_in_detail(tmp_path: Path) -> None:
    # a method and a content type longer than their columns keep (NOTE_CHARS), an empty URL beside a path
    # (the url column holds the path then), a response's request line and a request's status (no columns)
    request = HttpMessage(kind="request", method="M" * 400, url="", path="/only-a-path",
                          content_type="text/" + "x" * 400, status=299, protocol="http/1.0")  # fmt: skip
    response = HttpMessage(kind="response", method="GET", url="/odd", path="/odd", status=200, stream_id=3)
    ex = Exchange(8, "1_2_curl_3", request=request, response=response)
    detail, loaded = _stored_and_loaded(ex, tmp_path / "cut.db")
    assert detail["request"]["url"] is None and detail["request"]["status"] == 299
    assert detail["request"]["protocol"] == "http/1.0" and detail["response"]["stream_id"] == 3
    assert "path" not in detail["request"] and detail["response"]["url"] == "/odd"
    assert loaded == dataclasses.replace(ex, request=_as_stored(request), response=_as_stored(response))
