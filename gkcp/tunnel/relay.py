"""Copying one TCP connection and one smux stream both ways.

Each direction runs until its source reaches EOF, then passes the EOF on as
a half-close (TCP FIN -> smux FIN via ``shutdown(SHUT_WR)``, smux FIN ->
TCP ``shutdown(SHUT_WR)``), so request/response protocols that half-close
work end to end between gkcp peers.  kcptun itself closes both sides as
soon as either direction ends, and then drops what still arrives for the
stream; so that such a peer never leaves a relay hanging, once one
direction is done the other is given up after ``stall_timeout`` seconds
without moving a byte (a version-2 kcptun peer stops granting window to a
stream it closed).  An error in either direction closes both sides.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Optional

import gevent

__all__ = ["Traffic", "relay"]

log = logging.getLogger("gkcp.tunnel")

#: bytes per read; smux frames are at most 32 KiB by default, TCP reads return what is there
_COPY_SIZE = 65536
#: seconds a half-closed relay may wait on a send that makes no progress
STALL_TIMEOUT = 30.0


class Traffic:
    """Byte counters of a tunnel end: ``up`` flows from TCP clients towards
    the targets, ``down`` back; ``streams`` relays running now."""

    def __init__(self) -> None:
        self.up = 0
        self.down = 0
        self.streams = 0
        self.total_streams = 0


def _copy(src: Any, dst: Any, traffic: Traffic, upward: bool, progress: list, index: int,
          copy_size: int = _COPY_SIZE) -> None:
    """src -> dst until EOF, then half-close dst.  Raises what either side raised."""
    recv, sendall = src.recv, dst.sendall
    while True:
        data = recv(copy_size)
        if not data:
            break
        sendall(data)
        progress[index] += len(data)
        if upward:
            traffic.up += len(data)
        else:
            traffic.down += len(data)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:  # already closed or reset: nothing left to tell
        pass


def relay(tcp: Any, stream: Any, traffic: Traffic, *, upward_from_tcp: bool,
          stall_timeout: float = STALL_TIMEOUT, label: str = "", copy_size: int = _COPY_SIZE) -> None:
    """Copy tcp <-> stream until both directions ended or one failed; close
    both.  ``upward_from_tcp``: the client side (TCP is the user's
    connection), so bytes read from tcp count as ``up``.  ``copy_size``:
    bytes asked per read (larger reads mean fewer, larger smux writes)."""
    traffic.streams += 1
    traffic.total_streams += 1
    progress = [0, 0]
    failure: list = []

    def direction(src: Any, dst: Any, upward: bool, index: int) -> None:
        try:
            _copy(src, dst, traffic, upward, progress, index, copy_size)
        except OSError as exc:
            failure.append(exc)
            tcp.close()
            stream.close()

    copies = [gevent.spawn(direction, tcp, stream, upward_from_tcp, 0),
              gevent.spawn(direction, stream, tcp, not upward_from_tcp, 1)]
    try:
        gevent.wait(copies, count=1)
        for index, copy in enumerate(copies):
            while not copy.dead:
                before = progress[index]
                copy.join(stall_timeout)
                if not copy.dead and progress[index] == before:
                    failure.append(TimeoutError("half-closed for %g s without progress" % stall_timeout))
                    break
    finally:
        tcp.close()
        stream.close()
        gevent.killall(copies)
        traffic.streams -= 1
    if failure and label:
        log.debug("%s ended: %s", label, failure[0])


def tcp_keepalive(sock: socket.socket) -> None:
    """Go's net.Dial/Accept enable TCP keepalive (15 s); so does kcptun."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 15)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
    except OSError:  # a unix socket has no TCP options
        pass


def describe(address: Optional[Any]) -> str:
    """host:port as Go prints a net.Addr."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, address[1])
    return str(address)
