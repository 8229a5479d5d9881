"""pcapng out: each captured connection's plaintext as a synthetic TCP stream that Wireshark dissects.

A TLS capture holds plaintext, not packets. :class:`PcapngWriter` turns the events of each connection
into the TCP stream the plaintext would have been without TLS, so that Wireshark and tshark dissect
HTTP/1.x, HTTP/2 and WebSocket with no keys and no "Decode As":

- one stream per connection (the uuid without its ``data_type``; see :func:`ecaptureq.decode.event_meta`):
  SYN, SYN-ACK, ACK when it is first seen, then the data of each event from the side that sent it, cut
  into segments of a realistic MSS (1460 bytes over IPv4, 1440 over IPv6) with consistent sequence and
  acknowledgement numbers, the receiver acknowledging every 32 KiB, and FIN, FIN, ACK when the writer
  is closed, when the connection's 4-tuple changes (a reused fd) or when it is evicted (at the latest
  timestamp seen, so the packets stay in time order);
- the captured 4-tuple where it is known; a made-up, stable one where it is not (from a hash of the
  connection key: clients in 198.18.0.0/16 and servers in 198.19.0.0/16, the RFC 2544 benchmarking
  range, or 2001:db8::/32 over IPv6), so no made-up address can be taken for a real host; a stream
  whose tuple would be that of another open stream (both ends of a connection traced, as curl and
  nginx on one host) gets another client port, so each stays its own conversation;
- the server's port written as 80 unless ``keep_ports`` (the captured one is usually 443, where
  Wireshark's TLS dissector would claim the plaintext, and on other ports Wireshark 4.0 does not
  recognise HTTP/2 at all); the captured tuple is in every packet's comment;
- the capture timestamps (nanosecond resolution); an event without one takes the previous one;
- every packet carries a comment ``pid=… comm=… uuid=… real=CLIENT->SERVER`` (``?`` where unknown);
- an HTTP/2 connection whose capture began after the client's connection preface gets a synthetic
  preface (its comment says so), without which Wireshark would not recognise the frames.

Which side is the client is read from the bytes (a request line, the HTTP/2 preface, request or
response pseudo-headers, a status line) and the event's direction; failing that, the side with the
higher port is the client, and failing that the traced process is.

The packets (IPv4, IPv6 and TCP headers with their checksums) and the pcapng blocks are built with
dpkt: a Section Header Block, one Interface Description Block (LINKTYPE_RAW, nanosecond timestamps) and
one Enhanced Packet Block per packet. Nothing here raises on hostile events; only the output stream's
own errors (``OSError``, ``BrokenPipeError``) reach the caller.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal, NamedTuple

from dpkt import ip as dpkt_ip
from dpkt import ip6 as dpkt_ip6
from dpkt import pcapng as dpkt_pcapng
from dpkt import tcp as dpkt_tcp

from ecaptureq import __version__
from ecaptureq.decode.classify import H2_PREFACE, classify_payload
from ecaptureq.decode.decoder import DEFAULT_MAX_CONNECTIONS
from ecaptureq.decode.meta import EventMeta, event_meta
from ecaptureq.protocol.messages import Event, EventType
from ecaptureq.protocol.uuid import DATA_TYPE_WRITE
from ecaptureq.sinks.tcp import MSS, PLAINTEXT_PORT

__all__ = [
    "MSS",
    "PLAINTEXT_PORT",
    "PcapngStats",
    "PcapngWriter",
    "header_blocks",
    "packet_block",
    "secrets_block",
]

LINKTYPE_RAW: Final = 101
"""pcapng link type of raw IPv4 and IPv6 packets (no link-layer header)."""
WINDOW: Final = 65535
"""The advertised receive window."""
ACK_EVERY: Final = WINDOW // 2
"""The receiver acknowledges at least every this many bytes, so no sender overruns the window."""
EPHEMERAL_PORTS: Final = (49152, 65536)
"""Made-up client ports are drawn from this range (IANA's dynamic ports)."""
MADE_UP_NETWORKS: Final = {
    (4, "client"): ipaddress.ip_network("198.18.0.0/16"),
    (4, "server"): ipaddress.ip_network("198.19.0.0/16"),
    (6, "client"): ipaddress.ip_network("2001:db8:c::/48"),
    (6, "server"): ipaddress.ip_network("2001:db8:5::/48"),
}
"""Where made-up addresses come from: ranges reserved for benchmarking and documentation."""
COMMENT_FIELD_MAX: Final = 256
"""Characters of a comm or uuid kept in a packet comment (a hostile uuid may be megabytes long)."""

_SEQ_MASK: Final = 0xFFFFFFFF
_REQUEST_TYPES: Final = frozenset({EventType.HTTP1_REQUEST, EventType.HTTP2_REQUEST})
_RESPONSE_TYPES: Final = frozenset({EventType.HTTP1_RESPONSE, EventType.HTTP2_RESPONSE})
_H2_TYPES: Final = frozenset({EventType.HTTP2_REQUEST, EventType.HTTP2_RESPONSE})
_SYN, _FIN, _ACK, _PSH = dpkt_tcp.TH_SYN, dpkt_tcp.TH_FIN, dpkt_tcp.TH_ACK, dpkt_tcp.TH_PUSH
_OPT_TSRESOL_NS: Final = b"\x09"  # if_tsresol: 10^-9 s

Side = Literal["client", "server"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Endpoint(NamedTuple):
    """An IP address and a TCP port."""

    ip: IPAddress
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


class Captured(NamedTuple):
    """One end of a connection as captured: each part ``None`` when it was not (or not validly) given."""

    ip: IPAddress | None
    port: int | None

    @property
    def known(self) -> bool:
        """Both the address and the port were captured."""
        return self.ip is not None and self.port is not None

    def __str__(self) -> str:
        ip = "?" if self.ip is None else f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{ip}:{'?' if self.port is None else self.port}"


def captured_endpoint(ip: str, port: int) -> Captured:
    """Parse an event's address and port; anything that is not an IP address or a port 1-65535 is
    unknown. An IPv4-mapped IPv6 address is read as the IPv4 address.

    >>> str(captured_endpoint("::ffff:10.0.0.5", 443))
    '10.0.0.5:443'
    >>> captured_endpoint("not an address", 0)
    Captured(ip=None, port=None)
    """
    address: IPAddress | None
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return Captured(address, port if 0 < port < 65536 else None)


@dataclass(frozen=True, slots=True)
class _Seed:
    """Stable pseudo-random values for one connection, from a hash of its key."""

    digest: bytes

    def number(self, index: int) -> int:
        return int.from_bytes(self.digest[index * 4 : index * 4 + 4], "big")


@dataclass(slots=True)
class _Stream:
    key: str
    client: Endpoint
    server: Endpoint
    traced_is_client: bool
    real: str
    captured: tuple[Captured, Captured]
    next_seq: dict[Side, int]
    unacked: dict[Side, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    last_side: Side = "client"
    control_comment: bytes = b""
    sent_data: bool = False
    client_sent_data: bool = False
    synthetic_preface: bool = False

    @property
    def version(self) -> int:
        return self.client.ip.version


@dataclass(slots=True)
class PcapngStats:
    """What a :class:`PcapngWriter` has written."""

    events: int = 0
    empty_events: int = 0
    """Events with no payload (after any text header): nothing to write."""
    connections: int = 0
    packets: int = 0
    payload_bytes: int = 0


def header_blocks(description: str) -> bytes:
    """A Section Header Block and one Interface Description Block: LINKTYPE_RAW (IPv4 and IPv6 packets),
    nanosecond timestamps, ``description`` as the interface's description."""
    option = dpkt_pcapng.PcapngOptionLE
    shb = dpkt_pcapng.SectionHeaderBlockLE(
        opts=[
            option(code=dpkt_pcapng.PCAPNG_OPT_SHB_USERAPPL, data=f"ecaptureq {__version__}".encode()),
            option(code=dpkt_pcapng.PCAPNG_OPT_ENDOFOPT),
        ]
    )
    idb = dpkt_pcapng.InterfaceDescriptionBlockLE(
        linktype=LINKTYPE_RAW,
        snaplen=0,
        opts=[
            option(code=dpkt_pcapng.PCAPNG_OPT_IF_NAME, data=b"ecaptureq"),
            option(code=dpkt_pcapng.PCAPNG_OPT_IF_DESCRIPTION, data=description.encode()),
            option(code=dpkt_pcapng.PCAPNG_OPT_IF_TSRESOL, data=_OPT_TSRESOL_NS),
            option(code=dpkt_pcapng.PCAPNG_OPT_ENDOFOPT),
        ],
    )
    return bytes(shb) + bytes(idb)


def packet_block(ts_ns: int, packet: bytes, comment: bytes | None = None) -> bytes:
    """An Enhanced Packet Block on interface 0 (see :func:`header_blocks`), with an optional comment."""
    option = dpkt_pcapng.PcapngOptionLE
    opts = [option(code=dpkt_pcapng.PCAPNG_OPT_COMMENT, text=comment), option(code=0)] if comment else []
    block = dpkt_pcapng.EnhancedPacketBlockLE(
        iface_id=0,
        ts_high=(ts_ns >> 32) & 0xFFFFFFFF,
        ts_low=ts_ns & 0xFFFFFFFF,
        pkt_data=packet,
        opts=opts,
    )
    return bytes(block)


DSB_TYPE: Final = 0x0000000A
"""pcapng Decryption Secrets Block."""
SECRETS_TLS_KEY_LOG: Final = 0x544C534B
"""Its secrets type for an NSS key log ("TLSK")."""


def secrets_block(key_log: str) -> bytes:
    """A Decryption Secrets Block carrying NSS key log lines (dpkt has none; the layout is the pcapng
    specification's: type, total length, secrets type, secrets length, secrets padded to 32 bits, total
    length). Wireshark uses the keys for the packets after it."""
    data = key_log.encode("ascii")
    padded = data + b"\0" * (-len(data) % 4)
    total = 4 * 5 + len(padded)
    return (
        struct.pack("<IIII", DSB_TYPE, total, SECRETS_TLS_KEY_LOG, len(data))
        + padded
        + struct.pack("<I", total)
    )


def _made_up_port(number: int) -> int:
    low, high = EPHEMERAL_PORTS
    return low + number % (high - low)


def _other(side: Side) -> Side:
    return "server" if side == "client" else "client"


def _field(value: str) -> str:
    """A comment field: cut to :data:`COMMENT_FIELD_MAX`, JSON-quoted when it has spaces, quotes, ``=``
    or control characters (a comm may be ``Web Content``; a hostile one anything)."""
    value = value[:COMMENT_FIELD_MAX]
    if value and value.isprintable() and not any(c in value for c in ' "=\\'):
        return value
    return json.dumps(value, ensure_ascii=False)


def _content_type(body: bytes) -> int:
    """The event type the bytes alone decide (whatever the direction), else UNKNOWN."""
    as_write = classify_payload(body, True)
    return as_write if as_write == classify_payload(body, False) else EventType.UNKNOWN


class PcapngWriter:
    """Write events to ``out`` as pcapng: a synthetic TCP stream per connection (see the module).

    Parameters:
        out: a binary stream; the section and interface headers are written at once.
        keep_ports: write the captured server port instead of :data:`PLAINTEXT_PORT`.
        flush: flush ``out`` after every packet (for a live reader on a pipe).
        max_connections: connections tracked at once; the least recently used one is closed (FIN)
            to make room.
        write_data_type: the uuid data_type that means written by the traced process.

    Call :meth:`write_event` for each event in arrival order and :meth:`close` at the end (it closes
    every stream with FIN and flushes, but does not close ``out``). Only ``out``'s errors are raised.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        keep_ports: bool = False,
        flush: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        write_data_type: int = DATA_TYPE_WRITE,
    ) -> None:
        self._out = out
        self.keep_ports = keep_ports
        self.flush_each = flush
        self.max_connections = max(1, max_connections)
        self.write_data_type = write_data_type
        self.stats = PcapngStats()
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._written: set[tuple[Endpoint, Endpoint]] = set()  # (client, server) of the open streams
        self._last_ns = 0
        self._latest_ns = 0
        self._ip_id = 0
        self._write(header_blocks("captured TLS plaintext as synthetic TCP streams"))

    @property
    def open_connections(self) -> int:
        """How many streams are open (SYN written, FIN not yet)."""
        return len(self._streams)

    def write_event(self, event: Event) -> None:
        """Write the packets of one event (none when it has no payload)."""
        meta = event_meta(event, write_data_type=self.write_data_type)
        self.stats.events += 1
        body = meta.body
        if not body:
            self.stats.empty_events += 1
            return
        ts = meta.time_ns if meta.time_ns is not None else self._last_ns
        self._last_ns = ts
        self._latest_ns = max(self._latest_ns, ts)
        stream = self._stream_for(meta, body, ts)
        side = self._side(stream, meta, body)
        if not stream.sent_data:
            stream.sent_data = True
            if not H2_PREFACE.startswith(body[: len(H2_PREFACE)]) and self._is_h2(meta, body):
                # The capture began after the preface: without one Wireshark does not see HTTP/2.
                stream.synthetic_preface = True
                note = b" synthetic=HTTP/2-connection-preface-not-captured"
                self._data(stream, "client", H2_PREFACE, ts, stream.control_comment + note)
        if side == "client" and not stream.client_sent_data:
            stream.client_sent_data = True
            if stream.synthetic_preface and body.startswith(H2_PREFACE):
                body = body[len(H2_PREFACE) :]  # the real one came after all: not twice
        stream.last_side = side
        comment = self._comment(stream, meta.pid, meta.pname, event.uuid or meta.connection)
        self.stats.payload_bytes += len(body)
        self._data(stream, side, body, ts, comment)

    def close(self) -> None:
        """Close every open stream (FIN from both sides) and flush ``out``."""
        while self._streams:
            _key, stream = self._streams.popitem(last=False)
            self._fin(stream)
        self._out.flush()

    # -- streams -----------------------------------------------------------------------------------

    def _stream_for(self, meta: EventMeta, body: bytes, ts: int) -> _Stream:
        local = captured_endpoint(meta.src_ip, meta.src_port)
        peer = captured_endpoint(meta.dst_ip, meta.dst_port)
        stream = self._streams.get(meta.connection)
        if stream is not None:
            if self._same_tuple(stream, local, peer):
                self._streams.move_to_end(meta.connection)
                return stream
            # The same process and fd on another 4-tuple: the fd was reused for a new connection.
            del self._streams[meta.connection]
            self._fin(stream)
        while len(self._streams) >= self.max_connections:
            _key, oldest = self._streams.popitem(last=False)
            self._fin(oldest)
        stream = self._open(meta, body, local, peer, ts)
        self._streams[meta.connection] = stream
        return stream

    @staticmethod
    def _same_tuple(stream: _Stream, local: Captured, peer: Captured) -> bool:
        if not (local.known and peer.known and all(c.known for c in stream.captured)):
            return True
        return {local, peer} == set(stream.captured)

    def _open(self, meta: EventMeta, body: bytes, local: Captured, peer: Captured, ts: int) -> _Stream:
        if local.ip is not None and peer.ip is not None and local.ip.version != peer.ip.version:
            peer = Captured(None, peer.port)  # a tuple of two families is not one: keep the local side
        traced_is_client = self._traced_is_client(meta, body, local, peer)
        client_cap, server_cap = (local, peer) if traced_is_client else (peer, local)
        version = next((c.ip.version for c in (client_cap, server_cap) if c.ip is not None), 4)
        seed = _Seed(hashlib.sha256(f"{meta.connection}\0{ts}".encode("utf-8", "replace")).digest())
        key_seed = _Seed(hashlib.sha256(meta.connection.encode("utf-8", "replace")).digest())
        client = Endpoint(
            client_cap.ip or self._made_up_ip(version, "client", key_seed.number(0)),
            # The port from this opening's seed: a connection evicted and seen again is a new stream.
            client_cap.port or _made_up_port(seed.number(2)),
        )
        server = Endpoint(
            server_cap.ip or self._made_up_ip(version, "server", key_seed.number(2)),
            server_cap.port if self.keep_ports and server_cap.port else PLAINTEXT_PORT,
        )
        if client == server:  # a hostile tuple, or a client that happens to use port 80 on the same host
            client = Endpoint(client.ip, _made_up_port(key_seed.number(3)))
        attempt = 4
        while (client, server) in self._written:
            # Both ends of one connection were traced (curl and nginx), or two connections differ only in
            # the server port written as 80: the second gets another client port (real= tells the truth).
            client = Endpoint(client.ip, _made_up_port(seed.number(attempt % 8) + attempt))
            attempt += 1
        self._written.add((client, server))
        stream = _Stream(
            key=meta.connection,
            client=client,
            server=server,
            traced_is_client=traced_is_client,
            real=f"{client_cap}->{server_cap}",
            captured=(local, peer),
            next_seq={"client": seed.number(0), "server": seed.number(1)},
        )
        stream.control_comment = self._comment(stream, meta.pid, meta.pname, meta.connection)
        self.stats.connections += 1
        mss_option = b"\x02\x04" + MSS[version].to_bytes(2, "big")
        self._segment(stream, "client", _SYN, b"", ts, stream.control_comment, mss_option)
        self._segment(stream, "server", _SYN | _ACK, b"", ts, stream.control_comment, mss_option)
        self._segment(stream, "client", _ACK, b"", ts, stream.control_comment)
        return stream

    @staticmethod
    def _made_up_ip(version: int, role: Side, number: int) -> IPAddress:
        network = MADE_UP_NETWORKS[(version, role)]
        host_bits = network.max_prefixlen - network.prefixlen
        host = number % ((1 << min(host_bits, 32)) - 2) + 1  # neither the network nor the broadcast
        return network.network_address + host

    @staticmethod
    def _traced_is_client(meta: EventMeta, body: bytes, local: Captured, peer: Captured) -> bool:
        kind = _content_type(body)
        if meta.direction is not None and (kind in _REQUEST_TYPES or kind in _RESPONSE_TYPES):
            sender_is_client = kind in _REQUEST_TYPES
            return sender_is_client == (meta.direction == "write")
        if local.port is not None and peer.port is not None and local.port != peer.port:
            return local.port > peer.port  # servers listen on the lower port (443 against 40522)
        return True  # what eCapture usually traces: clients (curl, browsers, SDKs)

    def _side(self, stream: _Stream, meta: EventMeta, body: bytes) -> Side:
        if meta.direction is not None:
            return "client" if (meta.direction == "write") == stream.traced_is_client else "server"
        kind = _content_type(body)
        if kind in _REQUEST_TYPES:
            return "client"
        if kind in _RESPONSE_TYPES:
            return "server"
        return stream.last_side

    @staticmethod
    def _is_h2(meta: EventMeta, body: bytes) -> bool:
        is_write = None if meta.direction is None else meta.direction == "write"
        return classify_payload(body, is_write) in _H2_TYPES

    @staticmethod
    def _comment(stream: _Stream, pid: int | None, pname: str, uuid: str) -> bytes:
        process = f"pid={pid if pid is not None else '?'} comm={_field(pname)}"
        text = f"{process} uuid={_field(uuid)} real={stream.real}"
        return text.encode("utf-8", "backslashreplace")

    # -- packets -----------------------------------------------------------------------------------

    def _data(self, stream: _Stream, side: Side, body: bytes, ts: int, comment: bytes) -> None:
        mss = MSS[stream.version]
        view = memoryview(body)
        other = _other(side)
        for offset in range(0, len(body), mss):
            if stream.unacked[side] >= ACK_EVERY:
                self._segment(stream, other, _ACK, b"", ts, stream.control_comment)
            chunk = view[offset : offset + mss]
            flags = _ACK | (_PSH if offset + mss >= len(body) else 0)
            self._segment(stream, side, flags, bytes(chunk), ts, comment)

    def _fin(self, stream: _Stream) -> None:
        self._written.discard((stream.client, stream.server))
        # Closed now, as far as the capture tells: at the latest timestamp written, so that the file's
        # packets stay in time order.
        ts, note = self._latest_ns, stream.control_comment
        self._segment(stream, "client", _FIN | _ACK, b"", ts, note)
        self._segment(stream, "server", _FIN | _ACK, b"", ts, note)
        self._segment(stream, "client", _ACK, b"", ts, note)

    def _segment(
        self,
        stream: _Stream,
        side: Side,
        flags: int,
        data: bytes,
        ts: int,
        comment: bytes,
        options: bytes = b"",
    ) -> None:
        other = _other(side)
        src, dst = (stream.client, stream.server) if side == "client" else (stream.server, stream.client)
        seq = stream.next_seq[side]
        segment = dpkt_tcp.TCP(
            sport=src.port,
            dport=dst.port,
            seq=seq,
            ack=stream.next_seq[other] if flags & _ACK else 0,
            off=5 + len(options) // 4,
            flags=flags,
            win=WINDOW,
            opts=options,
            data=data,
        )
        packet: dpkt_ip.IP | dpkt_ip6.IP6
        if stream.version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            packet = dpkt_ip.IP(
                src=src.ip.packed, dst=dst.ip.packed, p=6, ttl=64, id=self._ip_id, df=1, data=segment
            )
        else:
            packet = dpkt_ip6.IP6(
                src=src.ip.packed, dst=dst.ip.packed, nxt=6, hlim=64, plen=len(segment), data=segment
            )
        stream.next_seq[side] = (seq + len(data) + (1 if flags & (_SYN | _FIN) else 0)) & _SEQ_MASK
        stream.unacked[side] += len(data)
        if flags & _ACK:
            stream.unacked[other] = 0
        self._write(packet_block(ts, bytes(packet), comment))
        self.stats.packets += 1

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        if self.flush_each:
            self._out.flush()
