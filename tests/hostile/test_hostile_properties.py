"""Generated hostile input on the output surfaces: the terminal, HAR export and the UI's detail (hypothesis).

Whatever a captured process name, uuid, run-log line, header, URL or body holds, ``watch`` and ``demo``'s
printer writes no raw control character, and an exchange always exports to HAR (read back by an
independent HAR library) and shows in the detail pane with its curl commands.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import tempfile
from pathlib import Path

from haralyzer import HarParser
from hostile_support import event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.cli.render_http import HttpView
from ecaptureq.cli.watch import Printer
from ecaptureq.decode.model import Exchange, HttpMessage
from ecaptureq.protocol import RunLog
from ecaptureq.store import CaptureStore
from ecaptureq.store.export import write_har
from ecaptureq.store.writer import exchange_row
from ecaptureq.web.queries import exchange_detail

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
EXAMPLES = 150

any_text = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=["Cs"]), max_size=60
)
nasty = st.sampled_from(
    ["\x1b]52;c;cHduZWQ=\x07", "\x1b[2K\r", "\x9b2J", "\u202e", "\x00", "[", "]", "%", "\\", "'"]
)
hostile_text = st.lists(st.one_of(any_text, nasty), max_size=4).map("".join)
header_value = hostile_text.map(lambda t: t.replace("\r", "").replace("\n", ""))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    pname=hostile_text,
    line=hostile_text,
    value=header_value,
    body=st.one_of(st.binary(max_size=300), hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass"))),
    json_lines=st.booleans(),
    decode=st.booleans(),
)
def test_printer_writes_no_raw_control_character(
    pname: str, line: str, value: str, body: bytes, json_lines: bool, decode: bool
) -> None:
    out = io.StringIO()
    printer = Printer(out, json_lines, verbose=True, view=HttpView(decode=decode, verbose=True))
    printer.write(RunLog(line))
    request = f"GET /{value} HTTP/1.1\r\nHost: {value}\r\nX-V: {value}\r\n\r\n".encode(
        "utf-8", "surrogatepass"
    )
    response = (
        f"HTTP/1.1 200 {value}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode(
            "utf-8", "surrogatepass"
        )
        + body
    )
    printer.write(event(pname or "p", 5, 1, request, 0))
    printer.write(event(pname or "p", 5, 0, response, 1))
    printer.write(event(pname or "p", 6, 0, body, 2))
    printer.finish()
    text = out.getvalue()
    assert not RAW_CONTROL.search(text), repr(text)
    if json_lines:
        for record in text.splitlines():
            json.loads(record)


def _message(
    kind: str, value: str, url: str, authority: str, scheme: str, method: str, body: str
) -> HttpMessage:
    return HttpMessage(
        kind=kind,  # type: ignore[arg-type]
        method=method,
        url=url,
        path=url,
        scheme=scheme,
        authority=authority,
        status=None if kind == "request" else 200,
        headers=[
            ("Host", authority),
            ("X-V", value),
            ("Cookie", value),
            ("Set-Cookie", value),
            ("Location", value),
        ],
        body=body.encode("utf-8", "surrogatepass"),
        body_text=body,
        body_size=len(body),
        content_type="application/x-www-form-urlencoded",
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=hostile_text,
    url=hostile_text,
    authority=hostile_text,
    scheme=hostile_text,
    method=hostile_text,
    body=hostile_text,
    latency=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32)),
    started=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
)
def test_any_captured_exchange_exports_to_har_and_shows_in_the_ui(
    tmp_path: Path,
    value: str,
    url: str,
    authority: str,
    scheme: str,
    method: str,
    body: str,
    latency: float | None,
    started: int | None,
) -> None:
    db = Path(tempfile.mkdtemp(dir=tmp_path)) / "h.db"
    ex = Exchange(
        id=1,
        connection=value,
        request=_message("request", value, url, authority, scheme, method, body),
        response=_message("response", value, url, authority, scheme, method, body),
        pname=value,
        dst_ip=value,
        started_ns=started,
        latency=latency,
    )
    CaptureStore(db).close()  # the schema as record writes it; the row as record writes it, too
    conn = sqlite3.connect(db)
    try:
        with conn:
            row = exchange_row(1, ex)
            conn.execute(f"INSERT INTO exchanges VALUES ({', '.join('?' * len(row))})", row)
        out = io.StringIO()
        assert write_har(conn, out) == 1
        doc = json.loads(out.getvalue())
        HarParser(doc)
        detail = exchange_detail(conn, 1)
    finally:
        conn.close()
    assert detail is not None
    if method and detail["url"]:
        assert detail["curl"] is not None and detail["curl_fish"] is not None
    else:  # an unknown method or URL is not guessed: nothing to copy
        assert detail["curl"] is None and detail["curl_fish"] is None
    json.dumps(detail)
