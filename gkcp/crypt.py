"""Packet encryption compatible with kcp-go 5.6.1 and kcptun (docs/wire.md §2).

``new_crypt(name, key)`` builds one of kcp-go's BlockCrypts by name; the
result's ``.ptr`` is the C ``gk_crypt *`` the packet pipeline uses, so no
packet ever passes through Python.  AES, Blowfish and CAST5 run on
pycryptodome's compiled block functions, called from C through the pointers
its ``*_start_operation`` returns; TEA, XTEA, SM4, Twofish, 3DES and Salsa20
are gkcp's own C (pycryptodome has no TEA/XTEA/SM4/Twofish; its 3DES
measured 0.35x and its Salsa20 0.7x kcp-go's speed, and its Salsa20
allocates per nonce).

``kcptun_key``/``kcptun_crypt`` reproduce kcptun's ``-key``/``-crypt`` flags.
"""
from __future__ import annotations

import hashlib
import os
import weakref
from typing import Any, Callable, Optional, Tuple, Union

import cffi

from ._core import ffi, lib

__all__ = ["BlockCrypt", "CIPHERS", "new_crypt", "kcptun_key", "kcptun_crypt"]

Key = Union[bytes, bytearray, memoryview]

#: Names accepted by :func:`new_crypt` (kcptun's ``-crypt`` names).
CIPHERS = ("none", "xor", "aes", "aes-128", "aes-192", "salsa20", "blowfish",
           "cast5", "3des", "tea", "xtea", "twofish", "sm4")

# kcptun's key cut per name (server/main.go, client/main.go).
_KCPTUN_KEY_BYTES = {"aes": 32, "aes-128": 16, "aes-192": 24, "twofish": 32, "sm4": 16,
                     "blowfish": 32, "cast5": 16, "3des": 24, "tea": 16, "xtea": 16,
                     "salsa20": 32, "xor": 32, "none": 32}

# kcp-go's xor pad: PBKDF2-HMAC-SHA1(key, this salt, 32 iterations, mtuLimit bytes).
_XOR_SALT = b"sH3CIVoF#rWLtJo6"
_MTU_LIMIT = lib.GK_MTU_LIMIT


class _Pycryptodome:
    """One pycryptodome block-cipher module opened in cffi ABI mode: only its
    ``<prefix>_start_operation``/``_stop_operation`` are called from Python,
    once per BlockCrypt; the per-block function is called from C."""

    def __init__(self, module: str, prefix: str) -> None:
        from Crypto.Util._file_system import pycryptodome_filename
        from Crypto.Util._raw_api import extension_suffixes

        self.ffi = cffi.FFI()
        self.ffi.cdef("int %s_start_operation(const uint8_t *key, size_t key_len, void **state);"
                      "int %s_stop_operation(void *state);" % (prefix, prefix))
        dirs, base = module.split(".")[:-1], module.split(".")[-1]
        for suffix in extension_suffixes:
            path = pycryptodome_filename(dirs, base + suffix)
            if os.path.isfile(path):
                break
        else:
            raise ImportError("pycryptodome module %s not found" % module)
        self.lib = self.ffi.dlopen(path)
        self.start = getattr(self.lib, prefix + "_start_operation")
        self.stop = getattr(self.lib, prefix + "_stop_operation")
        self.name = module

    def new_state(self, key: bytes) -> Tuple[int, Callable[[], None]]:
        """Start an operation; return the state's address and its releaser."""
        out = self.ffi.new("void **")
        err = self.start(key, len(key), out)
        if err:
            raise ValueError("%s rejected the key (error %d)" % (self.name, err))
        state = out[0]
        return int(self.ffi.cast("uintptr_t", state)), lambda: self.stop(state)


_pyc_cache: dict = {}


def _pycryptodome(kind: str) -> _Pycryptodome:
    if kind not in _pyc_cache:
        if kind == "aes":
            from Crypto.Util._cpu_features import have_aes_ni
            try:
                if not have_aes_ni():
                    raise ImportError
                mod = _Pycryptodome("Crypto.Cipher._raw_aesni", "AESNI")
            except (ImportError, OSError):
                mod = _Pycryptodome("Crypto.Cipher._raw_aes", "AES")
        else:
            module, prefix = {"blowfish": ("_raw_blowfish", "Blowfish"),
                              "cast5": ("_raw_cast", "CAST")}[kind]
            mod = _Pycryptodome("Crypto.Cipher." + module, prefix)
        _pyc_cache[kind] = mod
    return _pyc_cache[kind]


def _release(ptr: Any, pyc_release: Optional[Callable[[], None]]) -> None:
    lib.gk_crypt_free(ptr)
    # The C side borrows pycryptodome's state, so it goes second.
    if pyc_release is not None:
        pyc_release()


class BlockCrypt:
    """A configured cipher, immutable and shareable by every session of a
    socket.

    ``ptr`` is the ``gk_crypt *`` for the C pipeline; it stays valid until
    :meth:`close` (or garbage collection of this object), so whoever stores
    ``ptr`` must also hold a reference to this object and must not use
    ``ptr`` after closing it.
    """

    def __init__(self, name: str, ptr: Any, pyc_release: Optional[Callable[[], None]] = None) -> None:
        if ptr == ffi.NULL:
            if pyc_release is not None:
                pyc_release()
            raise MemoryError("gk_crypt allocation failed")
        self.name = name
        self.ptr = ptr
        self.block_size: int = lib.gk_crypt_block_size(ptr)
        self._finalizer = weakref.finalize(self, _release, ptr, pyc_release)
        # Not at interpreter exit: a session flushing during shutdown may
        # still use ptr, and the process's memory goes away anyway.
        self._finalizer.atexit = False

    def close(self) -> None:
        """Free the C cipher now (idempotent)."""
        self._finalizer()
        self.ptr = ffi.NULL

    def __enter__(self) -> "BlockCrypt":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<BlockCrypt %s%s>" % (self.name, "" if self.ptr != ffi.NULL else " closed")

    def _live(self) -> Any:
        if self.ptr == ffi.NULL:
            raise ValueError("BlockCrypt is closed")
        return self.ptr

    def seal(self, packet: Key, nonce: Optional[bytes] = None) -> bytes:
        """Encrypt one packet (its first 20 bytes are overwritten by nonce and
        CRC).  With ``nonce`` given the output is deterministic (tests);
        otherwise a fresh random nonce is used.  The per-packet path of a
        session does this in C; this is for tests and tools."""
        ptr = self._live()
        if len(packet) < lib.GK_CRYPT_HEADER:
            raise ValueError("packet shorter than the %d-byte crypto header" % lib.GK_CRYPT_HEADER)
        if nonce is None:
            nonce = os.urandom(lib.GK_NONCE_SIZE)
        if len(nonce) != lib.GK_NONCE_SIZE:
            raise ValueError("nonce must be %d bytes" % lib.GK_NONCE_SIZE)
        buf = bytearray(packet)
        lib.gk_crypt_seal(ptr, nonce, ffi.from_buffer(buf), len(buf))
        return bytes(buf)

    def open(self, packet: Key) -> Optional[bytes]:
        """Decrypt one packet; the whole plaintext (header included) if its
        CRC matches, else None."""
        ptr = self._live()
        buf = bytearray(packet)
        if lib.gk_crypt_decrypt(ptr, ffi.from_buffer(buf), len(buf)) != 0:
            return None
        return bytes(buf)


def _key_bytes(key: Key) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError("key must be bytes-like, not %s" % type(key).__name__)
    return bytes(key)


def _need(name: str, key: bytes, sizes: Tuple[int, ...]) -> None:
    if len(key) not in sizes:
        raise ValueError("%s key must be %s bytes, got %d"
                         % (name, " or ".join(str(s) for s in sizes), len(key)))


def _new_pycryptodome(name: str, kind: str, key: bytes) -> BlockCrypt:
    address, release = _pycryptodome(kind).new_state(key)
    return BlockCrypt(name, lib.gk_crypt_new_pycryptodome(ffi.cast("void *", address)), release)


def new_crypt(name: str, key: Key) -> BlockCrypt:
    """Build kcp-go's BlockCrypt ``name`` with ``key``, enforcing the key
    sizes of kcp-go's constructors:

    =========== ============================================================
    none        any key (ignored); packets still carry nonce + CRC
    xor         any key (kcp-go derives a 1500-byte pad by PBKDF2)
    aes         16, 24 or 32 bytes: AES-128/192/256
    aes-128     16 bytes;  ``aes-192``: 24 bytes
    salsa20     any key: like kcp-go, copied into 32 zero bytes (shorter
                keys are zero-padded, longer ones truncated)
    blowfish    1 to 56 bytes
    cast5       16 bytes;  ``3des``: 24 bytes (K1, K2, K3)
    tea, xtea   16 bytes (kcp-go's TEA runs 16 rounds)
    twofish     16, 24 or 32 bytes;  ``sm4``: 16 bytes
    =========== ============================================================

    Raises TypeError for a non-str name or non-bytes key, ValueError for an
    unknown name or a key of the wrong size (the message names the sizes).
    """
    if not isinstance(name, str):
        raise TypeError("cipher name must be str, not %s" % type(name).__name__)
    key = _key_bytes(key)
    if name == "none":
        return BlockCrypt(name, lib.gk_crypt_new_none())
    if name == "xor":
        pad = hashlib.pbkdf2_hmac("sha1", key, _XOR_SALT, 32, _MTU_LIMIT)
        return BlockCrypt(name, lib.gk_crypt_new_xor(pad))
    if name in ("aes", "aes-128", "aes-192"):
        _need(name, key, {"aes": (16, 24, 32), "aes-128": (16,), "aes-192": (24,)}[name])
        return _new_pycryptodome(name, "aes", key)
    if name == "salsa20":
        return BlockCrypt(name, lib.gk_crypt_new_salsa20(key[:32].ljust(32, b"\0")))
    if name == "blowfish":
        if not 1 <= len(key) <= 56:
            raise ValueError("blowfish key must be 1 to 56 bytes, got %d" % len(key))
        # Blowfish uses its key bytes cyclically, so a 1-3 byte key equals
        # itself repeated to at least 4 bytes, the shortest pycryptodome takes.
        return _new_pycryptodome(name, "blowfish", key * -(-4 // len(key)))
    if name == "cast5":
        _need(name, key, (16,))
        return _new_pycryptodome(name, "cast5", key)
    if name == "3des":
        _need(name, key, (24,))
        return BlockCrypt(name, lib.gk_crypt_new_3des(key))
    if name == "tea":
        _need(name, key, (16,))
        return BlockCrypt(name, lib.gk_crypt_new_tea(key, 16))
    if name == "xtea":
        _need(name, key, (16,))
        return BlockCrypt(name, lib.gk_crypt_new_xtea(key))
    if name == "sm4":
        _need(name, key, (16,))
        return BlockCrypt(name, lib.gk_crypt_new_sm4(key))
    if name == "twofish":
        _need(name, key, (16, 24, 32))
        return BlockCrypt(name, lib.gk_crypt_new_twofish(key, len(key)))
    raise ValueError("unknown cipher %r; expected one of: %s" % (name, ", ".join(CIPHERS)))


def kcptun_key(passphrase: Union[str, bytes]) -> bytes:
    """kcptun's 32-byte key: PBKDF2-HMAC-SHA1(passphrase, b"kcp-go", 4096)."""
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    if not isinstance(passphrase, (bytes, bytearray, memoryview)):
        raise TypeError("passphrase must be str or bytes, not %s" % type(passphrase).__name__)
    return hashlib.pbkdf2_hmac("sha1", bytes(passphrase), b"kcp-go", 4096, 32)


def kcptun_crypt(name: str, passphrase: Union[str, bytes]) -> BlockCrypt:
    """The BlockCrypt kcptun 20210922 builds for ``-crypt name -key
    passphrase``: kcptun's key cut for the name (e.g. first 16 bytes for
    ``aes-128``, all 32 for ``aes``).  Like kcptun, an unknown name silently
    means ``aes`` (AES-256), so a typo still talks to a kcptun peer given
    the same typo."""
    if not isinstance(name, str):
        raise TypeError("cipher name must be str, not %s" % type(name).__name__)
    if name not in _KCPTUN_KEY_BYTES:
        name = "aes"
    return new_crypt(name, kcptun_key(passphrase)[:_KCPTUN_KEY_BYTES[name]])
