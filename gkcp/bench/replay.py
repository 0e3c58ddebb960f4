"""``python -m gkcp.bench replay``: per-packet cost of the nonce replay filter
of crypt listeners (csrc/replay.h), next to the decryption it follows.

Every authentic datagram a listening socket with crypt receives is opened
(decrypt + CRC), then its nonce is checked against the filter.  Measured in C
loops timed from Python:

* open: gk_crypt_decrypt of one packet (the receive path without the filter);
* filter, new nonces: lookup in both generations and insert, generation
  rotations (clearing a 2 MiB table every 131,072 packets) included;
* filter, replays: nonces found (the packet is dropped).

Not a test: figures depend on the machine and its load (best of --repeats).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import List, Optional

from .._core import ffi, lib
from ..crypt import new_crypt
from .crypto import time_loop


def filter_ns(nonces: bytes, count: int, repeats: int, replayed: bool) -> float:
    best = float("inf")
    buf = ffi.from_buffer("uint8_t[]", nonces)
    for _ in range(repeats):
        f = lib.gk_replay_new(os.urandom(16), lib.GK_REPLAY_SLOTS, lib.GK_REPLAY_WINDOW_MS)
        try:
            if replayed:
                # the last generation's worth again: all found
                lib.gk_replay_check_many(f, buf, count, 1)
                tail = count - lib.GK_REPLAY_SLOTS // 4
                t0 = time.perf_counter_ns()
                hits = lib.gk_replay_check_many(f, buf + tail * 16, count - tail, 1)
                dt = time.perf_counter_ns() - t0
                assert hits == count - tail, hits
                best = min(best, dt / (count - tail))
            else:
                t0 = time.perf_counter_ns()
                hits = lib.gk_replay_check_many(f, buf, count, 1)
                dt = time.perf_counter_ns() - t0
                assert hits == 0, hits
                best = min(best, dt / count)
        finally:
            lib.gk_replay_free(f)
    return best


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gkcp.bench replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1 << 21, help="nonces per run (default 2 Mi)")
    parser.add_argument("--size", type=int, default=1400, help="packet bytes for 'open' (default 1400)")
    parser.add_argument("--cipher", default="aes", help="cipher for 'open' (default aes)")
    parser.add_argument("--repeats", type=int, default=5, help="runs, best kept (default 5)")
    args = parser.parse_args(argv)

    nonces = os.urandom(16 * args.packets)
    fresh = filter_ns(nonces, args.packets, args.repeats, replayed=False)
    replays = filter_ns(nonces, args.packets, args.repeats, replayed=True)
    crypt = new_crypt(args.cipher, os.urandom(32))
    ng = ffi.new("gk_nonce *")
    lib.gk_nonce_init(ng, os.urandom(32))
    packet = ffi.new("uint8_t[]", os.urandom(args.size))
    opened = time_loop(crypt, ng, packet, lib.GK_BENCH_OPEN, 0.3, repeats=args.repeats)
    print("receive path of a crypt listener, ns per packet (best of %d)" % args.repeats)
    print("  open (%s, %d B, decrypt + CRC)    %8.1f" % (args.cipher, args.size, opened))
    print("  filter, new nonce                 %8.1f" % fresh)
    print("  filter, replay (dropped)          %8.1f" % replays)
    print("  open + filter                     %8.1f  (+%.1f%%)" % (opened + fresh, 100 * fresh / opened))
    return 0
