"""WebSocket (RFC 6455) frames in a captured chunk: opcode, FIN, masking, text or binary data. No state,
no I/O, never raises.
"""

from __future__ import annotations

import zlib
from typing import Final, NamedTuple

from ecaptureq.decode.model import WebSocketFrame

OPCODE_NAMES: Final[dict[int, str]] = {
    0x0: "continuation",
    0x1: "text",
    0x2: "binary",
    0x8: "close",
    0x9: "ping",
    0xA: "pong",
}
"""WebSocket opcode names."""


class WsFrameHeader(NamedTuple):
    """An RFC 6455 frame header: FIN, the three RSV bits (RSV1 is 4), opcode, MASK, the payload length and
    the header's size in bytes (2, plus 2 or 8 for an extended length, plus 4 for a masking key, which is
    the header's last 4 bytes)."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length: int
    size: int


def ws_frame_header(data: bytes, pos: int = 0) -> WsFrameHeader | None:
    """The WebSocket frame header at ``data[pos:]``, or ``None`` when fewer than its first 2 bytes are
    there. When ``data`` ends inside the rest of the header (``pos + size > len(data)``), the length may
    be read from fewer bytes than it has: check that before using it. The one parser of WebSocket frame
    headers, for :func:`parse_websocket` and the classifier.

    >>> ws_frame_header(bytes([0x81, 0x85, 1, 2, 3, 4]))
    WsFrameHeader(fin=True, rsv=0, opcode=1, masked=True, length=5, size=6)
    """
    n = len(data)
    if pos + 2 > n:
        return None
    b0, b1 = data[pos], data[pos + 1]
    masked = b1 > 0x7F
    length = b1 & 0x7F
    size = 2
    if length == 126:
        size = 4
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        size = 10
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    if masked:
        size += 4
    return WsFrameHeader(b0 > 0x7F, (b0 >> 4) & 0x7, b0 & 0x0F, masked, length, size)


def _unmask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    # XOR with the 4-byte key repeated, done on big integers for speed.
    reps = (len(data) + 3) // 4
    mask = (key * reps)[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(data), "big")


def _inflate(frame: WebSocketFrame, limit: int = 1 << 20) -> None:
    """RSV1 set: permessage-deflate (RFC 7692). Inflate assuming no context takeover, capped at ``limit``."""
    try:
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        out = d.decompress(frame.data + b"\x00\x00\xff\xff", limit)
    except zlib.error:
        frame.text = None
        frame.compressed = True
        return
    frame.data = out
    frame.compressed = True
    frame.text = out.decode("utf-8", "replace") if frame.opcode == 0x1 else None


def parse_websocket(data: bytes, max_frames: int = 1024) -> tuple[list[WebSocketFrame], list[str]]:
    """Parse the WebSocket frames in ``data``; return them and the errors met.

    The last frame may be cut short by the capture: it is returned with ``truncated`` set and the data
    captured so far. Bytes that are not a frame stop the parse with an error.
    """
    frames: list[WebSocketFrame] = []
    errors: list[str] = []
    pos = 0
    n = len(data)
    try:
        while pos < n and len(frames) < max_frames:
            header = ws_frame_header(data, pos)
            if header is None:
                errors.append(f"WebSocket: {n - pos} stray byte(s) at the end")
                break
            fin, rsv, opcode, masked, length, size = header
            if opcode not in OPCODE_NAMES:
                errors.append(f"WebSocket: reserved opcode 0x{opcode:x} at byte {pos}")
                break
            hdr = pos + size
            if hdr > n:
                errors.append("WebSocket: frame header cut short")
                break
            key = data[hdr - 4 : hdr] if masked else b""
            payload = data[hdr : hdr + length]
            truncated = len(payload) < length
            if masked and len(key) == 4:
                payload = _unmask(payload, key)
            frame = WebSocketFrame(
                opcode=opcode,
                opcode_name=OPCODE_NAMES[opcode],
                fin=fin,
                masked=masked,
                data=payload,
                length=length,
                truncated=truncated,
            )
            if opcode == 0x1:
                frame.text = payload.decode("utf-8", "replace")
            elif opcode == 0x8 and len(payload) >= 2:
                frame.close_code = int.from_bytes(payload[:2], "big")
                frame.text = payload[2:].decode("utf-8", "replace")
            if rsv & 0x4 and opcode in (0x1, 0x2) and not truncated:  # RSV1: permessage-deflate
                _inflate(frame)
            frames.append(frame)
            pos = hdr + length
    except Exception as exc:  # defensive: never raise on hostile input
        errors.append(f"WebSocket: {type(exc).__name__}: {exc}")
    return frames, errors
