"""Message bodies: Content-Encoding with a size cap, charsets, JSON, forms and gRPC framing.

Everything here is a pure function of bytes. Decompression never produces more than ``limit`` bytes: an
input that would expand beyond it (a decompression bomb, or simply a large body) is reported as truncated
with a note, not expanded. Broken compressed data gives whatever decoded before the damage plus an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import brotli  # type: ignore[import-untyped]
import orjson
import zstandard

from ecaptureq.protocol.text import looks_binary

DEFAULT_BODY_LIMIT: Final = 16 * 1024 * 1024
"""Default cap on a decoded (decompressed) body, in bytes: 16 MiB."""

JSON_PARSE_LIMIT: Final = 1024 * 1024
"""Bodies longer than this are not parsed to check that they are JSON (parsing costs several times the
text in memory: ``[0,0,0,...]`` is millions of objects); their Content-Type decides."""

_CHUNK: Final = 64 * 1024
_ZLIB_PIECE: Final = 1024
_TEXT_TYPES: Final = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/ecmascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "application/x-ndjson",
    "application/problem+json",
    "image/svg+xml",
)
_CHARSET_RE = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


@dataclass(slots=True)
class DecodedBody:
    """A body after Content-Encoding was undone and its text (if any) was decoded.

    ``data`` is the decoded bytes (at most the limit); ``text`` is the body as text when it is text,
    else ``None``; ``is_json`` says it parses as JSON (see :func:`pretty_json`); ``truncated`` says
    ``data`` stops at the limit; ``errors`` lists what went wrong (broken compression, unknown
    coding), ``notes`` anything worth showing (a bomb that was stopped, a charset fallback).
    """

    data: bytes = b""
    text: str | None = None
    content_type: str = ""
    charset: str | None = None
    is_json: bool = False
    form: list[tuple[str, str]] | None = None
    grpc_messages: list[bytes] | None = None
    truncated: bool = False
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def decompress(data: bytes, coding: str, limit: int = DEFAULT_BODY_LIMIT) -> tuple[bytes, bool, str | None]:
    """Undo one Content-Encoding ``coding`` (gzip, x-gzip, deflate, br, zstd, identity).

    Returns ``(output, truncated, error)``: ``output`` holds at most ``limit`` bytes, ``truncated`` says
    more would have followed, ``error`` describes broken input or an unknown coding (then ``output`` is
    what decoded before the damage, or the input unchanged for an unknown coding). Never raises.
    """
    coding = coding.strip().lower()
    try:
        if coding in ("", "identity"):
            return (data[:limit], len(data) > limit, None)
        if coding in ("gzip", "x-gzip"):
            return _zlib(data, 16 + zlib.MAX_WBITS, limit)
        if coding == "deflate":
            out, trunc, err = _zlib(data, zlib.MAX_WBITS, limit)
            if err is not None and not out:
                # Many servers send raw deflate without the zlib wrapper.
                return _zlib(data, -zlib.MAX_WBITS, limit)
            return out, trunc, err
        if coding == "br":
            return _brotli(data, limit)
        if coding == "zstd":
            return _zstd(data, limit)
    except Exception as exc:  # a decoder must not raise on hostile input
        return (b"", False, f"{coding}: {type(exc).__name__}: {exc}")
    return (data[:limit], len(data) > limit, f"unknown content-encoding {coding!r}")


def _zlib(data: bytes, wbits: int, limit: int) -> tuple[bytes, bool, str | None]:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    pos = 0
    try:
        while pos < len(data) or d.unconsumed_tail:
            # Small input pieces, so that what decoded before a damaged spot is kept.
            src = d.unconsumed_tail or data[pos : pos + _ZLIB_PIECE]
            if not d.unconsumed_tail:
                pos += _ZLIB_PIECE
            out += d.decompress(src, limit + 1 - len(out))
            if len(out) > limit:
                return bytes(out[:limit]), True, None
            if d.eof:
                break
    except zlib.error as exc:
        return bytes(out), False, f"broken compressed data: {exc}"
    if not d.eof:
        return bytes(out), False, "compressed data ends early"
    return bytes(out), False, None


def _brotli(data: bytes, limit: int) -> tuple[bytes, bool, str | None]:
    d = brotli.Decompressor()
    out = bytearray()
    try:
        pos = 0
        while True:
            if d.can_accept_more_data():
                if pos >= len(data):
                    break
                piece = data[pos : pos + _CHUNK]
                pos += _CHUNK
            else:
                piece = b""
            out += d.process(piece, output_buffer_limit=limit + 1 - len(out))
            if len(out) > limit:
                return bytes(out[:limit]), True, None
            if d.is_finished():
                break
    except brotli.error as exc:
        return bytes(out), False, f"broken compressed data: {exc}"
    if not d.is_finished():
        return bytes(out), False, "compressed data ends early"
    return bytes(out), False, None


def _zstd(data: bytes, limit: int) -> tuple[bytes, bool, str | None]:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    try:
        while len(out) <= limit:
            piece = reader.read(min(_CHUNK, limit + 1 - len(out)))
            if not piece:
                break
            out += piece
    except zstandard.ZstdError as exc:
        return bytes(out), False, f"broken compressed data: {exc}"
    if len(out) > limit:
        return bytes(out[:limit]), True, None
    if not _zstd_frames_end(data):
        return bytes(out), False, "compressed data ends early"
    return bytes(out), False, None


def _zstd_frames_end(data: bytes) -> bool:
    """Whether each zstd frame in ``data`` ends. The stream reader gives what it could of a cut frame and
    no error (gzip, deflate and br say so): a decompressor object per frame knows whether its frame
    ended. Only after the reader read all of ``data`` within the limit, so this second pass makes no
    more than that."""
    rest = data
    while rest:
        frame = zstandard.ZstdDecompressor().decompressobj()
        try:
            frame.decompress(rest)
        except zstandard.ZstdError:
            return False
        if not frame.eof:
            return False
        rest = frame.unused_data
    return True


def content_charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type value, lowercased, or ``None``."""
    m = _CHARSET_RE.search(content_type)
    return m.group(1).lower() if m else None


def is_text_type(content_type: str) -> bool:
    """Whether a media type is text by nature (text/*, JSON, XML, JavaScript, forms...)."""
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct.startswith(_TEXT_TYPES) or ct.endswith(("+json", "+xml"))


_GRPC_PREFIX: Final = struct.Struct(">BI")
"""A gRPC message's prefix: its compressed-flag byte and its length."""


def split_grpc(data: bytes) -> tuple[list[bytes], str | None]:
    """Split a gRPC body into its length-prefixed messages (1 flag byte, 4-byte big-endian length).

    Returns the messages and an error when the framing does not add up (a cut message is returned as far
    as it goes). A compressed message (flag 1) is returned as sent.
    """
    if len(data) >= 5:  # one whole message, the usual case
        flag, size = _GRPC_PREFIX.unpack_from(data)
        if flag <= 1 and size + 5 == len(data):
            return [data[5:]], None
    msgs: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 5 > len(data):
            return msgs, f"gRPC message header cut after {len(data) - pos} bytes"
        flag = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if flag > 1:
            return msgs, f"bad gRPC compressed-flag {flag}"
        msgs.append(data[pos + 5 : pos + 5 + size])
        if pos + 5 + size > len(data):
            return msgs, f"gRPC message cut: {len(data) - pos - 5} of {size} bytes"
        pos += 5 + size
    return msgs, None


FORM_FIELDS: Final = 1000
"""The most fields of a form body (or a query string) that are parsed; the rest are left in the text."""


def parse_form(text: str, limit: int = FORM_FIELDS) -> tuple[list[tuple[str, str]], bool]:
    """``application/x-www-form-urlencoded`` pairs of ``text``, at most ``limit`` of them.

    Returns the pairs and whether more fields followed. Bounded work and memory whatever the text:
    a body of millions of ``&`` is not parsed into millions of pairs.
    """
    pieces = text.split("&", limit)
    cut = len(pieces) > limit
    return parse_qsl("&".join(pieces[:limit]), keep_blank_values=True), cut


def pretty_json(text: str) -> str:
    """``text`` pretty-printed (2-space indent) when it is JSON, else unchanged. Never raises.

    The text is exactly ``json.dumps(json.loads(text), indent=2, ensure_ascii=False)``'s, written by
    orjson's C encoder (Python's indenting encoder is pure Python, about 20 times slower). A text with no
    float and no integer of 19 digits or more (:func:`_float_or_long`) is read by orjson's parser too,
    about twice as quick as json's, to the same values. Others are read by json: numbers with a fraction or
    exponent, and NaN and the infinities, as :class:`_JsonFloat`, written as ``json.dumps`` writes them;
    what orjson refuses (integers beyond 64 bits, lone surrogates, nesting deeper than it goes) is written
    by ``json.dumps``. Kept out of :func:`decode_body`: renderers call it for what they show.
    """
    if len(text) > JSON_PARSE_LIMIT:
        return text
    if not _float_or_long(text):
        with contextlib.suppress(orjson.JSONDecodeError):  # what orjson refuses, json decides below
            return _indented(orjson.loads(text), text)
    try:
        value = _FLOATS_KEPT.decode(text)
    except (ValueError, RecursionError, TypeError):
        return text
    return _indented(value, text)


def _indented(value: Any, text: str) -> str:
    """``value`` as ``json.dumps(value, indent=2, ensure_ascii=False)`` writes it; ``text`` when it cannot
    be written."""
    try:
        return orjson.dumps(value, default=_json_float_text, option=orjson.OPT_INDENT_2).decode("utf-8")
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError, TypeError):
        return text


class _JsonFloat(float):
    """A float read from a JSON body by :func:`pretty_json`, written back as ``json.dumps`` writes it."""

    __slots__ = ()


_DIGITS_AND_FLOAT_MARKS: Final = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x2E if b in b".eE" else 0x20 for b in range(256)
)
"""bytes.translate table: each digit to ``0``, each of ``.eE`` to ``.``, anything else to a space (a UTF-8
text's other bytes, including every byte of a many-byte character, are none of these)."""


def _float_or_long(text: str) -> bool:
    """Whether a JSON text may hold a number orjson reads otherwise than json: a float (every number with
    a fraction or an exponent has a digit and then ``.``, ``e`` or ``E``) or an integer of 19 digits or
    more (orjson reads one beyond 64 bits as a float). A string may match too: that text just takes json's
    parser. One translate and two searches in C: twice as quick as the regex they replace."""
    marks = text.encode("utf-8", "surrogatepass").translate(_DIGITS_AND_FLOAT_MARKS)
    return b"0." in marks or b"0" * 19 in marks


_FLOATS_KEPT: Final = json.JSONDecoder(parse_float=_JsonFloat, parse_constant=_JsonFloat)
"""json.loads with those options, made once (json.loads makes a decoder per call when given options)."""


def _json_float_text(obj: object) -> orjson.Fragment:
    """orjson's ``default`` for :class:`_JsonFloat` (a float subclass, which orjson does not write)."""
    if isinstance(obj, _JsonFloat):
        # json.dumps writes a finite float as float.__repr__ does, NaN and the infinities by name.
        text = float.__repr__(obj) if math.isfinite(obj) else json.dumps(float(obj))
        return orjson.Fragment(text)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value, lower-case, without parameters (``text/html``)."""
    return content_type.split(";", 1)[0].strip().lower()


def form_fields(content_type: str, text: str | None) -> list[tuple[str, str]] | None:
    """The fields of a form body (``application/x-www-form-urlencoded`` text), else ``None``."""
    if text is None or media_type(content_type) != "application/x-www-form-urlencoded":
        return None
    return parse_form(text)[0]


def decode_body(
    body: bytes,
    content_type: str = "",
    content_encoding: str = "",
    limit: int = DEFAULT_BODY_LIMIT,
    *,
    judge_json: bool = True,
) -> DecodedBody:
    """Decode a message body: undo ``content_encoding`` (several codings are undone right to left),
    find the charset, and recognise text, JSON, forms and gRPC messages. Never raises.

    ``judge_json=False`` leaves ``is_json`` false without parsing the text (a caller that works it out
    when asked, with :func:`json_body`).
    """
    result = DecodedBody(content_type=content_type)
    try:
        _decode_into(result, body, content_type, content_encoding, limit, judge_json)
    except Exception as exc:  # a decoder must not raise on hostile input
        result.errors.append(f"body decode failed: {type(exc).__name__}: {exc}")
        if not result.data:
            result.data = body[:limit]
    return result


@dataclass(frozen=True, slots=True)
class _TypeFacts:
    """What a Content-Type value says about decoding a body, worked out once per distinct value."""

    media: str
    charset: str | None
    textual: bool | None
    """Text by its type (``True``), never text (``False``), or text when the bytes look so (``None``)."""


_TYPE_FACTS: dict[str, _TypeFacts] = {}
_TYPE_FACTS_MAX: Final = 256


def _type_facts(content_type: str) -> _TypeFacts:
    facts = _TYPE_FACTS.get(content_type)
    if facts is not None:
        return facts
    ct = media_type(content_type)
    textual: bool | None
    if not ct:
        textual = None
    elif is_text_type(ct):
        textual = True
    elif ct.startswith(("image/", "audio/", "video/", "font/")):
        textual = False
    else:
        textual = None if ct not in ("application/octet-stream", "application/protobuf") else False
    facts = _TypeFacts(ct, content_charset(content_type), textual)
    if len(_TYPE_FACTS) >= _TYPE_FACTS_MAX:  # bounded whatever a capture sends
        _TYPE_FACTS.clear()
    _TYPE_FACTS[content_type] = facts
    return facts


def is_json_text(text: str) -> bool:
    """Whether ``text`` parses as JSON by Python's :func:`json.loads` (which also takes ``NaN``,
    ``Infinity``, numbers beyond a double and lone surrogates). orjson (C) tries first: what it accepts
    ``json`` accepts too, and it is about four times quicker on a typical API body."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            return False
    return True


def _decode_into(
    result: DecodedBody, body: bytes, content_type: str, content_encoding: str, limit: int, judge_json: bool
) -> None:
    data = body
    if content_encoding:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        for coding in reversed(codings):
            out, truncated, err = decompress(data, coding, limit)
            if err is not None:
                result.errors.append(err)
                if not out:
                    data = data[:limit]
                    break
            data = out
            if truncated:
                result.truncated = True
                result.notes.append(
                    f"{coding} body expands beyond the {limit}-byte limit ({len(body)} bytes compressed): "
                    "possible decompression bomb, stopped"
                )
                break
    if len(data) > limit:
        data = data[:limit]
        result.truncated = True
    result.data = data
    facts = _type_facts(content_type)
    ct = facts.media
    charset = result.charset = facts.charset
    if ct.startswith("application/grpc"):
        msgs, err = split_grpc(data)
        result.grpc_messages = msgs
        if err:
            result.errors.append(err)
        return
    textual = facts.textual
    if textual is None:
        textual = not looks_binary(data)
    if not textual:
        return
    text = _to_text(data, charset, result)
    if text is None:
        return
    if ct == "application/x-www-form-urlencoded":
        result.form, cut = parse_form(text)
        if cut:
            result.notes.append(f"form: only the first {FORM_FIELDS} fields are listed")
    result.is_json = judge_json and _json_by_type(ct, text)
    result.text = text


def _json_by_type(media: str, text: str) -> bool:
    """Whether a body's ``text`` of media type ``media`` is JSON: the one rule every judge of it shares (a
    JSON type, or no type and text that begins like JSON, that parses; beyond :data:`JSON_PARSE_LIMIT`,
    the type alone says)."""
    if _may_be_json(media, text):
        if len(text) > JSON_PARSE_LIMIT:
            return media.endswith("json")
        return is_json_text(text)
    return False


def _may_be_json(media: str, text: str) -> bool:
    return media.endswith("json") or (not media and text.lstrip()[:1] in ("{", "["))


def json_body(content_type: str, text: str) -> bool:
    """Whether a body's ``text``, sent with ``content_type``, is JSON (as :func:`decode_body` judges it)."""
    return _json_by_type(_type_facts(content_type).media, text)


def pretty_body(content_type: str, text: str) -> str:
    """``text`` pretty-printed when :func:`json_body` would say it is JSON, else unchanged, with one parse
    (:func:`pretty_json` leaves a text that does not parse, or is beyond the limit, as it is)."""
    return pretty_json(text) if _may_be_json(_type_facts(content_type).media, text) else text


PlainBody = tuple[str | None, str | None, list[bytes] | None]
"""What :func:`plain_body` gives: ``(text, charset, grpc_messages)`` (whether the text is JSON is worked
out when asked: :func:`json_body`)."""


def plain_body(body: bytes, content_type: str) -> PlainBody | None:
    """The common case of :func:`decode_body`, without building a :class:`DecodedBody`: a body with no
    Content-Encoding, within the limit, that decodes without an error or a note (UTF-8 text, JSON or
    not, binary, or well-framed gRPC). ``None`` for anything else: :func:`decode_body` then decodes it,
    to the same result (its ``data`` is ``body``, nothing truncated, no errors, notes or form)."""
    facts = _type_facts(content_type)
    ct = facts.media
    charset = facts.charset
    if ct.startswith("application/grpc"):
        msgs, err = split_grpc(body)
        return None if err else (None, charset, msgs)
    if charset is not None or ct == "application/x-www-form-urlencoded":
        return None
    textual = facts.textual
    if textual is None:
        textual = not looks_binary(body)
    if not textual:
        return (None, None, None)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return (text, None, None)


def _to_text(data: bytes, charset: str | None, result: DecodedBody) -> str | None:
    if charset:
        try:
            return data.decode(charset, "replace")
        except LookupError:
            result.notes.append(f"unknown charset {charset!r}, read as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if result.truncated and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")
    if looks_binary(data):
        return None
    if charset is None:
        result.notes.append("not UTF-8, read as ISO-8859-1")
    return data.decode("iso-8859-1")


_ASCII_COLUMN: Final = bytes(b if 32 <= b < 127 else 0x2E for b in range(256))
"""bytes.translate table of a hex dump's ASCII column: printable ASCII as itself, anything else a dot."""


HEX_CHUNK_LINES: Final = 256
"""Lines of a hex dump in each piece :func:`hexdump_chunks` gives (about 20 KB at 16 bytes a line)."""


def _hex_lines(data: bytes, start: int, width: int) -> str:
    """The dump lines of ``data`` (at offset ``start`` of what is dumped), joined by ``\\n``."""
    shown = data.translate(_ASCII_COLUMN).decode("ascii")
    pad = width * 3 - 1
    return "\n".join(
        [
            f"{start + off:08x}  {data[off : off + width].hex(' '):<{pad}}  |{shown[off : off + width]}|"
            for off in range(0, len(data), width)
        ]
    )


def hexdump_chunks(data: bytes, width: int = 16) -> Iterator[str]:
    """The lines of :func:`hexdump`, :data:`HEX_CHUNK_LINES` at a time (each piece its lines joined by
    ``\\n``; the pieces joined by ``\\n`` are the dump): a writer can show a dump of a 16 MiB body without
    holding all of it, which as text is five times the bytes."""
    data = bytes(data)
    step = width * HEX_CHUNK_LINES
    for start in range(0, len(data), step):
        yield _hex_lines(data[start : start + step], start, width)


def hexdump(data: bytes, width: int = 16) -> str:
    """A hex dump: offset, hex bytes and the printable ASCII beside them."""
    return "\n".join(hexdump_pieces(data, width))


def hexdump_pieces(data: bytes, width: int = 16) -> list[str]:
    """A hex dump as the lines of a text block: :func:`hexdump_chunks` (joined by ``\\n`` they are the
    dump), ``[""]`` for no bytes."""
    if len(data) <= width * HEX_CHUNK_LINES:
        return [_hex_lines(bytes(data), 0, width)]
    return list(hexdump_chunks(data, width))
