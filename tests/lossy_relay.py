"""UDP fault-injection relay on 127.0.0.1 for interop tests.

    with LossyRelay(server_addr, drop=0.05, seed=7) as relay:
        dial relay.address instead of server_addr ...
    relay.stats()   # {'c2s': {'in': .., 'out': .., 'dropped': .., ...}, 's2c': {...}}

The relay sits between one client and one server.  Clients send to
`relay.address`; the relay forwards to the server from a socket of its own,
so the server sees the relay as its client.  The client address is learned
from the first datagram (or fixed with client_addr=); datagrams from any
other address are counted as `stray` and discarded.

Faults, each a probability (a float for both directions, or a pair
(client->server, server->client)), drawn from a per-direction random.Random
seeded from `seed`, so a given traffic sequence gets the same faults:
  drop     discard the datagram
  corrupt  flip one random bit
  dup      send it twice
  reorder  hold it back and send it after the next datagram of that
           direction (or after 10 ms without traffic)
Order of decisions per datagram: drop, corrupt, dup, reorder.
`relay.blackout(True)` drops everything in both directions (counted as
dropped, no random numbers drawn) until `relay.blackout(False)`.

The relay runs in a child process (this file run as a script), so it neither
competes for the GIL with the code under test nor cares whether gevent has
patched the test process.  Counters live in a small shared memory-mapped file
and can be read at any time.  The child's loop is bounded: it stops on the
stop flag, when its parent dies, or after max_seconds.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional, Tuple, Union

from cooperative import sleep as _sleep

# Shared-memory layout: an array of unsigned 64-bit counters.
_MAGIC = 0x6B637052656C6179  # "kcpRelay"
_F_MAGIC, _F_READY, _F_STOP, _F_CPORT, _F_SPORT, _F_BLACKOUT, _F_SPARE, _F_CLIPORT = range(8)
_FIELDS = ("in", "out", "dropped", "corrupted", "duplicated", "reordered",
           "bytes_in", "bytes_out", "stray", "send_errors")
_NF = len(_FIELDS)
_BASE = 8  # c2s counters at _BASE, s2c at _BASE + _NF
_SLOTS = _BASE + 2 * _NF
_SIZE = _SLOTS * 8

Prob = Union[float, Tuple[float, float]]




def _pair(p: Prob) -> Tuple[float, float]:
    if isinstance(p, (tuple, list)):
        a, b = p
    else:
        a = b = p
    for x in (a, b):
        if not 0.0 <= float(x) <= 1.0:
            raise ValueError(f"probability out of range: {x}")
    return float(a), float(b)


class LossyRelay:
    """Context manager running the relay child process."""

    def __init__(self, server_addr: Tuple[str, int], *, drop: Prob = 0.0,
                 dup: Prob = 0.0, reorder: Prob = 0.0, corrupt: Prob = 0.0,
                 seed: int = 0, client_addr: Optional[Tuple[str, int]] = None,
                 max_seconds: float = 600.0, sockbuf: int = 4 << 20):
        self.server_addr = (server_addr[0], int(server_addr[1]))
        if self.server_addr[0] not in ("127.0.0.1", "localhost"):
            raise ValueError("the relay only forwards on 127.0.0.1")
        self.drop, self.dup = _pair(drop), _pair(dup)
        self.reorder, self.corrupt = _pair(reorder), _pair(corrupt)
        self.seed = int(seed)
        self.client_addr = client_addr
        self.max_seconds = float(max_seconds)
        self.sockbuf = int(sockbuf)
        self.proc: Optional[subprocess.Popen] = None
        self._file = self._errf = None
        self._mm: Optional[mmap.mmap] = None
        self._final: Optional[Dict[str, Dict[str, int]]] = None
        self.address: Optional[Tuple[str, int]] = None

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> "LossyRelay":
        self._file = tempfile.TemporaryFile()
        self._file.truncate(_SIZE)
        self._errf = tempfile.TemporaryFile()
        self._mm = mmap.mmap(self._file.fileno(), _SIZE)
        args = [sys.executable, os.path.abspath(__file__),
                "--server", f"{self.server_addr[0]}:{self.server_addr[1]}",
                "--drop", *map(str, self.drop), "--dup", *map(str, self.dup),
                "--reorder", *map(str, self.reorder),
                "--corrupt", *map(str, self.corrupt),
                "--seed", str(self.seed), "--max-seconds", str(self.max_seconds),
                "--sockbuf", str(self.sockbuf)]
        if self.client_addr is not None:
            args += ["--client", f"{self.client_addr[0]}:{self.client_addr[1]}"]
        self.proc = subprocess.Popen(args, pass_fds=(self._file.fileno(),),
                                     env={**os.environ, "LOSSY_RELAY_FD": str(self._file.fileno())},
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._errf)
        end = time.monotonic() + timeout
        while self._get(_F_READY) == 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                err = b""
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(5)
                err = os.pread(self._errf.fileno(), 1 << 16, 0)
                raise RuntimeError("lossy relay did not start: "
                                   + err.decode(errors="replace")[-2000:])
            _sleep(0.005)
        self.address = ("127.0.0.1", self._get(_F_CPORT))
        return self

    def __enter__(self) -> "LossyRelay":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self, timeout: float = 3.0) -> Dict[str, Dict[str, int]]:
        """Stop the child (flag, then kill) and keep the final counts."""
        if self._final is not None:
            return self._final
        if self.proc is not None:
            self._set(_F_STOP, 1)
            end = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < end:
                _sleep(0.005)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        self._final = self.stats()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        for f in (self._file, self._errf):
            if f is not None:
                f.close()
        self._file = self._errf = None
        return self._final

    def blackout(self, on: bool = True) -> None:
        """Drop every datagram in both directions while on."""
        self._set(_F_BLACKOUT, 1 if on else 0)

    # -- counters
    def _get(self, i: int) -> int:
        return int.from_bytes(self._mm[i * 8:i * 8 + 8], sys.byteorder)

    def _set(self, i: int, v: int) -> None:
        self._mm[i * 8:i * 8 + 8] = v.to_bytes(8, sys.byteorder)

    def stats(self) -> Dict[str, Dict[str, int]]:
        """Counts so far per direction ('c2s', 's2c'); final counts after stop."""
        if self._mm is None:
            return self._final or {}
        out = {}
        for d, base in (("c2s", _BASE), ("s2c", _BASE + _NF)):
            out[d] = {f: self._get(base + i) for i, f in enumerate(_FIELDS)}
        return out

    def total(self, field: str) -> int:
        s = self.stats()
        return s["c2s"][field] + s["s2c"][field]

    @property
    def dropped(self) -> int:
        return self.total("dropped")

    @property
    def server_side_port(self) -> int:
        """Port the server sees the relay's datagrams come from."""
        return self._get(_F_SPORT) if self._mm is not None else 0

    @property
    def client_port(self) -> int:
        """Port of the client the relay locked onto (0 before the first datagram)."""
        return self._get(_F_CLIPORT) if self._mm is not None else 0


# ------------------------------------------------------------------ child

def _child(argv) -> int:
    import argparse
    import random
    import select
    import socket

    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client")
    for name in ("drop", "dup", "reorder", "corrupt"):
        ap.add_argument("--" + name, nargs=2, type=float, default=[0.0, 0.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--sockbuf", type=int, default=4 << 20)
    a = ap.parse_args(argv)

    fd = int(os.environ["LOSSY_RELAY_FD"])
    mm = mmap.mmap(fd, _SIZE)
    ctr = memoryview(mm).cast("Q")

    def parse_addr(s):
        h, _, p = s.rpartition(":")
        return (h, int(p))

    server = parse_addr(a.server)
    client = parse_addr(a.client) if a.client else None

    def mksock():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, a.sockbuf)
            except OSError:
                pass
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    csock, ssock = mksock(), mksock()  # client-facing, server-facing
    ctr[_F_CPORT] = csock.getsockname()[1]
    ctr[_F_SPORT] = ssock.getsockname()[1]
    if client is not None:
        ctr[_F_CLIPORT] = client[1]

    class Dir:
        """One direction: where it reads, where it writes, faults, counters."""

        def __init__(self, idx, rsock, wsock, src, dst, drop, corrupt, dup, reorder):
            self.base = _BASE + idx * _NF
            self.rsock, self.wsock = rsock, wsock
            self.src, self.dst = src, dst  # expected source / destination
            self.drop, self.corrupt, self.dup, self.reorder = drop, corrupt, dup, reorder
            self.rng = random.Random(a.seed * 2 + idx)
            self.held = None

    c2s = Dir(0, csock, ssock, client, server,
              a.drop[0], a.corrupt[0], a.dup[0], a.reorder[0])
    s2c = Dir(1, ssock, csock, server, client,
              a.drop[1], a.corrupt[1], a.dup[1], a.reorder[1])

    I_IN, I_OUT, I_DROP, I_CORR, I_DUP, I_REORD, I_BIN, I_BOUT, I_STRAY, I_SERR = range(_NF)
    buf = bytearray(65536)
    view = memoryview(buf)
    BATCH = 256

    def send(d, data):
        try:
            d.wsock.sendto(data, d.dst)
            ctr[d.base + I_OUT] += 1
            ctr[d.base + I_BOUT] += len(data)
        except OSError:  # full buffer (EAGAIN) or peer gone: a relay drop
            ctr[d.base + I_SERR] += 1

    def pump(d):
        """Forward up to BATCH datagrams waiting on d.rsock."""
        base = d.base
        for _ in range(BATCH):
            try:
                n, src = d.rsock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. ICMP error reported on the socket
            if d is c2s and c2s.src is None:
                c2s.src = s2c.dst = src
                ctr[_F_CLIPORT] = src[1]
            if src != d.src:
                ctr[base + I_STRAY] += 1
                continue
            ctr[base + I_IN] += 1
            ctr[base + I_BIN] += n
            if ctr[_F_BLACKOUT]:
                ctr[base + I_DROP] += 1
                continue
            rng = d.rng
            if d.drop and rng.random() < d.drop:
                ctr[base + I_DROP] += 1
                continue
            data = view[:n]
            if d.corrupt and rng.random() < d.corrupt and n > 0:
                b = bytearray(data)
                bit = rng.randrange(n * 8)
                b[bit >> 3] ^= 1 << (bit & 7)
                data = b
                ctr[base + I_CORR] += 1
            copies = 1
            if d.dup and rng.random() < d.dup:
                copies = 2
                ctr[base + I_DUP] += 1
            if d.reorder and d.held is None and rng.random() < d.reorder:
                d.held = (bytes(data), copies)
                ctr[base + I_REORD] += 1
                continue
            for _ in range(copies):
                send(d, data)
            if d.held is not None:
                held, k = d.held
                d.held = None
                for _ in range(k):
                    send(d, held)

    def flush_held(d):
        if d.held is not None and d.dst is not None:
            held, k = d.held
            d.held = None
            for _ in range(k):
                send(d, held)

    ep = select.epoll()
    ep.register(csock.fileno(), select.EPOLLIN)
    ep.register(ssock.fileno(), select.EPOLLIN)
    by_fd = {csock.fileno(): c2s, ssock.fileno(): s2c}
    ppid = os.getppid()
    end = time.monotonic() + a.max_seconds
    ctr[_F_MAGIC] = _MAGIC
    ctr[_F_READY] = 1
    while ctr[_F_STOP] == 0 and time.monotonic() < end and os.getppid() == ppid:
        events = ep.poll(0.01)
        if not events:
            flush_held(c2s)
            flush_held(s2c)
            continue
        for fd_, _ in events:
            d = by_fd[fd_]
            if d.dst is None:  # server spoke before any client: nowhere to go
                for _ in range(BATCH):
                    try:
                        d.rsock.recvfrom_into(buf)
                    except OSError:
                        break
                    ctr[d.base + I_STRAY] += 1
            else:
                pump(d)
    flush_held(c2s)
    flush_held(s2c)
    ep.close()
    csock.close()
    ssock.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
