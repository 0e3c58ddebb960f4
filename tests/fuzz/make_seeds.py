"""Seed corpus for tests/fuzz/fuzz_input.c: valid KCP conversations, FEC groups
with real parity (made by gkcp's own encoder) and crypto packets, in the
harness's input layout (see the comment at the top of fuzz_input.c).

    python tests/fuzz/make_seeds.py OUTDIR

writes OUTDIR/<target>/<name> for the targets pipe, kcp, fec, crypt and replay.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from gkcp._core import ffi, lib  # noqa: E402

NCIPHERS = 7
FEC_SHAPES = [(0, 0), (10, 3), (3, 2)]   # the pipeline target's cfg byte order
CONV_DIAL = 0x01020304                   # the harness dials with this conv
PUSH, ACK, WASK, WINS = 81, 82, 83, 84


def seg(conv, cmd, sn, una=0, data=b"", frg=0, wnd=32, ts=0):
    return struct.pack("<IBBHIIII", conv, cmd, frg, wnd, ts, sn, una, len(data)) + data


def length(n):
    return bytes([n]) if n < 255 else bytes([255]) + struct.pack("<H", n)


def datagram(payload, src=0, dialer=False, raw=False):
    op = (4 if dialer else 0) | (src << 3) | (0x40 if raw else 0)
    return bytes([op]) + length(len(payload)) + payload


def replay_last():
    """The harness resends the last sealed datagram to the listener."""
    return bytes([0x80])


def tick(ms16, long=False):
    return bytes([2 | (4 if long else 0), ms16])


def app(call, sess=0, arg=0):
    """call: 0 send, 1 recv, 3 close, 4 configure (these take arg), 5 queries."""
    op = bytes([3 | (call << 2) | (sess << 5)])
    return op if call == 5 else op + bytes([arg])


class FecFramer:
    """kcp-go FEC framing of a stream of KCP packets, with parity."""

    def __init__(self, ds, ps):
        self.enc = lib.gk_fec_encoder_new(ds, ps) if ds else ffi.NULL

    def frame(self, kcp):
        if not self.enc:
            return [kcp]
        buf = ffi.new("uint8_t[]", 8 + len(kcp))
        buf[8:8 + len(kcp)] = kcp
        parity = ffi.new("uint8_t *const **")
        plen = ffi.new("int *")
        n = lib.gk_fec_encode(self.enc, buf, 8 + len(kcp), parity, plen)
        out = [bytes(ffi.buffer(buf, 8 + len(kcp)))]
        for i in range(n):
            out.append(bytes(ffi.buffer(parity[0][i], plen[0])))
        return out

    def close(self):
        if self.enc:
            lib.gk_fec_encoder_free(self.enc)


def conversation(fec, src=1, conv=0x11223344, dialer=False):
    """A peer's side of a short exchange: data, fragments, acks, probes."""
    framer = FecFramer(*fec)
    body = b"hello gkcp " * 9
    kcp_packets = [
        seg(conv, PUSH, 0, data=body),
        seg(conv, PUSH, 1, frg=2, data=b"a" * 300) + seg(conv, PUSH, 2, frg=1, data=b"b" * 300),
        seg(conv, PUSH, 3, data=b"c" * 50),
        seg(conv, ACK, 0, una=4) + seg(conv, WASK, 0, una=4),
        seg(conv, WINS, 0, una=4, wnd=128),
        seg(conv, PUSH, 4, una=1, data=bytes(range(200))),
    ]
    if fec != (0, 0):
        # enough to close a 10/3 group, whose lost shard parity rebuilds
        kcp_packets += [seg(conv, PUSH, sn, una=1, data=bytes([sn]) * (30 + sn)) for sn in range(5, 12)]
    out = b""
    for i, k in enumerate(kcp_packets):
        for j, d in enumerate(framer.frame(k)):
            if not (j == 0 and i == 2 and fec != (0, 0)):
                out += datagram(d, src=src, dialer=dialer)
        out += tick(3)
    framer.close()
    return out


def pipe_seeds():
    seeds = {}
    for fi, fec in enumerate(FEC_SHAPES):
        for ci in range(NCIPHERS):
            cb = fi * NCIPHERS + ci
            for flags in (0x03, 0x3F):
                seeds["pipe-c%d-f%d-%02x" % (ci, fi, flags)] = (
                    bytes([0, cb, flags])
                    + conversation(fec)
                    + app(1, 1, 1) + app(0, 1, 40) + tick(20) + app(1, 1, 0)
                    + conversation(fec, src=0, conv=CONV_DIAL, dialer=True)
                    + app(0, 0, 200) + tick(50) + app(5, 0) + app(3, 1, 4) + tick(255, long=True))
        # spoofed one-datagram sources (more than the fuzz build's pool of
        # 4), replays of sealed datagrams, then a source that proves itself
        push = seg(0x0BADCAFE, PUSH, 0, data=b"spoof")
        seeds["pipe-unproven-f%d" % fi] = (
            bytes([0, fi * NCIPHERS + 6, 0x03])
            + b"".join(datagram(push, src=s) for s in range(8)) + replay_last() + tick(70)
            + datagram(seg(0x0BADCAFE, WINS, 0, wnd=32), src=3) + replay_last() + tick(70)
            + tick(255, long=True))
        seeds["pipe-replace-f%d" % fi] = (
            bytes([0, fi * NCIPHERS, 0x23])
            + conversation(fec, src=2) + conversation(fec, src=2, conv=0x55667788)
            + conversation(fec, src=5) + conversation(fec, src=6) + app(4, 1, 0x0D) + tick(40))
    return seeds


def kcp_seeds():
    c = CONV_DIAL
    ops = b""
    for sn in range(4):
        pkt = seg(c, PUSH, sn, data=bytes([sn]) * (40 + sn))
        ops += bytes([0]) + length(len(pkt)) + pkt
    ops += bytes([3, 30, 5, 6, 20])
    acks = seg(c, ACK, 0, una=1, ts=1) + seg(c, ACK, 2, una=1) + seg(c, WASK, 0) + seg(c, WINS, 0, wnd=4)
    ops += bytes([0x10]) + length(len(acks)) + acks + bytes([4 | 8, 4, 3, 7, 100, 7 | 8, 1])
    frags = seg(c, PUSH, 4, frg=1, data=b"x" * 10) + seg(c, PUSH, 5, frg=0, data=b"y" * 10)
    ops += bytes([0x08]) + length(len(frags)) + frags + bytes([4, 5, 7, 200, 7 | 8, 3])
    return {"kcp-basic": bytes([1, 0x00, 0]) + ops,
            "kcp-nodelay-stream": bytes([1, 0x98 | 2, 1]) + ops,
            "kcp-small-mtu": bytes([1, 0x7C | 1, 0]) + ops}


def fec_seeds():
    seeds = {}
    for si, (ds, ps) in ((1, (10, 3)), (2, (3, 2)), (3, (1, 1)), (0, (3, 2))):
        framer = FecFramer(ds, ps)
        ops = b""
        for g in range(3):
            for i in range(ds):
                kcp = seg(CONV_DIAL, PUSH, g * ds + i, data=bytes([i]) * (20 + 7 * i))
                for j, d in enumerate(framer.frame(kcp)):
                    if j == 0 and i == g % ds:
                        continue  # lose one data shard per group: parity rebuilds it
                    ops += bytes([0]) + length(len(d)) + d
            ops += bytes([3, 2])
        framer.close()
        seeds["fec-%d-%d-shape%d" % (ds, ps, si)] = bytes([2, si]) + ops
    return seeds


def crypt_seeds():
    seeds = {}
    plain = bytes(20) + b"kcp segment bytes " * 4
    for ci in range(NCIPHERS - 1):
        ops = b""
        for n in (0, 19, 20, 21, 36, len(plain)):
            ops += bytes([1]) + length(n) + plain[:n]
        ops += bytes([3 | (3 << 5)]) + length(len(plain)) + plain + bytes([5])
        ops += bytes([0]) + length(40) + bytes(range(40))
        seeds["crypt-%d" % ci] = bytes([3, ci]) + ops
    return seeds


def replay_seeds():
    def checks(ids, tick_every=7):
        ops = b""
        for n, i in enumerate(ids):
            ops += bytes([0]) + struct.pack("<H", i)    # check nonce id
            if n % tick_every == tick_every - 1:
                ops += bytes([3 | 4, 9])                 # clock += 144 ms
        return ops
    small = checks([i % 23 for i in range(40)])
    # enough distinct nonces to grow a 4096-slot filter's tables and rotate
    # them, then the oldest again
    grow = checks(list(range(2100)) + list(range(0, 2100, 50)), tick_every=1000)
    return {"replay-small": bytes([4, 0x00]) + small, "replay-wide": bytes([4, 0x17]) + small,
            "replay-grow": bytes([4, 0xFF]) + grow}


def main(out):
    for target, seeds in (("pipe", pipe_seeds()), ("kcp", kcp_seeds()),
                          ("fec", fec_seeds()), ("crypt", crypt_seeds()),
                          ("replay", replay_seeds())):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
