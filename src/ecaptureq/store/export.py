"""Export a capture database: HAR 1.2 built from the decoded exchanges, JSON Lines that replay, or pcapng.

HAR follows the 1.2 specification (http://www.softwareishard.com/blog/har-12-spec/) as Chrome DevTools
imports it: absolute URLs, headers as name/value objects, binary bodies base64 with ``encoding``.
Extra fields start with ``_`` as the specification allows (``_pid``, ``_pname``, ``_ecaptureq``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO
from urllib.parse import SplitResult, urlsplit

from ecaptureq import __version__
from ecaptureq.decode.bodies import parse_form
from ecaptureq.protocol import Event, RunLog
from ecaptureq.protocol.jsonl import to_json
from ecaptureq.store.sql import FilterError, SqlError, quote_index

if TYPE_CHECKING:
    from ecaptureq.sinks.pcapng import PcapngStats


def _where(condition: str | None) -> str:
    if not condition or not condition.strip():
        return ""
    return f" WHERE ({quote_index(condition.strip().rstrip(';'))})"


def _iso(ns: int | None) -> str:
    # HAR needs a date; a boot-relative clock has none, so its offset is shown as one from the epoch.
    stamp = dt.datetime.fromtimestamp((ns or 0) / 1e9, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _http_version(protocol: str) -> str:
    return {"h2": "h2", "http/1.0": "HTTP/1.0"}.get(protocol, "HTTP/1.1")


def _headers(pairs: list[list[str]] | None) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in (pairs or [])]


def _cookies(headers: list[list[str]] | None, name: str) -> list[dict[str, str]]:
    cookies = []
    for key, value in headers or []:
        if key.lower() != name:
            continue
        for part in value.split(";") if name == "cookie" else [value.split(";", 1)[0]]:
            if "=" in part:
                k, v = part.strip().split("=", 1)
                cookies.append({"name": k, "value": v})
    return cookies


def _content(msg: dict[str, Any] | None) -> dict[str, Any]:
    if msg is None:
        return {"size": 0, "mimeType": "x-unknown", "text": ""}
    content: dict[str, Any] = {
        "size": msg.get("body_size") or 0,
        "mimeType": msg.get("content_type") or "x-unknown",
    }
    if msg.get("body_text") is not None:
        content["text"] = msg["body_text"]
    elif msg.get("body_b64"):
        content["text"] = msg["body_b64"]
        content["encoding"] = "base64"
    else:
        content["text"] = ""
    return content


def _split(url: str) -> SplitResult | None:
    # urlsplit raises on a captured authority such as "[" (an unclosed IPv6 bracket): carried as text.
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _query(url: str) -> list[dict[str, str]]:
    parts = _split(url)
    if parts is None:
        return []
    pairs, _cut = parse_form(parts.query)
    return [{"name": k, "value": v} for k, v in pairs]


UNKNOWN_NOTE: Final = (
    "not captured: the capture began after the connection did (HTTP/2 header table entries sent "
    "before it are unknown), or the message was not seen"
)
"""The HAR comment beside an unknown method, URL or status (exported as ``""`` or ``0``, never guessed)."""


def unknown_fields(detail: dict[str, Any]) -> list[str]:
    """Which of ``method``, ``url`` and ``status`` an exchange's stored detail does not know."""
    req = detail.get("request")
    resp = detail.get("response")
    missing = []
    if not isinstance(req, dict) or not req.get("method"):
        missing.append("method")
    if not isinstance(req, dict) or not (req.get("url") or req.get("path")):
        missing.append("url")
    if isinstance(resp, dict) and resp.get("status") is None:
        missing.append("status")
    return missing


def _absolute_url(req: dict[str, Any], dst_ip: str, dst_port: int) -> str:
    url = req.get("url") or ""
    parts = _split(url)
    if parts is not None and parts.scheme:
        return url
    if not url and not req.get("path"):
        return ""  # unknown: not made up from the address
    host = req.get("authority") or next((v for k, v in req.get("headers") or [] if k.lower() == "host"), "")
    if not host:
        host = f"{dst_ip}:{dst_port}" if dst_ip else "unknown.invalid"
    scheme = req.get("scheme") or "https"
    path = req.get("path") or url or "/"
    return f"{scheme}://{host}{path if path.startswith('/') else '/' + path}"


def har_entry(detail: dict[str, Any]) -> dict[str, Any]:
    """One HAR entry from an exchange's stored detail (:meth:`Exchange.to_dict`)."""
    req = detail.get("request") or {"headers": []}
    resp = detail.get("response")
    unknown = unknown_fields(detail)
    url = _absolute_url(req, detail.get("dst_ip") or "", detail.get("dst_port") or 0)
    latency_ms = round((detail.get("latency") or 0) * 1000, 3)
    version = _http_version(detail.get("protocol") or "http/1.1")
    request: dict[str, Any] = {
        "method": req.get("method") or "",
        "url": url,
        "httpVersion": version,
        "cookies": _cookies(req.get("headers"), "cookie"),
        "headers": _headers(req.get("headers")),
        "queryString": _query(url),
        "headersSize": -1,
        "bodySize": req.get("body_size") or 0,
    }
    if req.get("body_size"):
        post: dict[str, Any] = {"mimeType": req.get("content_type") or "application/octet-stream"}
        post["text"] = (
            req.get("body_text") if req.get("body_text") is not None else (req.get("body_b64") or "")
        )
        if req.get("form"):
            post["params"] = [{"name": k, "value": v} for k, v in req["form"]]
        request["postData"] = post
    response: dict[str, Any] = {
        "status": (resp or {}).get("status") or 0,
        "statusText": (resp or {}).get("reason") or "",
        "httpVersion": version,
        "cookies": _cookies((resp or {}).get("headers"), "set-cookie"),
        "headers": _headers((resp or {}).get("headers")),
        "content": _content(resp),
        "redirectURL": next((v for k, v in (resp or {}).get("headers") or [] if k.lower() == "location"), ""),
        "headersSize": -1,
        "bodySize": (resp or {}).get("body_size") or (0 if resp else -1),
    }
    lost = [f for f in unknown if f != "status"]
    if lost:
        request["comment"] = f"{' and '.join(lost)} unknown, exported as empty: {UNKNOWN_NOTE}"
    if "status" in unknown:
        response["comment"] = f"status unknown, exported as 0: {UNKNOWN_NOTE}"
    return {
        "startedDateTime": _iso(detail.get("started_ns")),
        "time": latency_ms,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": latency_ms,
            "receive": 0,
        },
        "serverIPAddress": detail.get("dst_ip") or "",
        "connection": str(detail.get("connection") or ""),
        "_pid": detail.get("pid"),
        "_pname": detail.get("pname"),
        "_ecaptureq": {
            "exchange_id": detail.get("id"),
            "complete": resp is not None and detail.get("request") is not None,
            "unknown": unknown,
        },
    }


STORED_SELECT: Final = (
    "SELECT detail, request_headers, response_headers, request_body, response_body, request_body_text,"
    " response_body_text FROM exchanges"
)
"""The columns :func:`load_exchange` takes, in order."""


def _json_value(text: Any) -> Any:
    if not isinstance(text, str | bytes):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _merge(msg: Any, headers: Any, body: Any, text: Any) -> None:
    # Databases written before bodies had their own columns only keep them in detail: leave those.
    if not isinstance(msg, dict) or "headers" in msg:
        return
    pairs = _json_value(headers)
    msg["headers"] = (
        [p for p in pairs if isinstance(p, list) and len(p) == 2] if isinstance(pairs, list) else []
    )
    msg["body_text"] = text if isinstance(text, str) else None
    data = body if isinstance(body, bytes) else b""
    msg["body_b64"] = b64(data) if msg["body_text"] is None and data else None
    ctype = str(msg.get("content_type") or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded" and msg["body_text"] is not None:
        msg["form"] = parse_form(msg["body_text"])[0]


def load_exchange(row: Sequence[Any]) -> dict[str, Any] | None:
    """An exchange as :meth:`Exchange.to_dict` has it, from the columns of :data:`STORED_SELECT` (bodies
    as stored: capped), or ``None`` when ``detail`` is not an exchange (a ``UNION`` in a filter can put
    anything in a column)."""
    detail = _json_value(row[0]) if row else None
    if not isinstance(detail, dict):
        return None
    if len(row) >= 7:
        _merge(detail.get("request"), row[1], row[3], row[5])
        _merge(detail.get("response"), row[2], row[4], row[6])
    return detail


def har_entries(db: sqlite3.Connection, condition: str | None = None) -> Iterator[dict[str, Any]]:
    """The HAR entries of the exchanges matching ``condition`` (a condition on ``exchanges``), one at a
    time: memory does not grow with the number of exchanges.

    Raises:
        SqlError: the condition is not valid SQL for the ``exchanges`` table (raised before the first
            entry), or the query failed on the way.
    """
    sql = f"{STORED_SELECT}{_where(condition)} ORDER BY started_ns, id"
    try:
        cursor = db.execute(sql)
    except sqlite3.Error as exc:
        raise FilterError(condition or "", str(exc), "exchanges") from None

    def entries() -> Iterator[dict[str, Any]]:
        try:
            for row in cursor:
                detail = load_exchange(row)
                if detail is not None:
                    yield har_entry(detail)
        except sqlite3.Error as exc:
            raise SqlError(f"export failed: {exc}") from None

    return entries()


def har_chunks(entries: Iterator[dict[str, Any]]) -> Iterator[str]:
    """A HAR 1.2 document as text, written entry by entry (for a file or an HTTP response)."""
    creator = json.dumps({"name": "ecaptureq", "version": __version__})
    yield f'{{"log": {{"version": "1.2", "creator": {creator}, "pages": [], "entries": ['
    for i, entry in enumerate(entries):
        yield ("\n" if i == 0 else ",\n") + json.dumps(entry, ensure_ascii=False)
    yield "\n]}}\n"


def har_document(db: sqlite3.Connection, condition: str | None = None) -> dict[str, Any]:
    """A HAR 1.2 document of the exchanges matching ``condition``, in memory (small captures, tests).

    Raises:
        SqlError: the condition is not valid SQL for the ``exchanges`` table.
    """
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "ecaptureq", "version": __version__},
            "pages": [],
            "entries": list(har_entries(db, condition)),
        }
    }


def write_har(db: sqlite3.Connection, out: TextIO, condition: str | None = None) -> int:
    """Write the HAR document of the exchanges matching ``condition`` to ``out`` as it is read; return
    how many exchanges it holds."""
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for entry in har_entries(db, condition):
            count += 1
            yield entry

    for chunk in har_chunks(counted()):
        out.write(chunk)
    return count


def stored_events(db: sqlite3.Connection, condition: str | None = None) -> Iterator[Event]:
    """The stored events matching ``condition`` (a condition on ``packets``), in arrival order.

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table.
    """
    sql = (
        "SELECT timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname, type, length, payload_binary"
        f' FROM packets{_where(condition)} ORDER BY "index"'
    )
    try:
        cursor = db.execute(sql)
    except sqlite3.Error as exc:
        raise FilterError(condition or "", str(exc)) from None
    for row in cursor:
        yield Event(
            timestamp=row[0],
            uuid=row[1],
            src_ip=row[2],
            src_port=row[3],
            dst_ip=row[4],
            dst_port=row[5],
            pid=row[6],
            pname=row[7],
            type=row[8],
            length=row[9],
            payload=bytes(row[10]),
        )


def jsonl_records(db: sqlite3.Connection, condition: str | None = None) -> Iterator[dict[str, Any]]:
    """``watch --json`` records: every run-log line first, then the packets matching ``condition``.

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table.
    """
    for (line,) in db.execute("SELECT line FROM run_logs ORDER BY id"):
        yield to_json(RunLog(line))
    for event in stored_events(db, condition):
        yield to_json(event)


def write_jsonl(db: sqlite3.Connection, out: TextIO, condition: str | None = None) -> int:
    """Write :func:`jsonl_records` to ``out``; return how many events were written."""
    events = 0
    for record in jsonl_records(db, condition):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        events += record["kind"] == "event"
    return events


def write_pcapng(
    db: sqlite3.Connection, out: BinaryIO, condition: str | None = None, *, keep_ports: bool = False
) -> PcapngStats:
    """Write the packets matching ``condition`` as pcapng (see :mod:`ecaptureq.sinks.pcapng`).

    Raises:
        SqlError: the condition is not valid SQL for the ``packets`` table.
    """
    from ecaptureq.sinks.pcapng import PcapngWriter  # here: its packet library only when it is used

    writer = PcapngWriter(out, keep_ports=keep_ports)
    for event in stored_events(db, condition):
        writer.write_event(event)
    writer.close()
    return writer.stats


def b64(data: bytes) -> str:
    """Base64 text of ``data`` (for the ``--json`` and ``--csv`` forms of binary cells)."""
    return base64.b64encode(data).decode("ascii")
