"""Where to hook Go's ``crypto/tls`` in a Go binary, stripped ones included.

Go keeps a table of every function (name, entry, size) in the ``.gopclntab`` section, which survives
``-ldflags=-s -w`` (that only drops ``.symtab`` and DWARF). From it we take the entry of
``crypto/tls.(*Conn).Write`` and ``crypto/tls.(*Conn).Read`` and, by disassembling them (capstone), the file
offsets of their ``RET`` instructions: return values are read there, since a uretprobe rewrites the return
address on the stack, which Go's stack growth and traceback do not tolerate.

Only the register ABI (Go 1.17+ on amd64) is supported: the receiver is in RAX, the buffer in RBX/RCX, the
count returned in RAX and the goroutine (``g``) in R14.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import IO, Final

from elftools.elf.elffile import ELFFile

GO_WRITE: Final = "crypto/tls.(*Conn).Write"
GO_READ: Final = "crypto/tls.(*Conn).Read"
GO_FUNCTIONS: Final = (GO_WRITE, GO_READ)
"""The ``crypto/tls`` methods hooked: entry and every RET."""

_MAGIC_116: Final = 0xFFFFFFFA  # Go 1.16 and 1.17
_MAGIC_118: Final = 0xFFFFFFF0  # Go 1.18 and 1.19
_MAGIC_120: Final = 0xFFFFFFF1  # Go 1.20 and later
_BUILDINFO_MAGIC: Final = b"\xff Go buildinf:"
_VERSION: Final = re.compile(rb"go1\.(\d+)(?:\.\d+)?(?:rc\d+|beta\d+)?")


class GoBinaryError(ValueError):
    """The file is a Go binary this module cannot hook; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GoFunction:
    """One hooked Go function: file offsets of its entry and of each RET instruction."""

    name: str
    entry: int
    returns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GoTls:
    """What to hook in one Go binary."""

    version: str
    """The Go toolchain that built it (``go1.19.8``), or ``""`` when the build info is unreadable."""
    stripped: bool
    """True when the binary has no ``.symtab`` (found through ``.gopclntab``)."""
    functions: tuple[GoFunction, ...]


def go_version(elf: ELFFile) -> str:
    """The Go version from ``.go.buildinfo`` (Go 1.13+ layouts), or ``""``."""
    section = elf.get_section_by_name(".go.buildinfo")
    if section is None:
        return ""
    data = section.data()
    if not data.startswith(_BUILDINFO_MAGIC) or len(data) < 32:
        return ""
    ptr_size, flags = data[14], data[15]
    if flags & 2:  # Go 1.18+: length-prefixed strings right after the 32-byte header
        length, pos = _uvarint(data, 32)
        return data[pos : pos + length].decode("ascii", "replace")
    # Older: pointers to string headers; read through the segments.
    fmt = "<Q" if ptr_size == 8 else "<I"
    (addr,) = struct.unpack_from(fmt, data, 16)
    header = _read_vaddr(elf, addr, 2 * ptr_size)
    if header is None:
        return ""
    sptr, slen = struct.unpack(fmt[0] + fmt[1] * 2, header)
    raw = _read_vaddr(elf, sptr, min(slen, 64))
    return raw.decode("ascii", "replace") if raw else ""


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return value, pos


def _read_vaddr(elf: ELFFile, addr: int, size: int) -> bytes | None:
    offset = vaddr_to_offset(elf, addr)
    if offset is None:
        return None
    stream: IO[bytes] = elf.stream
    stream.seek(offset)
    return stream.read(size)


def vaddr_to_offset(elf: ELFFile, addr: int) -> int | None:
    """The file offset of virtual address ``addr`` (through the ``PT_LOAD`` segment holding it)."""
    for seg in elf.iter_segments(type="PT_LOAD"):
        start = seg["p_vaddr"]
        if start <= addr < start + seg["p_filesz"]:
            return int(addr - start + seg["p_offset"])
    return None


def pclntab_functions(elf: ELFFile, wanted: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``{name: (entry vaddr, size)}`` of the ``wanted`` functions, from ``.gopclntab``.

    Raises :class:`GoBinaryError` when the table is missing or of an unknown layout.
    """
    section = elf.get_section_by_name(".gopclntab")
    tab = section.data() if section is not None else _find_pclntab(elf)
    if tab is None:
        raise GoBinaryError("no Go function table (.gopclntab) found")
    if len(tab) < 64:
        raise GoBinaryError(".gopclntab is truncated")
    magic = struct.unpack_from("<I", tab)[0]
    ptr = tab[7]
    if ptr != 8:
        raise GoBinaryError(f"pointer size {ptr}: only 64-bit Go binaries are supported")
    names = {n.encode() for n in wanted}
    found: dict[str, tuple[int, int]] = {}
    if magic in (_MAGIC_118, _MAGIC_120):
        nfunc, _nfiles, text, funcname, _cu, _filetab, _pctab, functab = struct.unpack_from("<8Q", tab, 8)
        for i in range(nfunc):
            entry, funcoff = struct.unpack_from("<II", tab, functab + 8 * i)
            next_entry = struct.unpack_from("<I", tab, functab + 8 * (i + 1))[0]
            name_off = struct.unpack_from("<i", tab, functab + funcoff + 4)[0]
            name = _cstring(tab, funcname + name_off)
            if name in names:
                found[name.decode()] = (text + entry, next_entry - entry)
    elif magic == _MAGIC_116:
        nfunc, _nfiles, funcname, _cu, _filetab, _pctab, functab = struct.unpack_from("<7Q", tab, 8)
        for i in range(nfunc):
            entry, funcoff = struct.unpack_from("<QQ", tab, functab + 16 * i)
            next_entry = struct.unpack_from("<Q", tab, functab + 16 * (i + 1))[0]
            name_off = struct.unpack_from("<i", tab, functab + funcoff + 8)[0]
            name = _cstring(tab, funcname + name_off)
            if name in names:
                found[name.decode()] = (entry, next_entry - entry)
    else:
        raise GoBinaryError(f"unknown .gopclntab magic {magic:#x} (Go older than 1.16?)")
    return found


def _find_pclntab(elf: ELFFile) -> bytes | None:
    """The function table of a binary without a ``.gopclntab`` section (``-buildmode=pie`` puts it in
    the read-only data): found by its header, magic then ``00 00``, min instruction size 1, pointer size 8.
    """
    stream: IO[bytes] = elf.stream
    stream.seek(0)
    data = stream.read()
    for magic in (_MAGIC_120, _MAGIC_118, _MAGIC_116):
        at = data.find(struct.pack("<I", magic) + b"\0\0\x01\x08")
        if at >= 0:
            return data[at:]
    return None


def _cstring(data: bytes, pos: int) -> bytes:
    end = data.find(b"\0", pos)
    return data[pos:end] if end >= 0 else b""


def ret_offsets(code: bytes, address: int) -> list[int]:
    """Addresses of the ``RET`` instructions in ``code`` (x86-64 machine code loaded at ``address``)."""
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    md = Cs(CS_ARCH_X86, CS_MODE_64)
    found = md.disasm_lite(code, address)
    return [addr for addr, _size, mnemonic, _ops in found if mnemonic in ("ret", "retq")]


def go_tls(elf: ELFFile) -> GoTls | None:
    """What to hook in a Go binary, or ``None`` when it does not use ``crypto/tls``.

    Raises :class:`GoBinaryError` for a Go binary using ``crypto/tls`` that cannot be hooked.
    """
    machine = elf["e_machine"]
    version = go_version(elf)
    functions = pclntab_functions(elf, GO_FUNCTIONS)
    if not functions:
        return None
    if machine != "EM_X86_64":
        raise GoBinaryError(f"Go crypto/tls on {machine}: only x86-64 is supported")
    match = _VERSION.match(version.encode())
    if match and int(match.group(1)) < 17:
        raise GoBinaryError(f"{version} uses Go's stack ABI; only the register ABI (Go 1.17+) is supported")
    hooks = []
    for name in GO_FUNCTIONS:
        if name not in functions:
            raise GoBinaryError(f"{name} not found in .gopclntab")
        addr, size = functions[name]
        entry = vaddr_to_offset(elf, addr)
        code = _read_vaddr(elf, addr, size)
        if entry is None or not code:
            raise GoBinaryError(f"{name} at {addr:#x} is outside the file's segments")
        rets = [entry + (a - addr) for a in ret_offsets(code, addr)]
        if not rets:
            raise GoBinaryError(f"{name} has no RET instruction to probe")
        hooks.append(GoFunction(name, entry, tuple(rets)))
    return GoTls(version, elf.get_section_by_name(".symtab") is None, tuple(hooks))
