"""Socket addresses between Python tuples and the C core's struct sockaddr."""
from __future__ import annotations

import socket
import struct
from typing import Any, Tuple

from gevent import socket as gsocket

Address = Tuple[Any, ...]


def parse_address(address: Any, name: str = "address") -> Tuple[str, int]:
    """(host, port) from a tuple or a 'host:port' string, with errors that
    name the argument."""
    if isinstance(address, str):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("%s must be 'host:port', got %r" % (name, address))
        address = (host.strip("[]"), int(port))
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError("%s must be a (host, port) tuple or 'host:port', got %r" % (name, address))
    host, port = address[0], address[1]
    if not isinstance(host, str):
        raise TypeError("%s: host must be a str, got %s" % (name, type(host).__name__))
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError("%s: port must be an int, got %s" % (name, type(port).__name__))
    if not 0 <= port <= 65535:
        raise ValueError("%s: port must be in 0..65535, got %d" % (name, port))
    return host, port


def resolve(address: Any, passive: bool = False) -> Tuple[int, Address]:
    """(family, sockaddr tuple) of the first UDP address getaddrinfo gives."""
    host, port = parse_address(address)
    flags = socket.AI_PASSIVE if passive else 0
    infos = gsocket.getaddrinfo(host or None, port, 0, socket.SOCK_DGRAM, 0, flags)
    if not infos:
        raise OSError("no address found for %r" % (address,))
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def to_sockaddr(family: int, sockaddr: Address) -> bytes:
    """The bytes of a struct sockaddr_in / sockaddr_in6."""
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", sockaddr[1]) + \
            socket.inet_pton(family, sockaddr[0]) + bytes(8)
    if family == socket.AF_INET6:
        flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
        scope = sockaddr[3] if len(sockaddr) > 3 else 0
        return struct.pack("=H", family) + struct.pack("!HI", sockaddr[1], flowinfo) + \
            socket.inet_pton(family, sockaddr[0].split("%")[0]) + struct.pack("=I", scope)
    raise ValueError("unsupported address family %r" % family)


def from_sockaddr(raw: bytes) -> Address:
    """A Python address tuple from struct sockaddr bytes."""
    (family,) = struct.unpack_from("=H", raw)
    if family == socket.AF_INET:
        (port,) = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(family, raw[4:8]), port
    if family == socket.AF_INET6:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        (scope,) = struct.unpack_from("=I", raw, 24)
        return socket.inet_ntop(family, raw[8:24]), port, flowinfo, scope
    raise ValueError("unsupported address family %r" % family)
