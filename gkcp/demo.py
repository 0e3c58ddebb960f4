"""``gkcp demo`` (``python -m gkcp demo``): a listener and a client in one
process move a payload over KCP on 127.0.0.1, with a live progress line on a
terminal, then report MB/s, 64-byte round-trip times and the SNMP counters.
Sizes and rates are decimal: 1 MB = 10^6 bytes."""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import gevent

import gkcp

from .crypt import CIPHERS, kcptun_crypt
from .options import make_options

CHUNK = 64 * 1024
MB = 1e6
_SIZE_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9,
               "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}


def parse_size(text: str) -> int:
    """A byte count: 123, 100k, 100M, 2G (decimal) or 64Ki, 4Mi (binary); a
    trailing B is optional.  argparse turns the error into a usage message."""
    number = text.strip().lower()
    if number.endswith("b"):
        number = number[:-1]
    unit = number.lstrip("0123456789.")
    try:
        value = float(number[:len(number) - len(unit)]) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            "%r is not a size (e.g. 100M = 10^8 bytes, 64Ki = 65536 bytes)" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%r: a size must be at least 1 byte" % text)
    return int(value)


def parse_fec(text: str) -> Tuple[int, int]:
    """DATA/PARITY shard counts, e.g. 10/3 (0/0 = no FEC)."""
    data, sep, parity = text.partition("/")
    try:
        shape = int(data), int(parity)
    except ValueError:
        shape = (-1, -1)
    if not sep or min(shape) < 0:
        raise argparse.ArgumentTypeError("%r is not DATA/PARITY shard counts, e.g. 10/3" % text)
    return shape


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a positive integer" % text)
    return value


def build_parser(prog: str = "gkcp demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--bytes", type=parse_size, default=parse_size("100M"),
                   help="payload size (default 100M = 10^8 bytes)")
    p.add_argument("--crypt", default=None, choices=sorted(CIPHERS), metavar="NAME",
                   help="cipher (kcptun names: %s); default: no encryption" % ", ".join(CIPHERS))
    p.add_argument("--key", default="it's a secrect", help="passphrase for --crypt (kcptun derivation)")
    p.add_argument("--fec", type=parse_fec, default=(0, 0), help="data/parity shards, e.g. 10/3")
    p.add_argument("--window", type=positive_int, default=1024, help="send and receive window (segments)")
    p.add_argument("--rtt-count", type=positive_int, default=500, help="64-byte round trips to time")
    p.add_argument("--stream", action="store_true", help="stream mode instead of message mode")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "gkcp demo") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    options: Dict[str, Any] = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=args.window,
                                   rcvwnd=args.window, stream=args.stream,
                                   data_shards=args.fec[0], parity_shards=args.fec[1])
    if args.crypt:
        options["crypt"] = kcptun_crypt(args.crypt, args.key)
    try:
        make_options(**options)
    except (TypeError, ValueError) as e:  # e.g. a window or FEC shape gkcp refuses
        parser.error(str(e))
    return run(args, options)


def run(args: argparse.Namespace, options: Dict[str, Any]) -> int:
    progress = sys.stdout.isatty()
    payload = os.urandom(1 << 20)
    digest_sent = hashlib.sha256()
    digest_received = hashlib.sha256()
    received = [0]

    listener = gkcp.listen(("127.0.0.1", 0), **options)
    port = listener.getsockname()[1]

    def serve() -> None:
        session, _ = listener.accept()
        with session:
            while received[0] < args.bytes:
                data = session.recv(CHUNK)
                if not data:
                    break
                digest_received.update(data)
                received[0] += len(data)
            session.sendall(b"done")
            for _ in range(args.rtt_count):
                session.sendall(session.recv(64))
            gevent.sleep(0.2)

    server = gevent.spawn(serve)
    client = gkcp.dial(("127.0.0.1", port), **options)
    print("gkcp demo: %.1f MB over KCP on 127.0.0.1:%d (window %d, crypt %s, fec %d/%d)"
          % (args.bytes / MB, port, args.window, args.crypt or "off", *args.fec), flush=True)
    start = time.perf_counter()
    sent = 0
    last_print = 0.0
    while sent < args.bytes:
        piece = payload[: min(len(payload), args.bytes - sent)]
        client.sendall(piece)
        digest_sent.update(piece)
        sent += len(piece)
        now = time.perf_counter()
        if progress and now - last_print > 0.25:
            last_print = now
            rate = received[0] / max(now - start, 1e-9) / MB
            sys.stdout.write("\r  sent %7.1f MB  received %7.1f MB  %7.1f MB/s "
                             % (sent / MB, received[0] / MB, rate))
            sys.stdout.flush()
    if client.recv(4) != b"done":
        print("\nerror: transfer did not complete")
        return 1
    elapsed = time.perf_counter() - start
    if progress:
        sys.stdout.write("\r" + " " * 72 + "\r")
    ok = digest_sent.digest() == digest_received.digest()
    print("transfer: %.1f MB in %.2f s = %.1f MB/s, sha256 %s"
          % (args.bytes / MB, elapsed, args.bytes / elapsed / MB, "match" if ok else "MISMATCH"))

    probe = os.urandom(64)
    samples = []
    for _ in range(args.rtt_count):
        t0 = time.perf_counter()
        client.sendall(probe)
        got = b""
        while len(got) < 64:
            got += client.recv(64 - len(got))
        samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    if samples:
        print("rtt (64-byte echo, %d samples): p50 %.0f us, p99 %.0f us"
              % (len(samples), samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]))
    client.close()
    server.join(timeout=10)
    listener.close()
    print("snmp:")
    counters = gkcp.snmp()
    for name, value in counters.items():
        print("  %-18s %d" % (name, value))
    return 0 if ok else 1
