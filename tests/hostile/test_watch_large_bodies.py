"""``watch --full`` shows a large body without holding several copies of its text.

A 16 MiB binary body is an 82 MB hex dump: ``watch`` writes such a block piece by piece (each piece made
visible and coloured as the whole block would be), and its memory stays a few times the body, not twenty.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hostile_support import event, get, h1_exchange, response, watch_peak

from ecaptureq.bench.bombs import DECODED
from ecaptureq.cli import watch
from ecaptureq.cli.colour import Palette
from ecaptureq.cli.render_http import HttpView
from ecaptureq.decode.bodies import DEFAULT_BODY_LIMIT, hexdump
from ecaptureq.protocol import Event

BINARY = bytes(range(256)) * 1200
"""300 KB of every byte value: a hex dump of 1.4 MB, in 75 pieces."""
TEXT = "line \x1b[31mred\x1b[0m é\x07\n" * 60_000 + "\n\n\n"
"""1.5 MB of text with escapes to make visible, ending in newlines (a block's are made one)."""


def _events() -> list[Event]:
    octets = [("Content-Type", "application/octet-stream")]
    return [
        *h1_exchange(get("/bin"), response(BINARY, octets)),
        *h1_exchange(get("/text"), response(TEXT.encode(), [("Content-Type", "text/plain")]), fd=6, n=2),
        event("curl", 7, 0, b"\x00\x01" * 400_000, 4),  # not HTTP/1: raw bytes, 800 KB
    ]


def _printed(view: HttpView | None, colour: bool, node: str | None) -> str:
    out = io.StringIO()
    printer = watch.Printer(out, False, False, view, palette=Palette(colour))
    for ev in _events():
        printer.write(ev, node)
    return out.getvalue()


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("node", [None, "node-1"])
@pytest.mark.parametrize("mode", ["decoded", "--no-decode", "no view"])
def test_a_large_block_is_written_in_pieces_as_it_would_be_whole(
    monkeypatch: pytest.MonkeyPatch, colour: bool, node: str | None, mode: str
) -> None:
    def view() -> HttpView | None:
        if mode == "no view":
            return None
        return HttpView(body_limit=DEFAULT_BODY_LIMIT, decode=mode == "decoded")  # --full

    monkeypatch.setattr(watch, "BLOCK_JOINED_LINES", 8)  # every block here goes in pieces
    pieces = _printed(view(), colour, node)
    monkeypatch.setattr(watch, "BLOCK_JOINED_LINES", 1 << 40)
    assert pieces == _printed(view(), colour, node)
    binary_response = _events()[1].payload  # --no-decode shows the event: headers, then the body
    assert hexdump(BINARY if mode == "decoded" else binary_response) in pieces
    if mode == "decoded":  # the text body, made visible (raw, its escapes make the event a hex dump)
        assert "line \\e[31mred\\e[0m é\\x07\nline" in pieces
    if not colour:
        assert "\x1b" not in pieces and "\x07" not in pieces
    if node is not None:
        assert pieces.count(f"[{node}] ") == len(_events())


@pytest.mark.e2e
def test_watch_full_of_a_16_mib_binary_body_holds_a_few_times_the_body(tmp_path: Path) -> None:
    base, plain = watch_peak(tmp_path, ["plain (baseline)"], "--full")
    assert plain.returncode == 0, plain.stderr
    peak, result = watch_peak(tmp_path, ["gzip"], "--full")
    assert result.returncode == 0, result.stderr
    assert hexdump(bytes(DECODED)) in result.stdout  # the whole body, every line of its dump
    # The dump's text is five times the body, held in pieces: 5.9 bodies over the baseline here. Joined and
    # copied on the way out, it was 22.5 (405 MB).
    assert peak <= base + 8 * DECODED, (base, peak)
