"""The watch-side view: options parsed by argparse, filters, text and --json fields."""

from __future__ import annotations

import argparse
import json

import pytest

from ecaptureq.cli.errors import CliError
from ecaptureq.cli.render_http import HttpView, add_decode_options
from ecaptureq.protocol import Event


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_decode_options(parser)
    return parser.parse_args(list(argv))


REQ = Event(
    uuid="50_50_curl_4_0",
    timestamp=1_760_000_000_000_000_000,
    pid=50,
    pname="curl",
    dst_ip="10.1.1.1",
    dst_port=443,
    type=1,
    payload=b"POST /api HTTP/1.1\r\nHost: api.test\r\n"
    b"Content-Type: application/json\r\nContent-Length: 16\r\n\r\n",
)
BODY = Event(
    uuid="50_50_curl_4_0", pid=50, pname="curl", dst_ip="10.1.1.1", dst_port=443, payload=b'{"secret": "s1"}'
)
RESP = Event(
    uuid="50_50_curl_4_1",
    timestamp=1_760_000_000_250_000_000,
    pid=50,
    pname="curl",
    dst_ip="10.1.1.1",
    dst_port=443,
    type=3,
    payload=b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
)


def test_decoded_text_and_json_fields() -> None:
    view = HttpView.from_args(parse())
    first = view.feed(REQ)
    assert first is not None and view.text(first) is None  # the body is still to come
    second = view.feed(BODY)
    assert second is not None
    text = view.text(second)
    assert (
        text is not None
        and text.startswith("> POST https://api.test/api HTTP/1.1")
        and '"secret": "s1"' in text
    )
    third = view.feed(RESP)
    assert third is not None
    fields = view.json_fields(third)
    json.dumps(fields)
    assert fields["http"]["status"] == 201 and fields["http"]["body"] == "ok"
    assert fields["http"]["latency"] is not None


def test_filters_from_options() -> None:
    view = HttpView.from_args(
        parse("--grep", "secret", "--pname", "cu?l", "--port", "443", "--type", "http1-request")
    )
    assert view.feed(REQ) is None  # nothing decoded yet and the headers do not match --grep
    assert view.feed(BODY) is not None
    assert view.feed(RESP) is None
    other = HttpView.from_args(parse("--pid", "51"))
    assert other.feed(REQ) is None


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(CliError, match="bad --grep"):
        HttpView.from_args(parse("--grep", "("))
    with pytest.raises(SystemExit):
        parse("--type", "bogus")
    assert parse("--type", "4", "--type", "ws").types == [4, 5]


def test_no_decode_shows_nothing_decoded() -> None:
    view = HttpView.from_args(parse("--no-decode"))
    shown = view.feed(RESP)
    assert shown is not None and view.text(shown) is None and view.json_fields(shown)["http"] is None


def test_h2_control_frames_are_one_line_unless_verbose() -> None:
    settings = Event(
        uuid="9_9_c_3_1", payload=b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
    )
    quiet = HttpView.from_args(parse())
    shown = quiet.feed(settings)
    assert shown is not None and quiet.text(shown) == "h2 SETTINGS\n"
    args = parse()
    args.verbose = True
    loud = HttpView.from_args(args)
    shown = loud.feed(settings)
    assert shown is not None and "MAX_CONCURRENT_STREAMS=100" in (loud.text(shown) or "")
