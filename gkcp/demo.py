"""``python -m gkcp demo``: a listener and a client in one process move a
payload over KCP on 127.0.0.1, with a live progress line, then report MB/s,
64-byte round-trip times and the SNMP counters."""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import List, Optional

import gevent

import gkcp

CHUNK = 64 * 1024


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_fec(text: str) -> tuple:
    data, _, parity = text.partition("/")
    return int(data), int(parity)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gkcp demo", description=__doc__)
    p.add_argument("--bytes", type=parse_size, default=parse_size("100M"), help="payload size (default 100M)")
    p.add_argument("--crypt", default=None, help="cipher name (aes, salsa20, none, ...); default: no crypto")
    p.add_argument("--key", default="it's a secrect", help="passphrase for --crypt (kcptun derivation)")
    p.add_argument("--fec", type=parse_fec, default=(0, 0), help="data/parity shards, e.g. 10/3")
    p.add_argument("--window", type=int, default=1024, help="send and receive window (segments)")
    p.add_argument("--rtt-count", type=int, default=500, help="64-byte round trips to time")
    p.add_argument("--stream", action="store_true", help="stream mode instead of message mode")
    return p


def run(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    options = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=args.window, rcvwnd=args.window,
                   stream=args.stream, data_shards=args.fec[0], parity_shards=args.fec[1])
    if args.crypt:
        from .crypt import kcptun_crypt
        options["crypt"] = kcptun_crypt(args.crypt, args.key)

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
    print("gkcp demo: %d MB over KCP on 127.0.0.1:%d (window %d, crypt %s, fec %d/%d)"
          % (args.bytes >> 20, port, args.window, args.crypt or "off", *args.fec))
    start = time.perf_counter()
    sent = 0
    last_print = 0.0
    while sent < args.bytes:
        piece = payload[: min(len(payload), args.bytes - sent)]
        client.sendall(piece)
        digest_sent.update(piece)
        sent += len(piece)
        now = time.perf_counter()
        if now - last_print > 0.25:
            last_print = now
            rate = received[0] / max(now - start, 1e-9) / 1e6
            sys.stdout.write("\r  sent %7.1f MB  received %7.1f MB  %7.1f MB/s "
                             % (sent / 1e6, received[0] / 1e6, rate))
            sys.stdout.flush()
    if client.recv(4) != b"done":
        print("\nerror: transfer did not complete")
        return 1
    elapsed = time.perf_counter() - start
    sys.stdout.write("\r" + " " * 72 + "\r")
    ok = digest_sent.digest() == digest_received.digest()
    print("transfer: %.1f MB in %.2f s = %.1f MB/s, sha256 %s"
          % (args.bytes / 1e6, elapsed, args.bytes / elapsed / 1e6, "match" if ok else "MISMATCH"))

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
