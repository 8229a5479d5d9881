"""A tolerant HPACK decoder for captures that began after the connection did.

``hpack.Decoder`` is all or nothing: one reference to a header table entry it never saw (the normal case
when eCapture is started after the connection) fails the whole header block. :class:`TolerantDecoder`
decodes what can be known and marks the rest:

* fields from the static table and literal fields always decode (``:method: POST``, ``:path`` sent
  literally, ``:status: 200`` from the static table);
* a reference to a dynamic table entry added before the capture began gives an :class:`UnknownField`
  instead of an error, and the fields after it still decode;
* literal fields "with incremental indexing" seen later are learned, so references to them decode; a
  literal whose name was itself unknown is learned as a placeholder, which keeps later indices aligned.

It uses ``hpack``'s own pieces (integer decoding, Huffman decoding, static table, entry size), and when
the table is known from the connection's start it gives what ``hpack.Decoder`` gives.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from hpack.exceptions import HPACKDecodingError
from hpack.hpack import decode_integer
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable, table_entry_size

from ecaptureq.decode.model import library_error

STATIC: Final = HeaderTable.STATIC_TABLE
"""RFC 7541 Appendix A, as ``hpack`` has it."""

DEFAULT_TABLE_SIZE: Final = HeaderTable.DEFAULT_SIZE
MAX_LEARNED: Final = 1 << 20
"""The most bytes (entry sizes as RFC 7541 counts them) of learned entries kept while the encoder's
table size is not known; older ones are then dropped and references to them become unknown."""


@dataclass(frozen=True, slots=True)
class UnknownField:
    """A field that referred to a header table entry this decoder never saw.

    ``index`` is the table index it used; ``name`` and ``value`` are what the field itself carried
    (a literal value with an unknown name), ``None`` when not known.
    """

    index: int
    name: bytes | None = None
    value: bytes | None = None

    def describe(self) -> str:
        """A short description for a note, e.g. ``header table entry 63: unknown``."""
        name = self.name.decode("utf-8", "replace") if self.name is not None else None
        if name is not None:
            return f"{name}: (value from header table entry {self.index}, unknown)"
        if self.value is not None:
            value = self.value[:80].decode("utf-8", "replace")
            return f"(name from header table entry {self.index}, unknown): {value}"
        return f"(header table entry {self.index}, unknown)"


@dataclass(slots=True)
class HeaderBlock:
    """One decoded header block: the fields in order (``(name, value)`` bytes or :class:`UnknownField`)
    and the errors that stopped decoding early (the fields before them are kept)."""

    fields: list[tuple[bytes, bytes] | UnknownField] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    size: int = 0
    """The bytes of the decoded fields as RFC 7541 counts them (name, value and 32 each)."""

    @property
    def known(self) -> list[tuple[bytes, bytes]]:
        """The fields that decoded."""
        return [f for f in self.fields if not isinstance(f, UnknownField)]

    @property
    def unknown(self) -> list[UnknownField]:
        """The fields that referred to entries never seen."""
        return [f for f in self.fields if isinstance(f, UnknownField)]


_Entry = tuple[bytes | None, bytes | None]

HUFFMAN_CACHED: Final = 1024
"""Huffman-coded strings whose decoding is remembered (process-wide): every new connection sends its
user-agent, authority, accept... again as literals, with the same bytes. Strings of at most
:data:`HUFFMAN_CACHED_LENGTH` bytes, so the cache holds well under a MiB."""
HUFFMAN_CACHED_LENGTH: Final = 256

_huffman_cached = lru_cache(maxsize=HUFFMAN_CACHED)(decode_huffman)
"""``decode_huffman``, remembered; an invalid string raises each time (exceptions are not cached)."""


class TolerantDecoder:
    """HPACK decoding that survives a missed start.

    ``from_start``: the connection was seen from its first header block (its dynamic table starts
    empty, as ``hpack.Decoder`` assumes). Otherwise the table may hold entries never seen.
    ``max_table_size`` is the largest table size update accepted; ``max_header_list_size`` the most
    bytes (as RFC 7541 counts them) of one block's fields.
    """

    def __init__(
        self,
        *,
        from_start: bool = False,
        max_table_size: int = (1 << 24) - 1,
        max_header_list_size: int = 1 << 20,
    ) -> None:
        self.entries: deque[_Entry] = deque()
        self.size = 0  # of the learned entries as RFC 7541 counts them (a lower bound if some are unknown)
        self.exact_sizes = True  # every learned entry's size is known
        self.table_size: int | None = DEFAULT_TABLE_SIZE if from_start else None
        self.unseen_tail = not from_start  # older entries may exist beyond the learned ones
        self.max_table_size = max_table_size
        self.max_header_list_size = max_header_list_size
        self.generation = 0
        """Counts the changes to the table (and to what is known of it): a block decoded twice at one
        generation decodes the same, so a caller may keep the result of a block that left it unchanged."""

    @property
    def complete(self) -> bool:
        """Whether every entry of the encoder's table is known."""
        return not self.unseen_tail

    def forget(self) -> None:
        """Lose the table (after a block that could not be decoded to its end: it may have changed it)."""
        self.generation += 1
        self.entries.clear()
        self.size = 0
        self.exact_sizes = True
        self.unseen_tail = True

    def _lookup(self, index: int) -> _Entry | None:
        if 1 <= index <= len(STATIC):
            return STATIC[index - 1]
        pos = index - len(STATIC) - 1
        if 0 <= pos < len(self.entries):
            return self.entries[pos]
        return None

    def _invalid(self, index: int) -> str | None:
        """An error when ``index`` cannot exist (beyond a table known to be complete), else ``None``."""
        if index == 0:
            return "HPACK: header table index 0"
        if self.unseen_tail:
            return None
        return f"HPACK: header table index {index} beyond the table ({len(self.entries)} entries)"

    def _add(self, name: bytes | None, value: bytes | None) -> None:
        self.generation += 1
        size = table_entry_size(name or b"", value or b"")
        if name is None or value is None:
            self.exact_sizes = False
        self.entries.appendleft((name, value))
        self.size += size
        self._shrink()

    def _shrink(self) -> None:
        limit = self.table_size if self.table_size is not None and self.exact_sizes else None
        if limit is not None and self.size > limit:
            # The encoder evicted as much: whatever it held from before the capture is gone too.
            self.unseen_tail = False
            while self.entries and self.size > limit:
                name, value = self.entries.pop()
                self.size -= table_entry_size(name or b"", value or b"")
        while self.entries and self.size > MAX_LEARNED:
            name, value = self.entries.pop()
            self.size -= table_entry_size(name or b"", value or b"")
            self.unseen_tail = True

    def _resize(self, new_size: int) -> None:
        self.generation += 1
        self.table_size = new_size
        if new_size == 0:
            self.entries.clear()
            self.size = 0
            self.exact_sizes = True
            self.unseen_tail = False
        self._shrink()

    def decode(self, data: bytes | bytearray) -> HeaderBlock:
        """Decode one complete header block. Never raises."""
        if type(data) is not bytes:
            data = bytes(data)  # its slices are then bytes too, which the Huffman cache needs
        block = HeaderBlock()
        fields = block.fields
        mem = memoryview(data)
        end = len(data)
        static = STATIC
        n_static = len(static)
        entries = self.entries
        pos = 0
        listed = 0
        try:
            while pos < end:
                first = data[pos]
                if first & 0x80:  # indexed field
                    index = first & 0x7F
                    if index < 0x7F:  # the integer fits its prefix (RFC 7541 section 5.1)
                        pos += 1
                    else:
                        index, used = decode_integer(mem[pos:], 7)
                        pos += used
                    if 1 <= index <= n_static:
                        name, value = static[index - 1]
                    else:
                        at = index - n_static - 1
                        entry = entries[at] if 0 <= at < len(entries) else None
                        if entry is None or entry[0] is None or entry[1] is None:
                            err = self._invalid(index) if entry is None else None
                            if err:
                                block.errors.append(err)
                                return self._stop(block)
                            known = entry or (None, None)  # a placeholder keeps what its literal carried
                            fields.append(UnknownField(index, known[0], known[1]))
                            continue
                        name, value = entry[0], entry[1]
                elif first & 0xE0 == 0x20:  # dynamic table size update
                    if fields:
                        block.errors.append("HPACK: table size update after a header field")
                        return self._stop(block)
                    new_size, used = decode_integer(mem[pos:], 5)
                    pos += used
                    if new_size > self.max_table_size:
                        block.errors.append(f"HPACK: table size {new_size} beyond {self.max_table_size}")
                        return self._stop(block)
                    self._resize(new_size)
                    continue
                else:
                    indexing = first & 0x40
                    mask = 0x3F if indexing else 0x0F
                    index = first & mask
                    if index < mask:
                        pos += 1
                    else:
                        index, used = decode_integer(mem[pos:], 6 if indexing else 4)
                        pos += used
                    name_known: bytes | None
                    if index:
                        entry = self._lookup(index)
                        if entry is None:
                            err = self._invalid(index)
                            if err:
                                block.errors.append(err)
                                return self._stop(block)
                        name_known = entry[0] if entry is not None else None
                    else:
                        name_known, pos = self._string(data, mem, pos)
                    value, pos = self._string(data, mem, pos)
                    if indexing:
                        self._add(name_known, value)
                    if name_known is None:
                        fields.append(UnknownField(index, None, value))
                        continue
                    name = name_known
                listed += table_entry_size(name, value)
                if listed > self.max_header_list_size:
                    block.errors.append(f"HPACK: header list larger than {self.max_header_list_size} bytes")
                    return self._stop(block)
                fields.append((name, value))
        except HPACKDecodingError as exc:
            block.errors.append(f"HPACK: {library_error(exc)}"[:200])
            return self._stop(block)
        block.size = listed
        if self.table_size is not None and self.table_size > self.max_table_size:
            block.errors.append("HPACK: table size beyond the maximum")
        return block

    def _string(self, data: bytes, mem: memoryview, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKDecodingError("Truncated header block")
        first = data[pos]
        length = first & 0x7F
        if length < 0x7F:
            pos += 1
        else:
            length, used = decode_integer(mem[pos:], 7)
            pos += used
        raw = data[pos : pos + length]
        if len(raw) != length:
            raise HPACKDecodingError("Truncated header block")
        if first & 0x80:
            raw = _huffman_cached(raw) if length <= HUFFMAN_CACHED_LENGTH else decode_huffman(raw)
        return raw, pos + length

    def _stop(self, block: HeaderBlock) -> HeaderBlock:
        # The rest of the block may have changed the table: what was learned no longer lines up.
        self.forget()
        return block
