"""A thin ctypes binding to the few libbpf (``libbpf.so.1``) calls the TLS capture needs.

libbpf does the hard parts (ELF parsing, CO-RE relocation against the kernel's BTF, map creation,
uprobe symbol resolution); this module only declares their C signatures and
turns libbpf's ``NULL``/negative-errno convention into :class:`LibbpfError`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from typing import Final

LIBBPF_NAME: Final = "libbpf.so.1"
"""The shared library loaded (Debian/Ubuntu package ``libbpf1``)."""


class LibbpfError(OSError):
    """A libbpf call failed; ``errno`` holds the positive error number."""


class _UprobeOpts(ctypes.Structure):
    # struct bpf_uprobe_opts as of libbpf 1.1; later versions only append fields (sz tells them apart).
    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("ref_ctr_offset", ctypes.c_size_t),
        ("bpf_cookie", ctypes.c_uint64),
        ("retprobe", ctypes.c_bool),
        ("func_name", ctypes.c_char_p),
    )


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

LIBBPF_WARN: Final = 0
LIBBPF_INFO: Final = 1
LIBBPF_DEBUG: Final = 2

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
_messages: list[str] = []
_print_ref: object = None


def load_library() -> ctypes.CDLL:
    """Load ``libbpf.so.1`` once, declare the signatures used here and route its log into memory.

    Raises :class:`LibbpfError` (``ENOENT``) when the library is not installed.
    """
    global _lib, _print_ref
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            lib = ctypes.CDLL(LIBBPF_NAME, use_errno=True)
        except OSError as exc:
            raise LibbpfError(errno.ENOENT, f"cannot load {LIBBPF_NAME}: {exc}") from None
        vp, cp, ci, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
        signatures: dict[str, tuple[object, list[object]]] = {
            "libbpf_set_print": (vp, [_PRINT_FN]),
            "libbpf_major_version": (ctypes.c_uint32, []),
            "libbpf_minor_version": (ctypes.c_uint32, []),
            "bpf_object__open_file": (vp, [cp, vp]),
            "bpf_object__load": (ci, [vp]),
            "bpf_object__close": (None, [vp]),
            "bpf_object__find_program_by_name": (vp, [vp, cp]),
            "bpf_object__find_map_by_name": (vp, [vp, cp]),
            "bpf_program__attach": (vp, [vp]),
            "bpf_program__attach_uprobe_opts": (vp, [vp, ci, cp, sz, ctypes.POINTER(_UprobeOpts)]),
            "bpf_program__set_autoload": (ci, [vp, ctypes.c_bool]),
            "bpf_link__destroy": (ci, [vp]),
            "bpf_map__fd": (ci, [vp]),
            "bpf_map__set_max_entries": (ci, [vp, ctypes.c_uint32]),
            "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
            "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        vsnprintf = libc.vsnprintf
        vsnprintf.restype = ctypes.c_int
        vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

        def _print(level: int, fmt: bytes | None, args: int | None) -> int:
            if level == LIBBPF_DEBUG or fmt is None:
                return 0
            buf = ctypes.create_string_buffer(1024)
            vsnprintf(buf, len(buf), fmt, args)
            text = buf.value.decode("utf-8", "replace").rstrip()
            if text:
                _messages.append(text)
                del _messages[:-200]
            return 0

        _print_ref = _PRINT_FN(_print)
        lib.libbpf_set_print(_print_ref)
        _lib = lib
        return lib


def take_messages() -> list[str]:
    """Return (and forget) the warnings libbpf logged since the last call, verifier output included."""
    out = list(_messages)
    _messages.clear()
    return out


def version() -> str:
    """The libbpf version, e.g. ``"1.1"``."""
    lib = load_library()
    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


def _check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")
    return ptr


def _check_rc(rc: int, what: str) -> int:
    if rc < 0:
        err = -rc
        raise LibbpfError(err, f"{what}: {os.strerror(err)}")
    return rc


class Link:
    """An attached probe; :meth:`destroy` detaches it (idempotent)."""

    def __init__(self, ptr: int, description: str) -> None:
        self._ptr: int | None = ptr
        self.description = description

    def destroy(self) -> None:
        """Detach the probe."""
        if self._ptr:
            load_library().bpf_link__destroy(self._ptr)
            self._ptr = None


class BpfObject:
    """A BPF ELF object opened and loaded into the kernel through libbpf."""

    def __init__(self, path: str) -> None:
        self._lib = load_library()
        ctypes.set_errno(0)
        self._ptr: int | None = _check_ptr(
            self._lib.bpf_object__open_file(os.fsencode(path), None), f"open {path}"
        )

    def _obj(self) -> int:
        if not self._ptr:
            raise LibbpfError(errno.EBADF, "BPF object already closed")
        return self._ptr

    def load(self) -> None:
        """Verify and load every program and create every map."""
        _check_rc(self._lib.bpf_object__load(self._obj()), "load BPF object")

    def program(self, name: str) -> int:
        """The ``struct bpf_program *`` of the program called ``name``."""
        ctypes.set_errno(0)
        return _check_ptr(
            self._lib.bpf_object__find_program_by_name(self._obj(), name.encode()), f"program {name}"
        )

    def set_max_entries(self, name: str, entries: int) -> None:
        """Size the map called ``name`` (before :meth:`load`); for a ring buffer, its bytes."""
        ctypes.set_errno(0)
        m = _check_ptr(self._lib.bpf_object__find_map_by_name(self._obj(), name.encode()), f"map {name}")
        _check_rc(self._lib.bpf_map__set_max_entries(m, entries), f"size of map {name}")

    def map_fd(self, name: str) -> int:
        """The file descriptor of the map called ``name`` (after :meth:`load`)."""
        ctypes.set_errno(0)
        m = _check_ptr(self._lib.bpf_object__find_map_by_name(self._obj(), name.encode()), f"map {name}")
        return _check_rc(self._lib.bpf_map__fd(m), f"fd of map {name}")

    def attach(self, program: str) -> Link:
        """Attach a program whose section name says where (kprobe/..., ksyscall/...)."""
        ctypes.set_errno(0)
        ptr = _check_ptr(self._lib.bpf_program__attach(self.program(program)), f"attach {program}")
        return Link(ptr, program)

    def attach_uprobe(
        self, program: str, binary: str, func_name: str | None, *, retprobe: bool, offset: int = 0
    ) -> Link:
        """Attach ``program`` to the entry (or return) of ``func_name`` in ``binary``, all processes.

        Without ``func_name``, ``offset`` is the file offset of the instruction to probe.
        """
        name = func_name.encode() if func_name else None
        opts = _UprobeOpts(sz=ctypes.sizeof(_UprobeOpts), retprobe=retprobe, func_name=name)
        where = func_name or f"{offset:#x}"
        ctypes.set_errno(0)
        ptr = _check_ptr(
            self._lib.bpf_program__attach_uprobe_opts(
                self.program(program), -1, os.fsencode(binary), offset, ctypes.byref(opts)
            ),
            f"attach {program} to {binary}:{where}",
        )
        kind = "uretprobe" if retprobe else "uprobe"
        return Link(ptr, f"{kind} {binary}:{where}")

    def close(self) -> None:
        """Unload programs and maps (idempotent). Links must be destroyed first."""
        if self._ptr:
            self._lib.bpf_object__close(self._ptr)
            self._ptr = None


def map_lookup(fd: int, key: ctypes._CData, value: ctypes._CData) -> None:
    """Read ``value`` for ``key`` from the map behind ``fd``."""
    rc = load_library().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
    if rc < 0:
        err = ctypes.get_errno() or -rc
        raise LibbpfError(err, f"map lookup: {os.strerror(err)}")


def map_update(fd: int, key: ctypes._CData, value: ctypes._CData) -> None:
    """Write ``value`` for ``key`` into the map behind ``fd``."""
    rc = load_library().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), 0)
    if rc < 0:
        err = ctypes.get_errno() or -rc
        raise LibbpfError(err, f"map update: {os.strerror(err)}")
