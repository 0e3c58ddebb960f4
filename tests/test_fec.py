"""Reed-Solomon code and kcp-go FEC framing.

Reference data comes from tests/go/fecvec, built here from Debian's
klauspost/reedsolomon and kcp-go: parity of random shards, and every packet
a real kcp-go FEC session writes.  A missing Go toolchain fails these tests.
"""
import itertools
import json
import os
import random
import struct
import subprocess

import pytest

from gkcp._core import ffi, lib
from gkcp.bench.gobuild import build_go_program
from helpers import C_TESTS, CSRC, build_sanitized, cbuf, core_stat, run_sanitized

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ["portable", "avx2", "gfni", "gfni512"]


@pytest.fixture(scope="session")
def fecvec():
    return build_go_program("fecvec")


def run_json(binary, *args):
    return json.loads(subprocess.check_output([binary, *map(str, args)], timeout=60))


@pytest.fixture
def kernel_restored():
    before = ffi.string(lib.gk_gf_kernel_name())
    yield
    assert lib.gk_gf_set_kernel(before) == 0


def supported_kernels():
    return [k for k in KERNELS if lib.gk_gf_kernel_supported(k.encode())]


# ---- Reed-Solomon --------------------------------------------------------

class Codec:
    def __init__(self, ds, ps):
        self.ds, self.ps, self.n = ds, ps, ds + ps
        self.rs = lib.gk_rs_new(ds, ps)
        assert self.rs != ffi.NULL

    def close(self):
        lib.gk_rs_free(self.rs)

    def encode(self, data, size):
        bufs = [cbuf(d) for d in data]
        bufs += [ffi.new("uint8_t[]", size) for _ in range(self.ps)]
        lib.gk_rs_encode(self.rs, ffi.new("uint8_t *[]", bufs), size)
        return [bytes(ffi.buffer(b)) for b in bufs]

    def reconstruct(self, shards, lost, size, parity=True):
        bufs, present = [], ffi.new("uint8_t[]", self.n)
        for k, s in enumerate(shards):
            if k in lost:
                bufs.append(ffi.new("uint8_t[]", size) if (k < self.ds or parity) else ffi.NULL)
            else:
                bufs.append(cbuf(s))
                present[k] = 1
        rc = lib.gk_rs_reconstruct(self.rs, ffi.new("uint8_t *[]", bufs), present, size)
        return rc, [bytes(ffi.buffer(b, size)) if b != ffi.NULL else None for b in bufs]


def test_parity_rows_match_wire_doc():
    def rows(ds, ps):
        c = Codec(ds, ps)
        m = ffi.new("uint8_t[]", ds * ps)
        lib.gk_rs_parity_matrix(c.rs, m)
        c.close()
        return [list(m)[r * ds:(r + 1) * ds] for r in range(ps)]
    assert rows(3, 2) == [[1, 1, 1], [15, 8, 6]]
    assert rows(2, 1) == [[3, 2]]
    assert rows(1, 1) == [[1]]
    assert rows(10, 3)[0] == [129, 150, 175, 184, 210, 196, 254, 232, 3, 2]


def test_shapes_accepted():
    for ds, ps, ok in [(1, 1, 1), (255, 1, 1), (128, 128, 1), (1, 255, 1), (0, 1, 0),
                       (1, 0, 0), (200, 57, 0), (-1, 3, 0)]:
        assert lib.gk_fec_shape_ok(ds, ps) == ok
        rs = lib.gk_rs_new(ds, ps)
        assert (rs != ffi.NULL) == bool(ok)
        lib.gk_rs_free(rs)
        enc = lib.gk_fec_encoder_new(ds, ps)
        assert (enc != ffi.NULL) == bool(ok)
        lib.gk_fec_encoder_free(enc)


def test_codecs_are_shared():
    a, b = lib.gk_rs_new(10, 3), lib.gk_rs_new(10, 3)
    c = lib.gk_rs_new(3, 10)
    assert a == b and a != c
    lib.gk_rs_free(a)
    assert lib.gk_rs_data_shards(b) == 10 and lib.gk_rs_parity_shards(b) == 3
    lib.gk_rs_free(b)
    lib.gk_rs_free(c)


def test_parity_matches_klauspost(fecvec, kernel_restored):
    vectors = run_json(fecvec, "rs", 20261125)
    shapes = {(v["ds"], v["ps"]) for v in vectors}
    assert {(10, 3), (3, 2), (1, 1), (20, 10), (128, 127)} <= shapes
    for kernel in supported_kernels():
        assert lib.gk_gf_set_kernel(kernel.encode()) == 0
        for v in vectors:
            shards = [bytes.fromhex(s) for s in v["shards"]]
            c = Codec(v["ds"], v["ps"])
            assert c.encode(shards[:v["ds"]], v["size"]) == shards, (kernel, v["ds"], v["ps"])
            c.close()


def check_patterns(ds, ps, patterns, size, rng, parity=True):
    c = Codec(ds, ps)
    data = [rng.randbytes(size) for _ in range(ds)]
    shards = c.encode(data, size)
    for lost in patterns:
        rc, got = c.reconstruct(shards, set(lost), size, parity)
        assert rc == 0
        for k in range(c.n):
            if k < ds or parity or k not in lost:
                assert got[k] == shards[k], (ds, ps, lost, k)
    c.close()


def test_reconstruct_every_pattern_4_2(kernel_restored):
    rng = random.Random(42)
    patterns = [p for r in range(3) for p in itertools.combinations(range(6), r)]
    for kernel in supported_kernels():
        assert lib.gk_gf_set_kernel(kernel.encode()) == 0
        for size in (1, 37, 1400):
            check_patterns(4, 2, patterns, size, rng)
        check_patterns(4, 2, patterns, 64, rng, parity=False)


@pytest.mark.parametrize("ds,ps", [(10, 3), (20, 10)])
def test_reconstruct_random_patterns(ds, ps):
    rng = random.Random(ds)
    n = ds + ps
    patterns = [rng.sample(range(n), rng.randrange(1, ps + 1)) for _ in range(60)]
    patterns += [list(range(ps)), list(range(ds, n))]
    check_patterns(ds, ps, patterns, rng.randrange(1, 1500), rng)
    # the same patterns again come from the inverse cache
    check_patterns(ds, ps, patterns, 1408, rng)


def test_reconstruct_needs_ds_shards():
    c = Codec(4, 2)
    shards = c.encode([bytes([i]) * 8 for i in range(4)], 8)
    rc, _ = c.reconstruct(shards, {0, 1, 5}, 8)
    assert rc == -1
    c.close()


def test_bench_entry_point():
    c = Codec(10, 3)
    bufs = [ffi.new("uint8_t[]", 1400) for _ in range(13)]
    arr = ffi.new("uint8_t *[]", bufs)
    present = ffi.new("uint8_t[]", [0, 0, 0] + [1] * 10)
    lib.gk_rs_bench(c.rs, 0, arr, present, 1400, 3)
    lib.gk_rs_bench(c.rs, 1, arr, present, 1400, 3)
    c.close()


# ---- framing -------------------------------------------------------------

class Encoder:
    def __init__(self, ds, ps):
        self.enc = ffi.gc(lib.gk_fec_encoder_new(ds, ps), lib.gk_fec_encoder_free)
        assert self.enc != ffi.NULL
        self.pp = ffi.new("uint8_t *const **")
        self.plen = ffi.new("int *")

    def encode(self, payload):
        """Returns (data packet, [parity packets]) starting at the FEC header."""
        n = 8 + len(payload)
        buf = ffi.new("uint8_t[]", n)
        ffi.memmove(buf + 8, payload, len(payload))
        r = lib.gk_fec_encode(self.enc, buf, n, self.pp, self.plen)
        assert r >= 0
        parity = [bytes(ffi.buffer(self.pp[0][i], self.plen[0])) for i in range(r)]
        return bytes(buf), parity


class Decoder:
    def __init__(self, ds, ps):
        self.dec = ffi.gc(lib.gk_fec_decoder_new(ds, ps), lib.gk_fec_decoder_free)
        assert self.dec != ffi.NULL
        self.out = ffi.new("gk_fec_recovered[]", lib.GK_FEC_MAX_RECOVERED)

    def feed(self, pkt, now=0):
        r = lib.gk_fec_decode(self.dec, pkt, len(pkt), now, self.out, lib.GK_FEC_MAX_RECOVERED)
        if r < 0:
            return r
        return [bytes(ffi.buffer(self.out[i].data, self.out[i].len)) for i in range(r)]

    def shape(self):
        ds, ps = ffi.new("int *"), ffi.new("int *")
        confirmed = lib.gk_fec_decoder_shape(self.dec, ds, ps)
        return ds[0], ps[0], confirmed

    def queued(self):
        return lib.gk_fec_decoder_queued(self.dec)


def kcp_like(rng, sn, size=None):
    """A KCP PUSH segment: same conv/cmd/len for all, like a bulk stream."""
    size = rng.randrange(0, 1300) if size is None else size
    return struct.pack("<IBBHIIII", 0x1234, 81, 0, 32, 1000 + sn, sn, 0, size) + rng.randbytes(size)


def stream(ds, ps, count, rng, size=None, start=0):
    """[(seqid, packet, payload or None for parity)] from our encoder."""
    enc = Encoder(ds, ps)
    if start:
        lib.gk_fec_encoder_set_next(enc.enc, start)
    out = []
    for sn in range(count):
        payload = kcp_like(rng, sn, size)
        data, parity = enc.encode(payload)
        out.append((struct.unpack_from("<I", data)[0], data, payload))
        for p in parity:
            out.append((struct.unpack_from("<I", p)[0], p, None))
    return out


@pytest.mark.parametrize("ds,ps,seed", [(10, 3, 1), (3, 2, 2), (1, 1, 3), (20, 10, 4)])
def test_encoder_matches_kcp_go(fecvec, ds, ps, seed):
    captured = run_json(fecvec, "kcp", seed, ds, ps)
    packets = [bytes.fromhex(p) for p in captured["packets"]]
    assert len(packets) >= 2 * (ds + ps)
    enc = Encoder(ds, ps)
    want = []
    for p in packets:
        if struct.unpack_from("<H", p, 4)[0] == 0xF1:
            data, parity = enc.encode(p[8:])
            want.append(data)
            want.extend(parity)
    assert want == packets


def test_encoder_framing():
    enc = Encoder(3, 2)
    out = []
    for size in (5, 40, 17):
        data, parity = enc.encode(bytes([size]) * size)
        out.append(data)
        assert struct.unpack_from("<IHH", data) == (len(out) - 1, 0xF1, size + 2)
    assert len(parity) == 2
    for i, p in enumerate(parity):
        assert len(p) == 48  # longest data packet
        assert struct.unpack_from("<IH", p) == (3 + i, 0xF2)
    buf = ffi.new("uint8_t[]", 1501)
    assert lib.gk_fec_encode(enc.enc, buf, 8, enc.pp, enc.plen) == -1
    assert lib.gk_fec_encode(enc.enc, buf, 1501, enc.pp, enc.plen) == -1


def test_seqid_wraps_at_group_boundary():
    n = 13
    paws = 0xFFFFFFFF // n * n
    rng = random.Random(5)
    pkts = stream(10, 3, 30, rng, start=paws - 2 * n)
    seqs = [s for s, _, _ in pkts]
    assert seqs[:2 * n] == list(range(paws - 2 * n, paws))
    assert seqs[2 * n:] == list(range(len(seqs) - 2 * n))
    # the decoder follows the wrap: lose one data shard in each group
    dec = Decoder(10, 3)
    lost = {paws - 2 * n + 4, paws - n + 9, 3}
    got = []
    for s, p, _ in pkts:
        if s not in lost:
            got += dec.feed(p)
    want = [pl for s, _, pl in pkts if s in lost]
    assert got == want


def deliver(dec, pkts, drop=(), order=None, now=0):
    got = []
    seq = [pkts[i] for i in (order or range(len(pkts)))]
    for s, p, _ in seq:
        if s in drop:
            continue
        r = dec.feed(p, now)
        assert r != -1
        got += r
    return got


def test_decoder_in_order_loss():
    rng = random.Random(6)
    pkts = stream(10, 3, 100, rng)
    lost = {s for s, _, pl in pkts if pl is not None and rng.random() < 0.1}
    # at most 3 losses per group are recoverable; keep the pattern recoverable
    by_group = {}
    for s in sorted(lost):
        by_group.setdefault(s // 13, []).append(s)
    lost = {s for g in by_group.values() for s in g[:3]}
    before = core_stat("FECRecovered")
    got = deliver(Decoder(10, 3), pkts, drop=lost)
    want = [pl for s, _, pl in pkts if s in lost]
    assert sorted(got) == sorted(want) and len(got) == len(lost) > 0
    assert core_stat("FECRecovered") - before == len(lost)


def test_decoder_reordered_duplicated_parity_only():
    rng = random.Random(7)
    pkts = stream(3, 2, 30, rng)
    # group 0: data 1 and parity 3 lost, the rest reordered and duplicated;
    # the rebuild happens when the ds-th shard arrives
    dec = Decoder(3, 2)
    order = [2, 4, 4, 0, 0]
    got = deliver(dec, pkts, order=order)
    assert got == [pkts[1][2]]
    # group 1: only parity plus one data shard: 2 data shards rebuilt
    got = deliver(dec, pkts, order=[9, 8, 5])
    assert sorted(got) == sorted([pkts[6][2], pkts[7][2]])
    # parity alone never reaches ds shards: nothing, and it is counted
    before = core_stat("FECParityShards")
    assert deliver(dec, pkts, order=[13, 14]) == []
    assert core_stat("FECParityShards") - before == 2
    # complete data: nothing rebuilt, late parity just waits in the queue
    assert deliver(dec, pkts, order=[15, 16, 17, 18, 19]) == []


def test_decoder_expiry_and_queue_limit():
    rng = random.Random(8)
    pkts = stream(3, 2, 80, rng)
    dec = Decoder(3, 2)
    # lone parity shards of distinct groups pile up to 3*n, oldest data dropped
    loners = [pkts[i] for i in range(0, 100, 5)]  # first data shard of every group
    before = core_stat("FECShortShards")
    for s, p, _ in loners:
        dec.feed(p, 0)
    assert dec.queued() == 15
    assert core_stat("FECShortShards") - before == len(loners) - 15
    # older than 60 s they expire; at exactly 60 s they do not
    dec.feed(pkts[101][1], 60000)
    assert dec.queued() == 15
    dec.feed(pkts[106][1], 60001)
    assert dec.queued() == 2


def test_recovered_size_checked():
    rng = random.Random(9)
    pkts = stream(2, 1, 2, rng, size=40)
    parity = bytearray(pkts[2][1])
    # flip the rebuilt shard's size field out of range
    parity[6] ^= 0xFF
    parity[7] ^= 0xFF
    dec = Decoder(2, 1)
    before = core_stat("FECErrs")
    assert dec.feed(pkts[0][1]) == []
    assert dec.feed(bytes(parity)) == []
    assert core_stat("FECErrs") - before == 1


def test_malformed_headers():
    dec = Decoder(10, 3)
    before = core_stat("InErrs")
    assert dec.feed(b"\x00\x00\x00\x00\xf1\x00\x02") == -1
    assert dec.feed(b"\x00\x00\x00\x00\xf3\x00\x02\x00") == -1
    assert dec.feed(b"\x00\x00\x00\x00\xf1\x00\x02\x00" + bytes(1500)) == -1
    assert core_stat("InErrs") - before == 3
    assert dec.feed(b"\x00\x00\x00\x00\xf2\x00\x02\x00") == []


# ---- shape safety (docs/wire.md §3.4) --------------------------------------

def similar_stream(count, rng, ds=10, ps=3):
    """Bulk-transfer-like packets: equal lengths, same conv/cmd/len, so
    parity looks like a plausible KCP packet."""
    return stream(ds, ps, count, rng, size=1000)


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.3])
def test_unconfigured_decoder_never_misrecovers(loss):
    rng = random.Random(int(loss * 100) + 11)
    pkts = similar_stream(400, rng)
    originals = {s: pl for s, _, pl in pkts if pl is not None}
    lost = {s for s, _, _ in pkts if rng.random() < loss}
    for ds, ps in [(0, 0), (1, 1), (3, 2), (20, 10)]:
        dec = Decoder(ds, ps)
        before = core_stat("FECShapeErrs")
        got = deliver(dec, pkts, drop=lost)
        # every payload is a real one (a packet evicted from the short
        # queue of the unsettled shape may be rebuilt although it arrived)
        for r in got:
            assert r in originals.values(), (ds, ps)
        assert core_stat("FECShapeErrs") > before
        if loss:
            # autotune learned 10/3 and recovered with it afterwards
            assert dec.shape() == (10, 3, 1)
            assert len(got) > 0


def test_matching_shape_recovers_only_losses():
    rng = random.Random(14)
    pkts = similar_stream(400, rng)
    originals = {s: pl for s, _, pl in pkts if pl is not None}
    lost = {s for s, _, _ in pkts if rng.random() < 0.1}
    before = core_stat("FECShapeErrs")
    got = deliver(Decoder(10, 3), pkts, drop=lost)
    assert core_stat("FECShapeErrs") == before
    assert got and set(got) <= {originals[s] for s in lost if s in originals}


def test_wrong_shape_from_first_packet_in_order():
    """kcp-go's lazy 1/1 decoder turns parity into data here; ours waits."""
    rng = random.Random(12)
    pkts = similar_stream(13, rng)
    for ds, ps in [(0, 0), (1, 1)]:
        dec = Decoder(ds, ps)
        # data 0..9 lost but 0 and 1, then the parity: a 1/1 view sees
        # complete-looking pairs; nothing may come out
        got = deliver(dec, pkts, drop=set(range(2, 10)))
        assert got == []
        assert dec.shape()[2] == 0


def test_confirmed_shape_recovers_and_mismatch_unconfirms():
    rng = random.Random(13)
    pkts = similar_stream(50, rng)
    dec = Decoder(10, 3)
    assert dec.shape() == (10, 3, 1)
    assert deliver(dec, pkts, drop={3}) == [pkts[3][2]]
    # a peer that switches to 3/2 mid-session: the first contradicting
    # packet unconfirms; autotune accepts 3/2 once no run of the old shape
    # is left in its 258-seqid window
    other = stream(3, 2, 200, rng, size=1000, start=1000)
    got = deliver(dec, other[:3], drop={1001})
    assert got == [] and dec.shape()[2] == 0
    got = deliver(dec, other[3:], drop={1301})
    assert dec.shape() == (3, 2, 1)
    assert got == [pl for s, _, pl in other if s == 1301]


# ---- sanitizers ----------------------------------------------------------

def test_c_selftest_under_sanitizers(tmp_path):
    """gf256/rs/fec C with exact-size malloc'd buffers under ASan+UBSan, every
    kernel the CPU has: catches tail over-reads that cffi's pooled buffers
    would hide."""
    exe = build_sanitized(tmp_path / "fec_selftest", [C_TESTS / "fec_selftest.c"]
                          + [CSRC / f for f in ("gf256.c", "rs.c", "fec.c", "snmp.c")])
    r = run_sanitized(exe, unset=["GKCP_GF_KERNEL"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")
