"""The encrypted packets of the hooked processes' TLS connections as pcapng, their keys ahead of them.

:class:`EncryptedCapture` reads packets from an ``AF_PACKET`` socket (cooked: from the network header, so
one link type fits every interface), with a classic BPF filter attached in the kernel that keeps TCP over
IPv4 and IPv6 only. It keeps the connections whose TLS ClientHello carries a client random that
:class:`~ecaptureq.sources.tls.keylog.KeylogCapture` reported keys for, i.e. the hooked processes'
connections: a connection's packets are held until its keys are known, then written after a
Decryption Secrets Block with those keys, so Wireshark decrypts the file on its own (it needs the
secrets before the packets). Connections with no keys after :data:`HOLD_SECONDS` (other processes,
or connections older than the capture) are dropped. Loopback packets, which ``AF_PACKET`` sees twice,
are kept once. Timestamps are those of reception.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from ecaptureq.sinks.pcapng import header_blocks, packet_block, secrets_block

ETH_P_ALL: Final = 0x0003
PACKET_OUTGOING: Final = 4
SO_ATTACH_FILTER: Final = 26
HOLD_SECONDS: Final = 10.0
"""How long a connection's packets wait for its keys before the connection is dropped."""
MAX_HELD_CONNECTIONS: Final = 4096
MAX_HELD_PACKETS: Final = 8192
"""Packets held per connection while it waits for its keys; beyond, the connection is dropped."""

# Classic BPF, run by the kernel on each packet (network header first on a SOCK_DGRAM packet socket):
# accept IPv4 and IPv6 packets whose protocol / next header is TCP (6), drop everything else.
_TCP_ONLY: Final = (
    (0x28, 0, 0, 0xFFFFF000),  # ldh skb->protocol (SKF_AD_OFF + SKF_AD_PROTOCOL)
    (0x15, 0, 2, 0x0800),  # IPv4?
    (0x30, 0, 0, 9),  # ldb [9]: protocol
    (0x15, 3, 4, 6),  # TCP: accept, else drop
    (0x15, 0, 3, 0x86DD),  # IPv6?
    (0x30, 0, 0, 6),  # ldb [6]: next header
    (0x15, 0, 1, 6),  # TCP: accept, else drop
    (0x06, 0, 0, 0x40000),  # accept (up to 256 KiB)
    (0x06, 0, 0, 0),  # drop
)


def tcp_filter() -> bytes:
    """The instructions of the kernel filter, packed as ``struct sock_filter``."""
    return b"".join(struct.pack("<HBBI", *insn) for insn in _TCP_ONLY)


Endpoint = tuple[str, int]


def tcp_of(packet: bytes) -> tuple[Endpoint, Endpoint, bytes] | None:
    """``(source, destination, payload)`` of an IPv4/IPv6 TCP packet, ``None`` for anything else."""
    if len(packet) < 20:
        return None
    if packet[0] >> 4 == 4:
        header = (packet[0] & 15) * 4
        if packet[9] != 6:
            return None
        src, dst = str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
        total = int.from_bytes(packet[2:4], "big") or len(packet)
    elif packet[0] >> 4 == 6 and len(packet) >= 40:
        header = 40
        if packet[6] != 6:
            return None  # extension headers are not followed
        src, dst = str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))
        total = 40 + int.from_bytes(packet[4:6], "big")
    else:
        return None
    if len(packet) < header + 20:
        return None
    sport, dport = struct.unpack_from(">HH", packet, header)
    offset = header + (packet[header + 12] >> 4) * 4
    return (src, sport), (dst, dport), packet[offset:total]


def client_random_of(payload: bytes) -> bytes | None:
    """The client random of a TLS ClientHello at the start of a TCP payload, else ``None``."""
    if len(payload) >= 43 and payload[0] == 0x16 and payload[1] == 0x03 and payload[5] == 0x01:
        return payload[11:43]
    return None


@dataclass(slots=True)
class _Connection:
    first_seen: float
    held: list[tuple[int, bytes]] = field(default_factory=list)
    client_random: bytes | None = None
    released: bool = False


@dataclass(slots=True)
class PacketStats:
    """What an :class:`EncryptedCapture` has seen and written."""

    packets_seen: int = 0
    packets_written: int = 0
    connections_written: int = 0
    connections_dropped: int = 0
    """Connections whose keys never came (not a hooked process), or that overflowed the hold."""
    secrets_blocks: int = 0


class EncryptedCapture:
    """Capture the hooked processes' TLS packets into ``out`` as pcapng (see the module).

    Call :meth:`add_keys` with each handshake's client random and key log lines (from
    :class:`~ecaptureq.sources.tls.keylog.KeylogCapture`'s ``on_lines``). ``interface`` is the one to
    capture on (all when ``None``). The file's header is written at once (``OSError`` when it cannot
    be); :meth:`start` raises ``OSError`` too (``EPERM`` when not root, ``ENODEV`` for an unknown
    interface).
    """

    def __init__(self, out: BinaryIO, *, interface: str | None = None) -> None:
        self.out = out
        self.interface = interface
        self.stats = PacketStats()
        self._keys: OrderedDict[bytes, list[str]] = OrderedDict()
        self._written_lines: set[str] = set()
        self._connections: OrderedDict[frozenset[Endpoint], _Connection] = OrderedDict()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write(header_blocks("TLS packets of the hooked processes, keys in Decryption Secrets Blocks"))

    def start(self) -> None:
        """Open the packet socket with its kernel filter; then read in a thread."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            program = tcp_filter()
            buffer = ctypes.create_string_buffer(program, len(program))  # struct sock_fprog points at it
            fprog = struct.pack("HL", len(_TCP_ONLY), ctypes.addressof(buffer))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            if self.interface:
                sock.bind((self.interface, ETH_P_ALL))
            sock.settimeout(0.2)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="ecaptureq-packets", daemon=True)
        self._thread.start()

    def add_keys(self, client_random: bytes, lines: list[str]) -> None:
        """The keys of one handshake: release its connection's packets (now, or when it shows up)."""
        with self._lock:
            self._keys[client_random] = lines
            while len(self._keys) > MAX_HELD_CONNECTIONS * 4:
                self._keys.popitem(last=False)
            for conn in self._connections.values():
                if conn.client_random == client_random and not conn.released:
                    self._release(conn)

    def stop(self) -> None:
        """Read what the socket still holds, write it, and close (idempotent). ``out`` stays open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sock is not None:
            self._sock.setblocking(False)
            with contextlib.suppress(OSError):
                while True:
                    self._packet(*self._sock.recvfrom(262144))
            self._sock.close()
            self._sock = None
        with self._lock:
            self.out.flush()

    def _run(self) -> None:
        sock = self._sock
        while sock is not None and not self._stop.is_set():
            try:
                data, address = sock.recvfrom(262144)
            except TimeoutError:
                self._expire()
                continue
            except OSError:
                return
            self._packet(data, address)

    def _packet(self, data: bytes, address: tuple[object, ...]) -> None:
        if address[0] == "lo" and address[2] == PACKET_OUTGOING:
            return  # loopback: the same packet comes back in as PACKET_HOST
        parsed = tcp_of(data)
        if parsed is None:
            return
        src, dst, payload = parsed
        now = time.time_ns()
        with self._lock:
            self.stats.packets_seen += 1
            key = frozenset((src, dst))
            conn = self._connections.get(key)
            if conn is None:
                while len(self._connections) >= MAX_HELD_CONNECTIONS:
                    self._forget(next(iter(self._connections)))
                conn = self._connections[key] = _Connection(time.monotonic())
            if conn.released:
                self._write(packet_block(now, data))
                self.stats.packets_written += 1
                return
            conn.held.append((now, data))
            random = client_random_of(payload)
            if random is not None and conn.client_random is None:
                conn.client_random = random
            if conn.client_random is not None and conn.client_random in self._keys:
                self._release(conn)
            elif len(conn.held) > MAX_HELD_PACKETS:
                self._forget(key)

    def _release(self, conn: _Connection) -> None:
        assert conn.client_random is not None
        fresh = [line for line in self._keys[conn.client_random] if line not in self._written_lines]
        if fresh:
            self._write(secrets_block("".join(line + "\n" for line in fresh)))
            self._written_lines.update(fresh)
            self.stats.secrets_blocks += 1
        for ts, data in conn.held:
            self._write(packet_block(ts, data))
        self.stats.packets_written += len(conn.held)
        self.stats.connections_written += 1
        conn.held = []
        conn.released = True

    def _expire(self) -> None:
        deadline = time.monotonic() - HOLD_SECONDS
        with self._lock:
            for key in [
                k for k, c in self._connections.items() if not c.released and c.first_seen < deadline
            ]:
                self._forget(key)

    def _forget(self, key: frozenset[Endpoint]) -> None:
        conn = self._connections.pop(key)
        if not conn.released:
            self.stats.connections_dropped += 1

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()
