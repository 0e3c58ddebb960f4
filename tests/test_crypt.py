"""Packet encryption (csrc/crypt.c, gkcp/crypt.py) against kcp-go 5.6.1.

Known answers come from three places: published test vectors for the ciphers
gkcp implements itself, pycryptodome's Python API for the ones it borrows,
and packets sealed by kcp-go's own BlockCrypts (tests/go/cryptvec).
"""
import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from gkcp._core import ffi, lib
from gkcp.bench.gobuild import build_go_program
from helpers import C_TESTS, CSRC, build_sanitized, run_sanitized
from gkcp.crypt import CIPHERS, kcptun_crypt, kcptun_key, new_crypt

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
IV = bytes.fromhex("a7734f9c12ac1b01a415f2c1fc78e66b")
KEY32 = bytes(range(32))
KEY_SIZE = {"none": 32, "xor": 32, "aes": 32, "aes-128": 16, "aes-192": 24, "salsa20": 32,
            "blowfish": 32, "cast5": 16, "3des": 24, "tea": 16, "xtea": 16, "twofish": 32,
            "sm4": 16}


@pytest.fixture(scope="session")
def kcp_go_vectors():
    """kcp-go-sealed packets and Go block encryptions.  No Go toolchain is a
    failure, not a skip: these are the compatibility evidence."""
    binary = build_go_program(TESTS / "go" / "cryptvec")
    out = subprocess.run([binary], check=True, capture_output=True, timeout=60).stdout
    return json.loads(out)


def framed(nonce: bytes, packet: bytes) -> bytes:
    """The plaintext kcp-go encrypts: nonce, CRC-32 of bytes 20.., payload."""
    body = packet[20:]
    return nonce + struct.pack("<I", zlib.crc32(body)) + body


# ---- kcp-go byte equality ---------------------------------------------------

def test_kcptun_key_matches_wire_md_and_go(kcp_go_vectors):
    expected = "25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444"
    assert kcptun_key("it's a secrect").hex() == expected
    assert kcptun_key(b"it's a secrect").hex() == expected
    assert kcp_go_vectors["kcptun_key"] == expected


@pytest.mark.parametrize("name", CIPHERS)
def test_seal_and_open_match_kcp_go(kcp_go_vectors, name):
    vectors = [v for v in kcp_go_vectors["packets"] if v["name"] == name]
    assert len(vectors) >= 8
    for v in vectors:
        if v["kcptun"] is not None:
            crypt = kcptun_crypt(name, v["kcptun"])
        else:
            crypt = new_crypt(name, bytes.fromhex(v["key"]))
        nonce, plain = bytes.fromhex(v["nonce"]), bytes.fromhex(v["plain"])
        sealed = bytes.fromhex(v["sealed"])
        assert crypt.seal(plain, nonce) == sealed, (name, len(plain), v["key"])
        assert crypt.open(sealed) == framed(nonce, plain)
        crypt.close()


def test_own_block_ciphers_match_go(kcp_go_vectors):
    ctor = {"tea16": "tea", "xtea": "xtea", "sm4": "sm4", "twofish": "twofish"}
    seen = set()
    for v in kcp_go_vectors["blocks"]:
        crypt = new_crypt(ctor[v["cipher"]], bytes.fromhex(v["key"]))
        data = bytes.fromhex(v["in"])
        out = ffi.new("uint8_t[]", len(data))
        lib.gk_crypt_ecb(crypt.ptr, data, out, len(data))
        assert ffi.buffer(out)[:].hex() == v["out"], v
        seen.add(v["cipher"])
    assert seen == set(ctor)


def test_reference_facts():
    # pycryptodome (4.4.0 here) lacks these, hence gkcp's own C
    import importlib
    for missing in ("Twofish", "SM4", "TEA", "XTEA"):
        with pytest.raises(ImportError):
            importlib.import_module("Crypto.Cipher." + missing)
    # "none" still frames: nonce and CRC in clear, payload untouched
    packet, nonce = os.urandom(64), os.urandom(16)
    assert new_crypt("none", b"").seal(packet, nonce) == framed(nonce, packet)


# ---- published vectors for gkcp's own ciphers -------------------------------

def ecb(ptr, block_hex: str) -> str:
    data = bytes.fromhex(block_hex)
    out = ffi.new("uint8_t[]", len(data))
    lib.gk_crypt_ecb(ptr, data, out, len(data))
    lib.gk_crypt_free(ptr)
    return ffi.buffer(out)[:].hex()


@pytest.mark.parametrize("rounds,key,pt,ct", [
    # golang.org/x/crypto/tea's vectors (from the Ironclad test vectors)
    (64, "00" * 16, "0000000000000000", "41ea3a0a94baa940"),
    (64, "ff" * 16, "ffffffffffffffff", "319bbefb016abdb2"),
    (16, "00" * 16, "0000000000000000", "ed285da1455b33c1"),
])
def test_tea_published(rounds, key, pt, ct):
    assert ecb(lib.gk_crypt_new_tea(bytes.fromhex(key), rounds), pt) == ct


@pytest.mark.parametrize("key,pt,ct", [
    ("000102030405060708090a0b0c0d0e0f", "4142434445464748", "497df3d072612cb5"),
    ("00" * 16, "4142434445464748", "a0390589f8b8efa5"),
])
def test_xtea_published(key, pt, ct):
    assert ecb(lib.gk_crypt_new_xtea(bytes.fromhex(key)), pt) == ct


def test_des_published():
    # the classic FIPS 46 worked example; 3DES with K1 = K2 = K3 is DES
    key = bytes.fromhex("133457799bbcdff1") * 3
    assert ecb(lib.gk_crypt_new_3des(key), "0123456789abcdef") == "85e813540f0ab405"


def test_sm4_published():
    # GB/T 32907-2016, example 1
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert ecb(lib.gk_crypt_new_sm4(key), key.hex()) == "681edf34d206965e86b3e94f536e4246"


@pytest.mark.parametrize("key,ct", [
    # Twofish paper, appendix A.1 (all-zero key and plaintext) and the
    # ECB_TBL.TXT first entries for 192/256-bit keys
    ("00" * 16, "9f589f5cf6122c32b6bfec2f2ae8c35a"),
    ("0123456789abcdeffedcba98765432100011223344556677", "cfd1d2e5a9be9cdf501f13b892bd2248"),
    ("0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff",
     "37527be0052334b89f0cfccae87cfa20"),
    ("00" * 32, "57ff739d4dc92c1bd7fc01700cc8216f"),
])
def test_twofish_published(key, ct):
    k = bytes.fromhex(key)
    assert ecb(lib.gk_crypt_new_twofish(k, len(k)), "00" * 16) == ct


def test_twofish_rejects_bad_key_length():
    assert lib.gk_crypt_new_twofish(bytes(20), 20) == ffi.NULL


def new_nonce_gen(seed: bytes):
    ng = ffi.new("gk_nonce *")
    lib.gk_nonce_init(ng, seed)
    return ng


def draw(ng, n: int) -> bytes:
    out = ffi.new("uint8_t[16]")
    chunks = []
    for _ in range(n):
        lib.gk_nonce_next(ng, out)
        chunks.append(ffi.buffer(out)[:])
    return b"".join(chunks)


def test_nonce_generator_is_rfc8439_chacha20():
    # RFC 8439 appendix A.1, test vectors 1 and 2 (zero key, blocks 0 and 1)
    stream = draw(new_nonce_gen(bytes(32)), 8)
    assert stream[:16].hex() == "76b8e0ada0f13d90405d6ae55386bd28"
    assert stream[64:80].hex() == "9f07e7be5551387a98ba977c732d080d"
    # and the same keystream as pycryptodome's ChaCha20 (64-bit counter form)
    from Crypto.Cipher import ChaCha20
    seed = os.urandom(32)
    assert draw(new_nonce_gen(seed), 300) == ChaCha20.new(key=seed, nonce=bytes(8)).encrypt(bytes(4800))


def test_nonce_never_repeats_over_a_million_draws():
    ng = new_nonce_gen(os.urandom(32))
    out = ffi.new("uint8_t[16]")
    buf = ffi.buffer(out)
    seen = set()
    for _ in range(1_000_000):
        lib.gk_nonce_next(ng, out)
        seen.add(buf[:])
    assert len(seen) == 1_000_000


def test_salsa20_matches_pycryptodome():
    from Crypto.Cipher import Salsa20
    crypt = new_crypt("salsa20", KEY32)
    for n in (20, 21, 71, 72, 73, 519, 520, 521, 1400, 1500, 3000):
        packet, nonce = os.urandom(n), os.urandom(16)
        plain = framed(nonce, packet)
        expected = plain[:8] + Salsa20.new(KEY32, nonce[:8]).encrypt(plain[8:])
        assert crypt.seal(packet, nonce) == expected


@pytest.mark.parametrize("name,module,key_len", [
    ("aes", "AES", 32), ("aes", "AES", 24), ("aes-128", "AES", 16), ("aes-192", "AES", 24),
    ("blowfish", "Blowfish", 32), ("blowfish", "Blowfish", 7), ("cast5", "CAST", 16),
    ("3des", "DES3", 24),
])
def test_pycryptodome_backed_ciphers_match_its_cfb(name, module, key_len):
    import importlib
    mod = importlib.import_module("Crypto.Cipher." + module)
    key = os.urandom(key_len)
    crypt = new_crypt(name, key)
    bs = mod.block_size
    for n in (20, 23, 24, 31, 32, 33, 200, 1400, 1500, 1553, 3001):
        packet, nonce = os.urandom(n), os.urandom(16)
        plain = framed(nonce, packet)
        expected = mod.new(key, mod.MODE_CFB, iv=IV[:bs], segment_size=8 * bs).encrypt(plain)
        sealed = crypt.seal(packet, nonce)
        assert sealed == expected, n
        assert crypt.open(sealed) == plain


# ---- CRC ---------------------------------------------------------------------

def test_crc32_matches_zlib():
    data = os.urandom(5000)
    for n in list(range(0, 300)) + [511, 512, 513, 1023, 1024, 1380, 1400, 1500, 4093]:
        for off in (0, 1, 7):
            chunk = data[off:off + n]
            assert lib.gk_crc32(chunk, len(chunk)) == zlib.crc32(chunk), (n, off)


# ---- framing properties --------------------------------------------------------

def unauthenticated_span(name: str) -> range:
    """Bytes a flip can change without the CRC noticing: all within the
    nonce, which kcp-go neither covers by the CRC nor reads.  8-byte CFB: a
    flip in block 0 alters nonce bytes 0..15 only; salsa20 XORs nonce bytes
    8..15 with the keystream; xor/none leave the nonce bare."""
    if name in ("none", "xor"):
        return range(0, 16)
    if name == "salsa20":
        return range(8, 16)
    if name in ("blowfish", "cast5", "3des", "tea", "xtea"):
        return range(0, 8)
    return range(0)


@pytest.mark.parametrize("name", CIPHERS)
def test_every_single_bit_flip_is_caught_or_harmless(name):
    crypt = new_crypt(name, KEY32[:KEY_SIZE[name]])
    packet = os.urandom(100)
    sealed = crypt.seal(packet, os.urandom(16))
    payload = crypt.open(sealed)[20:]
    opened = set()
    for bit in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        result = crypt.open(tampered)
        if result is not None:
            assert result[20:] == payload, bit
            opened.add(bit // 8)
    assert opened == set(unauthenticated_span(name))


@pytest.mark.parametrize("name", [n for n in CIPHERS if n != "none"])
def test_wrong_key_never_opens(name):
    right = new_crypt(name, KEY32[:KEY_SIZE[name]])
    wrong = new_crypt(name, bytes(reversed(KEY32))[:KEY_SIZE[name]])
    for n in (20, 24, 100, 1400):
        for _ in range(50):
            assert wrong.open(right.seal(os.urandom(n))) is None


@pytest.mark.parametrize("name", CIPHERS)
def test_same_plaintext_encrypts_differently(name):
    crypt = new_crypt(name, KEY32[:KEY_SIZE[name]])
    ng = new_nonce_gen(os.urandom(32))
    packet = os.urandom(1400)
    a, b = bytearray(packet), bytearray(packet)
    lib.gk_crypt_encrypt(crypt.ptr, ng, ffi.from_buffer(a), len(a))
    lib.gk_crypt_encrypt(crypt.ptr, ng, ffi.from_buffer(b), len(b))
    assert a != b
    assert lib.gk_crypt_decrypt(crypt.ptr, ffi.from_buffer(a), len(a)) == 0
    assert lib.gk_crypt_decrypt(crypt.ptr, ffi.from_buffer(b), len(b)) == 0
    assert a[20:] == b[20:] == packet[20:]


@pytest.mark.parametrize("name", CIPHERS)
def test_encrypt_many_equals_one_at_a_time(name):
    crypt = new_crypt(name, KEY32[:KEY_SIZE[name]])
    seed = os.urandom(32)
    many, single = new_nonce_gen(seed), new_nonce_gen(seed)
    for count in (0, 1, 3, 8, 9, 19):
        lens = [20, 21, 23, 24, 25, 36, 1400, 1500, 100, 31, 32, 33, 64, 65, 200, 20, 999, 22, 40][:count]
        plain = [os.urandom(n) for n in lens]
        bufs = [bytearray(p) for p in plain]
        keep = [ffi.from_buffer(b) for b in bufs]
        lib.gk_crypt_encrypt_many(crypt.ptr, many, ffi.new("uint8_t *[]", keep), lens, count)
        for p, b in zip(plain, bufs):
            one = bytearray(p)
            lib.gk_crypt_encrypt(crypt.ptr, single, ffi.from_buffer(one), len(one))
            assert b == one


def test_short_packets_are_refused():
    crypt = new_crypt("aes", KEY32)
    for n in range(20):
        buf = bytearray(n)
        assert lib.gk_crypt_decrypt(crypt.ptr, ffi.from_buffer(buf), n) == -1
    assert crypt.open(bytes(20)) is None


# ---- Python API ------------------------------------------------------------------

def test_key_rules():
    with pytest.raises(TypeError):
        new_crypt("aes", "a string key")
    with pytest.raises(TypeError):
        new_crypt(b"aes", KEY32)
    for name, bad, sizes in [("aes", 20, "16 or 24 or 32"), ("aes-128", 32, "16"),
                             ("aes-192", 16, "24"), ("cast5", 15, "16"), ("3des", 16, "24"),
                             ("tea", 32, "16"), ("xtea", 8, "16"), ("sm4", 32, "16"),
                             ("twofish", 20, "16 or 24 or 32")]:
        with pytest.raises(ValueError, match=sizes):
            new_crypt(name, bytes(bad))
    for bad in (0, 57):
        with pytest.raises(ValueError, match="1 to 56"):
            new_crypt("blowfish", bytes(bad))
    with pytest.raises(ValueError, match="salsa20, blowfish"):
        new_crypt("rot13", KEY32)
    # kcp-go accepts any key for these
    for name in ("none", "xor", "salsa20"):
        for n in (0, 5, 64):
            new_crypt(name, bytes(n)).close()


def test_kcptun_unknown_name_means_aes():
    packet, nonce = os.urandom(200), os.urandom(16)
    assert (kcptun_crypt("chacha", "pw").seal(packet, nonce)
            == kcptun_crypt("aes", "pw").seal(packet, nonce)
            == new_crypt("aes", kcptun_key("pw")).seal(packet, nonce))
    assert kcptun_crypt("chacha", "pw").name == "aes"


def test_close_is_deterministic_and_idempotent():
    crypt = new_crypt("aes", KEY32)
    assert crypt.ptr != ffi.NULL and crypt.block_size == 16
    crypt.close()
    crypt.close()
    assert crypt.ptr == ffi.NULL
    with pytest.raises(ValueError):
        crypt.seal(bytes(40))
    with new_crypt("salsa20", KEY32) as crypt:
        assert crypt.block_size == 0
    assert crypt.ptr == ffi.NULL


# ---- C under sanitizers -----------------------------------------------------------

def test_c_selftest_under_sanitizers(tmp_path):
    exe = build_sanitized(tmp_path / "crypt_selftest", [C_TESTS / "crypt_selftest.c", CSRC / "crypt.c",
                                                         *sorted(CSRC.glob("cipher_*.c"))])
    result = run_sanitized(exe)
    assert result.returncode == 0, result.stdout + result.stderr
