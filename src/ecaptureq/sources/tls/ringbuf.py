"""Read a BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``) straight from its shared memory, in batches.

libbpf's ``ring_buffer__poll`` calls a C callback per record; through ctypes that is a Python call,
an argument conversion and a copy per record, which is most of the consumer's cost at tens of
thousands of small records a second. The ring buffer's memory protocol is part of the kernel ABI
(``kernel/bpf/ringbuf.c``, the same one libbpf implements in ``ringbuf.c``), and small:

- page 0 (read-write): the consumer position; pages from 1 (read-only): the producer position, then
  the data area, mapped twice back to back so a record that wraps around is contiguous;
- each record starts with an 8-byte header: ``u32 len`` (bit 31 busy: still being written; bit 30
  discarded) and ``u32 pg_off``; records are 8-byte aligned;
- the consumer reads the producer position, walks the committed records, then stores its new
  position, which frees the space for the producers.

:meth:`RingReader.drain` hands each record to the caller as a ``memoryview`` into the mapping (valid
until the batch is released), so the only copy is the one the caller makes of what it keeps. Waiting
uses ``epoll`` on the map's fd, which the kernel signals when a producer asks for a wake-up.
"""

from __future__ import annotations

import contextlib
import mmap
import select
import struct
from collections.abc import Callable
from typing import Final

DEFAULT_BUFFER_MIB: Final = 256
"""Default size of the ring buffer between the kernel and the consumer (``--buffer-size``), in MiB.

Large enough to hold a 64 MiB call (the most one call copies) several times over, and a few seconds of
loopback-speed traffic while the consumer catches up; the memory is only used while capturing."""

_BUSY: Final = 1 << 31
_DISCARD: Final = 1 << 30
_HEADER: Final = 8
# Native formats: struct reads and writes them with one memcpy, a single load or store on x86-64 and
# arm64, as the kernel's positions need (it stores them with smp_store_release and loads them with
# smp_load_acquire). The standard-size formats ("<Q") go byte by byte: the kernel could read a consumer
# position half written, and this side a producer position half updated.
_U32: Final = struct.Struct("I")
_U64: Final = struct.Struct("Q")
RELEASE_EVERY: Final = 4 << 20
"""Bytes consumed after which the consumer position is published mid-batch (frees space sooner)."""


class RingReader:
    """A consumer of the ring buffer map behind ``map_fd`` (``size`` = its ``max_entries``)."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size must be a power of two, not {size}")
        page = mmap.PAGESIZE
        self.size = size
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._view: memoryview | None = memoryview(self._producer)
        self._page = page
        self._epoll: select.epoll | None = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def pending(self) -> int:
        """Bytes produced and not yet consumed."""
        return int(_U64.unpack_from(self._producer, 0)[0] - _U64.unpack_from(self._consumer, 0)[0])

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a producer's wake-up (returns early on one)."""
        if self._epoll is not None:
            with contextlib.suppress(InterruptedError):
                self._epoll.poll(timeout, 1)

    def drain(self, handle: Callable[[memoryview], None], limit: int = 1 << 62) -> int:
        """Call ``handle(record)`` for each committed record, oldest first; return the bytes consumed.

        ``record`` is a view into the shared memory, valid only during the call. Stops at a record
        still being written, or after ``limit`` bytes.
        """
        view = self._view
        if view is None:
            return 0
        page, mask = self._page, self._mask
        consumer = _U64.unpack_from(self._consumer, 0)[0]
        producer = _U64.unpack_from(self._producer, 0)[0]
        start = released = consumer
        unpack = _U32.unpack_from
        while consumer < producer and consumer - start < limit:
            at = page + (consumer & mask)
            length = unpack(view, at)[0]
            if length & _BUSY:
                break
            length &= ~_DISCARD
            if not unpack(view, at)[0] & _DISCARD:
                handle(view[at + _HEADER : at + _HEADER + length])
            consumer += (length + _HEADER + 7) & ~7
            if consumer - released >= RELEASE_EVERY:
                _U64.pack_into(self._consumer, 0, consumer)
                released = consumer
        if consumer != released:
            _U64.pack_into(self._consumer, 0, consumer)
        return int(consumer - start)

    def close(self) -> None:
        """Unmap and stop waiting (idempotent)."""
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._view is not None:
            self._view.release()
            self._view = None
            self._producer.close()
            self._consumer.close()
