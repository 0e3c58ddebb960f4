"""The smux 1.5.16 wire protocol as a sans-I/O state machine (no sockets, no
clocks, no greenlets), in the manner of h11: feed it the bytes received, it
returns events and keeps the bytes to send.  gkcp.smux drives it.
"""
from __future__ import annotations

import errno
import struct

__all__ = ["SmuxError", "ProtocolError", "KeepaliveTimeout", "StreamIdsExhausted"]

# Commands (frame byte 1).  Version 1 knows SYN..NOP, version 2 adds UPD.
CMD_SYN = 0  # open a stream
CMD_FIN = 1  # the sender's side of the stream is done (EOF mark)
CMD_PSH = 2  # data
CMD_NOP = 3  # keepalive
CMD_UPD = 4  # version 2: |u32 consumed|u32 window| for one stream

HEADER = struct.Struct("<BBHI")  # version, cmd, payload length, stream id
HEADER_SIZE = HEADER.size


class SmuxError(ConnectionError):
    """An smux session ended or cannot go on (base of the errors below)."""


class ProtocolError(SmuxError):
    """The peer sent a frame smux forbids; the session ended."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, "smux protocol error: " + message)


class KeepaliveTimeout(SmuxError):
    """Nothing arrived from the peer within the keepalive timeout; the session ended."""

    def __init__(self, seconds: float) -> None:
        super().__init__(errno.ETIMEDOUT, "smux keepalive timeout: nothing received for %g s" % seconds)


class StreamIdsExhausted(SmuxError):
    """This side used up its 32-bit stream ids (smux ErrGoAway): open a new
    session.  Existing streams keep working."""

    def __init__(self) -> None:
        super().__init__(errno.EADDRNOTAVAIL, "smux stream ids exhausted: start a new session")
