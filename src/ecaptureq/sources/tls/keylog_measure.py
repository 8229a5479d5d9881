"""Measure the structure offsets key logging needs, for one OpenSSL ``libssl`` build.

:func:`measure_offsets` loads the library with ctypes, makes a TLS 1.2 and a TLS 1.3 handshake through it
against a local server (Python's ``ssl``, with a throwaway certificate from the ``openssl`` command), and
takes the secrets from the library's own key log callback (``SSL_CTX_set_keylog_callback``). It then
finds them in the memory of the ``SSL`` and ``SSL_SESSION``: the client random and the TLS 1.3
application secrets in ``struct ssl_st``, the ``SSL_SESSION *`` (``SSL_get_session``) there too, the
master key and the ``SSL_CIPHER *`` (``SSL_SESSION_get0_cipher``) in the session. It checks the result:
``ssl->version`` equals ``SSL_version``, the cipher id equals ``SSL_CIPHER_get_id``, the server and
exporter secrets sit in the slots after the client one, and the handshake traffic secret derived from
the ``handshake_secret`` and ``handshake_traffic_hash`` slots equals the logged one.

``scripts/keylog-offsets [LIBSSL]`` prints the result as an :data:`~ecaptureq.sources.tls.keylog.OFFSETS`
entry. Not used at capture time.
"""

from __future__ import annotations

import ctypes
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ecaptureq.sources.tls.keylog import _MD_SLOT, Offsets, hkdf_expand_label

_SSL_CTRL_SET_MAX_PROTO_VERSION = 124
_SCAN = 16384
_CIPHER_ID_OFFSET = 24  # uint32_t valid; const char *name; const char *stdname; uint32_t id (ssl_local.h)


_LIBC = ctypes.CDLL(None)
_LIBC.malloc_usable_size.restype = ctypes.c_size_t
_LIBC.malloc_usable_size.argtypes = [ctypes.c_void_p]


def _heap_block(address: int, most: int) -> bytes:
    """The bytes of the heap block OpenSSL allocated at ``address``, at most ``most``: the structure's
    fields are all inside it, and reading past its end could leave mapped memory (a block at the top of
    the heap: the process dies of SIGSEGV). glibc's ``malloc_usable_size`` gives the block's size."""
    return ctypes.string_at(address, min(most, _LIBC.malloc_usable_size(address)))


class MeasureError(Exception):
    """The offsets could not be measured (or did not check out)."""


def _library(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    vp, ci = ctypes.c_void_p, ctypes.c_int
    signatures: dict[str, tuple[object, list[object]]] = {
        "TLS_client_method": (vp, []),
        "SSL_CTX_new": (vp, [vp]),
        "SSL_CTX_free": (None, [vp]),
        "SSL_CTX_ctrl": (ctypes.c_long, [vp, ci, ctypes.c_long, vp]),
        "SSL_CTX_set_keylog_callback": (None, [vp, vp]),
        "SSL_new": (vp, [vp]),
        "SSL_free": (None, [vp]),
        "SSL_set_fd": (ci, [vp, ci]),
        "SSL_connect": (ci, [vp]),
        "SSL_version": (ci, [vp]),
        "SSL_get_session": (vp, [vp]),
        "SSL_SESSION_get0_cipher": (vp, [vp]),
        "SSL_CIPHER_get_id": (ctypes.c_uint32, [vp]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _find(memory: bytes, needle: bytes, what: str) -> int:
    at = memory.find(needle)
    if at < 0 or memory.find(needle, at + 1) >= 0:
        raise MeasureError(f"{what}: {'not found' if at < 0 else 'found more than once'}")
    return at


_KEYLOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class _Server:
    """A TLS server on 127.0.0.1 that completes handshakes and waits for the client to close."""

    def __init__(self, directory: Path) -> None:
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass


def measure_offsets(libssl: str) -> Offsets:
    """Measure the offsets of ``libssl`` (see the module). Raises :class:`MeasureError`."""
    lib = _library(libssl)
    with tempfile.TemporaryDirectory() as tmp:
        server = _Server(Path(tmp))
        try:
            return _measure(lib, server.listener.getsockname())
        finally:
            server.listener.close()


def _measure(lib: ctypes.CDLL, address: tuple[str, int]) -> Offsets:
    lines: list[str] = []
    callback = _KEYLOG_CALLBACK(lambda _ssl, line: lines.append(line.decode()))
    keep: list[object] = []

    def handshake(max_version: int) -> tuple[int, dict[str, tuple[bytes, bytes]]]:
        lines.clear()
        ctx = lib.SSL_CTX_new(lib.TLS_client_method())
        lib.SSL_CTX_set_keylog_callback(ctx, ctypes.cast(callback, ctypes.c_void_p))
        lib.SSL_CTX_ctrl(ctx, _SSL_CTRL_SET_MAX_PROTO_VERSION, max_version, None)
        sock = socket.create_connection(address, timeout=10)
        sock.setblocking(True)  # OpenSSL does the I/O: a blocking fd, bounded by the kernel's timeouts
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
        conn = lib.SSL_new(ctx)
        lib.SSL_set_fd(conn, sock.fileno())
        if lib.SSL_connect(conn) != 1:
            raise MeasureError(f"handshake (max version {max_version:#x}) failed")
        keep.extend((sock, ctx))
        logged = {}
        for line in lines:
            label, random, secret = line.split()
            logged[label] = (bytes.fromhex(random), bytes.fromhex(secret))
        return conn, logged

    tls12, keys12 = handshake(0x0303)
    memory = _heap_block(tls12, _SCAN)
    random, master = keys12["CLIENT_RANDOM"]
    if struct.unpack_from("<i", memory, 0)[0] != lib.SSL_version(tls12):
        raise MeasureError("ssl->version is not the first field")
    session = lib.SSL_get_session(tls12)
    session_memory = _heap_block(session, _SCAN // 4)
    cipher = lib.SSL_SESSION_get0_cipher(session)
    cipher_id = struct.unpack("<I", ctypes.string_at(cipher + _CIPHER_ID_OFFSET, 4))[0]
    if cipher_id != lib.SSL_CIPHER_get_id(cipher):
        raise MeasureError("ssl_cipher_st.id is not at offset 24")
    tls13, keys13 = handshake(0x0304)
    memory13 = _heap_block(tls13, _SCAN)
    client_app = _find(memory13, keys13["CLIENT_TRAFFIC_SECRET_0"][1], "client application secret")
    size = len(keys13["CLIENT_TRAFFIC_SECRET_0"][1])
    digest = "sha384" if size == 48 else "sha256"
    handshake_secret = client_app - 7 * _MD_SLOT
    for label, slot in (("SERVER_TRAFFIC_SECRET_0", 1), ("EXPORTER_SECRET", 2)):
        at = client_app + slot * _MD_SLOT
        if memory13[at : at + size] != keys13[label][1]:
            raise MeasureError(f"{label} is not {slot} slot(s) after the client application secret")
    transcript = memory13[client_app - _MD_SLOT : client_app - _MD_SLOT + size]
    secret = memory13[handshake_secret : handshake_secret + size]
    if (
        hkdf_expand_label(secret, b"c hs traffic", transcript, size, digest)
        != keys13["CLIENT_HANDSHAKE_TRAFFIC_SECRET"][1]
    ):
        raise MeasureError("the handshake secret slots are not where struct ssl_st puts them")
    offsets = Offsets(
        ssl_version=0,
        client_random=_find(memory, random, "client random"),
        session=_find(memory, struct.pack("<Q", session), "session pointer"),
        handshake_secret=handshake_secret,
        master_key=_find(session_memory, master, "master key"),
        session_cipher=_find(session_memory, struct.pack("<Q", cipher), "cipher pointer"),
        cipher_id=_CIPHER_ID_OFFSET,
    )
    if memory13[offsets.client_random : offsets.client_random + 32] != keys13["CLIENT_TRAFFIC_SECRET_0"][0]:
        raise MeasureError("the client random of the TLS 1.3 handshake is elsewhere")
    for conn in (tls12, tls13):
        lib.SSL_free(conn)
    return offsets


def main(argv: list[str]) -> int:
    """``python -m ecaptureq.sources.tls.keylog_measure [LIBSSL]``: print an OFFSETS entry."""
    from ecaptureq.sources.tls.keylog import detect_version
    from ecaptureq.sources.tls.locate import find_libssl

    libssl = find_libssl(argv[0] if argv else None)
    try:
        offsets = measure_offsets(libssl)
    except (MeasureError, OSError, subprocess.SubprocessError) as exc:
        print(f"keylog-offsets: {libssl}: {exc}", file=sys.stderr)
        return 1
    print(f"# {libssl}")
    print(f'"{detect_version(libssl)}": {offsets!r},')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
