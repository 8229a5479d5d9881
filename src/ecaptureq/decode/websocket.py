"""WebSocket (RFC 6455) frames in a captured chunk: opcode, FIN, masking, text or binary data. No state,
no I/O, never raises.
"""

from __future__ import annotations

import zlib
from typing import Final

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
            if pos + 2 > n:
                errors.append(f"WebSocket: {n - pos} stray byte(s) at the end")
                break
            b0, b1 = data[pos], data[pos + 1]
            opcode = b0 & 0x0F
            if opcode not in OPCODE_NAMES:
                errors.append(f"WebSocket: reserved opcode 0x{opcode:x} at byte {pos}")
                break
            masked = bool(b1 & 0x80)
            length = b1 & 0x7F
            hdr = pos + 2
            if length == 126:
                length = int.from_bytes(data[hdr : hdr + 2], "big")
                hdr += 2
            elif length == 127:
                length = int.from_bytes(data[hdr : hdr + 8], "big")
                hdr += 8
            key = b""
            if masked:
                key = data[hdr : hdr + 4]
                hdr += 4
            if hdr > n:
                errors.append("WebSocket: frame header cut short")
                break
            payload = data[hdr : hdr + length]
            truncated = len(payload) < length
            if masked and len(key) == 4:
                payload = _unmask(payload, key)
            frame = WebSocketFrame(
                opcode=opcode,
                opcode_name=OPCODE_NAMES[opcode],
                fin=bool(b0 & 0x80),
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
            if b0 & 0x40 and opcode in (0x1, 0x2) and not truncated:
                _inflate(frame)
            frames.append(frame)
            pos = hdr + length
    except Exception as exc:  # defensive: never raise on hostile input
        errors.append(f"WebSocket: {type(exc).__name__}: {exc}")
    return frames, errors
