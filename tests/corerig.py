"""Drive the C core (gkcp._core) directly, with a clock the test sets.

    with CoreRig(start=0xFFFFF000) as rig:
        lis = rig.udp(listening=True, idle_timeout_ms=0)
        dia = rig.udp(listening=False)
        sess = rig.dial(dia, rig.address(lis), conv=7)
        rig.run(50)                      # 50 rounds of read + update, 10 ms apart
        rig.accepted                     # sessions announced by GK_EV_ACCEPT

No gevent: the test calls gk_udp_read / gk_engine_update itself on real
non-blocking UDP sockets on 127.0.0.1, so time can start just below the
32-bit wrap or leap by days between two calls.
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Any, Dict, List, Tuple

from gkcp._addr import to_sockaddr
from gkcp._core import ffi, lib

PUSH, ACK, WASK, WINS = 81, 82, 83, 84

DEFAULT_CONFIG = dict(mtu=1400, sndwnd=32, rcvwnd=32, nodelay=1, interval=10, resend=2, nc=1,
                      stream=0, ack_nodelay=0, write_delay=0, data_shards=0, parity_shards=0,
                      dead_link=0, idle_timeout_ms=0, keepalive_ms=0, keepalive_timeout_ms=0)


class CoreRig:
    """One C engine, its sockets and a fake millisecond clock."""

    def __init__(self, start: int = 0) -> None:
        self.now = start & 0xFFFFFFFF
        self.eng = lib.gk_engine_new(os.urandom(48))
        assert self.eng != ffi.NULL
        self.socks: Dict[Any, socket.socket] = {}
        self._plain: List[socket.socket] = []
        self.accepted: List[Any] = []
        self.dead: List[int] = []
        self.freed: List[int] = []
        self._events = ffi.new("gk_event[]", 64)

    # -- setup ---------------------------------------------------------------

    def config(self, **overrides: int) -> Any:
        cfg = ffi.new("gk_config *")
        for name, value in dict(DEFAULT_CONFIG, **overrides).items():
            setattr(cfg, name, value)
        return cfg

    def udp(self, listening: bool, crypt: Any = ffi.NULL, backlog: int = 128, **config: int) -> Any:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        udp = lib.gk_udp_new(self.eng, sock.fileno(), int(listening), self.config(**config),
                             crypt, 64, backlog)
        assert udp != ffi.NULL
        self.socks[udp] = sock
        return udp

    def sink(self) -> socket.socket:
        """A plain UDP socket the rig never reads (a peer that stays silent);
        closed with the rig."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        self._plain.append(sock)
        return sock

    def address(self, udp: Any) -> Tuple[str, int]:
        return self.socks[udp].getsockname()

    def dial(self, udp: Any, address: Tuple[str, int], conv: int = 0x600DF00D,
             announce: bool = True) -> Any:
        raw = to_sockaddr(socket.AF_INET, address)
        sess = lib.gk_udp_dial(udp, raw, len(raw), conv, int(announce), self.now)
        assert sess != ffi.NULL
        return sess

    # -- running ---------------------------------------------------------------

    def step(self, ms: int = 0) -> int:
        """Advance the clock by ms, read every socket, run the updater once;
        returns the updater's wait."""
        self.now = (self.now + ms) & 0xFFFFFFFF
        for udp in self.socks:
            assert lib.gk_udp_read(udp, self.now, 8) >= 0
            self._take_events()
        wait = lib.gk_engine_update(self.eng, self.now)
        self._take_events()
        return wait

    def run(self, rounds: int, ms: int = 10) -> None:
        for _ in range(rounds):
            self.step(ms)

    def _take_events(self) -> None:
        while True:
            n = lib.gk_engine_take_events(self.eng, self._events, 64)
            for i in range(n):
                ev = self._events[i]
                if ev.flags & lib.GK_EV_ACCEPT:
                    lib.gk_sess_accepted(ev.sess)
                    self.accepted.append(ev.sess)
                if ev.flags & lib.GK_EV_DEAD:
                    self.dead.append(ev.id)
                if ev.flags & lib.GK_EV_FREED:
                    self.freed.append(ev.id)
            if n < 64:
                return

    # -- teardown ----------------------------------------------------------------

    def close(self) -> None:
        if self.eng is not None:
            lib.gk_engine_free(self.eng)
            self.eng = None
        for sock in list(self.socks.values()) + self._plain:
            sock.close()
        self.socks.clear()
        self._plain.clear()

    def __enter__(self) -> "CoreRig":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def recv_all(sock: socket.socket) -> List[bytes]:
    """Every datagram waiting on a non-blocking socket."""
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def segment(conv: int, cmd: int, sn: int = 0, una: int = 0, data: bytes = b"", wnd: int = 32,
            ts: int = 0, frg: int = 0) -> bytes:
    """One KCP segment: conv, cmd, frg, wnd, ts, sn, una, len, then data."""
    return struct.pack("<IBBHIIII", conv, cmd, frg, wnd, ts, sn, una, len(data)) + data
