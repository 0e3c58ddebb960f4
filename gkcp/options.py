"""One validated set of options shared by dial, create_connection, listen and
the server classes.

Defaults are kcp-go 5.6.1's (``NewKCP`` and ``newUDPSession``), except where
gkcp deliberately does better: 4 MiB socket buffers (the OS default loses most
packets at large windows), a dead-link limit that actually ends the session,
and a bounded linger on close.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from ._core import lib

__all__ = ["Options", "make_options", "OPTION_NAMES", "MAX_DURATION"]

# The C core's limits (csrc/common.h, kcp.h, sess.h), read from it.
MTU_MIN: int = lib.GK_KCP_MTU_MIN
MTU_LIMIT: int = lib.GK_MTU_LIMIT
CRYPT_HEADER: int = lib.GK_CRYPT_HEADER
FEC_HEADER: int = lib.GK_FEC_HEADER
KCP_OVERHEAD: int = lib.GK_KCP_OVERHEAD
MAX_WINDOW: int = lib.GK_KCP_WND_MAX  # the wnd field is 16 bits wide
# The C core compares millisecond times as signed 32-bit differences, so no
# duration may reach 2**31 ms; every seconds option is bounded by this.
MAX_DURATION_MS: int = lib.GK_DURATION_MAX_MS
MAX_DURATION = MAX_DURATION_MS / 1000  #: seconds (about 24.8 days)
BUSY_POLL_MAX: float = lib.GK_SPIN_MAX_US / 1e6  #: seconds: the longest busy_poll
_FLAGS = ("stream", "ack_nodelay", "write_delay", "mmsg", "reuse_port", "announce")


@dataclasses.dataclass
class Options:
    """KCP, FEC, crypto and socket settings of a session or listener."""

    mtu: int = 1400
    sndwnd: int = 32
    rcvwnd: int = 32
    nodelay: int = 0
    interval: int = 100
    resend: int = 0
    nc: int = 0
    stream: bool = False
    ack_nodelay: bool = False
    write_delay: bool = False
    data_shards: int = 0
    parity_shards: int = 0
    crypt: Any = None          #: cipher name (see gkcp.crypt) or a BlockCrypt; None: no crypto header
    key: Optional[bytes] = None
    block: Any = None          #: a gkcp.crypt BlockCrypt, as kcp-go's `block` argument (alternative to crypt+key)
    sockbuf: int = 4 * 1024 * 1024
    dead_link: int = 20        #: transmissions of one segment that end the session (0: never)
    idle_timeout: Optional[float] = None  #: seconds of silence from the peer that end the session
    linger: float = 5.0        #: seconds close() keeps retransmitting unacknowledged data
    backlog: int = 128
    batch: int = 64            #: datagrams per recvmmsg/sendmmsg
    mmsg: bool = True          #: use recvmmsg/sendmmsg (False: recvfrom/sendto)
    reuse_port: bool = False
    announce: bool = True      #: with connect_timeout=0: dial sends one window-tell segment at once, so the listener accepts before the first write
    connect_timeout: float = 10.0  #: seconds dial waits for the peer to answer a window ask (0: return at once, unverified)
    keepalive: float = 10.0    #: seconds of silence from the peer before a window-ask probe, then again as often (0: off, as kcp-go)
    keepalive_timeout: float = 30.0  #: seconds without any valid packet that end a session with keepalive on
    busy_poll: float = 0.0     #: seconds (at most 0.01) the hub polls this socket before it sleeps, adapted to the traffic (0: off); see gkcp._busypoll

    def fec_enabled(self) -> bool:
        return self.data_shards > 0 and self.parity_shards > 0

    def cipher(self) -> Any:
        """What encrypts packets: a name (with key), a BlockCrypt, or None."""
        return self.block if self.block is not None else self.crypt

    def header_bytes(self) -> int:
        return (CRYPT_HEADER if self.cipher() is not None else 0) + (FEC_HEADER if self.fec_enabled() else 0)

    def validate(self) -> "Options":
        _int_in("mtu", self.mtu, MTU_MIN, MTU_LIMIT)
        _int_in("sndwnd", self.sndwnd, 1, MAX_WINDOW)
        _int_in("rcvwnd", self.rcvwnd, 1, MAX_WINDOW)
        _int_in("nodelay", self.nodelay, 0, 2)
        _int_in("interval", self.interval, 10, 5000)
        _int_in("resend", self.resend, 0, 1 << 16)
        _int_in("nc", self.nc, 0, 1)
        for flag in _FLAGS:
            _flag(flag, getattr(self, flag))
        _int_in("data_shards", self.data_shards, 0, 255)
        _int_in("parity_shards", self.parity_shards, 0, 255)
        if self.parity_shards > 0 and self.data_shards == 0:
            raise ValueError("parity_shards=%d needs data_shards >= 1" % self.parity_shards)
        if self.data_shards + self.parity_shards > 255:
            raise ValueError("data_shards + parity_shards must be at most 255, got %d"
                             % (self.data_shards + self.parity_shards))
        _int_in("sockbuf", self.sockbuf, 0, 1 << 30)
        _int_in("dead_link", self.dead_link, 0, 1 << 30)
        if self.idle_timeout is not None:
            _seconds("idle_timeout", self.idle_timeout)
        _seconds("linger", self.linger)
        _seconds("connect_timeout", self.connect_timeout)
        _seconds("keepalive", self.keepalive)
        _seconds("keepalive_timeout", self.keepalive_timeout)
        if self.keepalive and self.keepalive_timeout <= self.keepalive:
            raise ValueError("keepalive_timeout (%r s) must be longer than keepalive (%r s), so that a probe "
                             "can be answered before the session ends" % (self.keepalive_timeout, self.keepalive))
        _seconds("busy_poll", self.busy_poll)
        if self.busy_poll > BUSY_POLL_MAX:
            raise ValueError("busy_poll must be at most %r s (a spin that long is a sleep), got %r"
                             % (BUSY_POLL_MAX, self.busy_poll))
        _int_in("backlog", self.backlog, 1, 1 << 20)
        _int_in("batch", self.batch, 1, 1024)
        if self.block is not None and self.crypt is not None:
            raise ValueError("give either block= (a BlockCrypt) or crypt= (a name or BlockCrypt), not both")
        if self.block is not None and not hasattr(self.block, "ptr"):
            raise TypeError("block must be a gkcp.crypt BlockCrypt (see gkcp.crypt.new_crypt), not %s"
                            % type(self.block).__name__)
        if self.crypt is not None and not isinstance(self.crypt, str) and not hasattr(self.crypt, "ptr"):
            raise TypeError("crypt must be a cipher name or a gkcp.crypt BlockCrypt, not %s"
                            % type(self.crypt).__name__)
        if self.crypt is None and self.key is not None:
            raise ValueError("key given without crypt: name a cipher, e.g. crypt='aes'")
        if isinstance(self.crypt, str) and self.key is None:
            raise ValueError("crypt=%r needs key=bytes" % self.crypt)
        if self.key is not None and not isinstance(self.key, (bytes, bytearray, memoryview)):
            raise TypeError("key must be bytes, not %s" % type(self.key).__name__)
        # last: the header room depends on the FEC and crypt fields checked above
        if self.mtu - KCP_OVERHEAD - self.header_bytes() < 1:
            raise ValueError("mtu %d leaves no room for data after %d header bytes"
                             % (self.mtu, KCP_OVERHEAD + self.header_bytes()))
        return self


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(Options))


def make_options(base: Optional[Options] = None, **kwargs: Any) -> Options:
    """Options from keyword arguments, validated; unknown names raise TypeError."""
    unknown = set(kwargs) - OPTION_NAMES
    if unknown:
        raise TypeError("unknown option%s: %s (known: %s)" % (
            "s" if len(unknown) > 1 else "", ", ".join(sorted(unknown)), ", ".join(sorted(OPTION_NAMES))))
    options = dataclasses.replace(base or Options(), **kwargs)
    return options.validate()


def duration_ms(seconds: float) -> int:
    """A validated seconds option as the core's milliseconds."""
    return min(MAX_DURATION_MS, int(seconds * 1000))


def int_argument(name: str, value: Any) -> int:
    """value if it is an int (a bool is not), else TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" % (name, type(value).__name__))
    return value


def _int_in(name: str, value: Any, low: int, high: int) -> None:
    if not low <= int_argument(name, value) <= high:
        raise ValueError("%s must be in %d..%d, got %d" % (name, low, high, value))


def _flag(name: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if not isinstance(value, int):
        raise TypeError("%s must be a bool, not %s" % (name, type(value).__name__))
    if value not in (0, 1):
        raise ValueError("%s must be a bool (or 0/1), got %d" % (name, value))


def _seconds(name: str, value: Union[int, float]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds, not %s" % (name, type(value).__name__))
    if not 0 <= value <= MAX_DURATION:  # also false for NaN
        raise ValueError("%s must be a finite number of seconds in 0..%s (2**31-1 ms, the core's limit), "
                         "got %r" % (name, MAX_DURATION, value))
