"""Opt-in routing of ``socket.create_connection`` to KCP, so unmodified
blocking client code (``http.client``, ``xmlrpc.client``, ``smtplib``,
``ftplib``...) reaches KCP endpoints::

    from gevent import monkey; monkey.patch_all()   # first, if you use it
    import gkcp.monkey
    gkcp.monkey.patch_create_connection({
        ("10.0.0.5", 8080): dict(nodelay=1, interval=10, resend=2, nc=1),
    })
    http.client.HTTPConnection("10.0.0.5", 8080).request("GET", "/")  # over KCP
    gkcp.monkey.unpatch()                                             # TCP again

Routing matches the ``(host, port)`` exactly as the caller passes it to
``create_connection`` -- no name resolution: a route for
``("127.0.0.1", 80)`` does not catch ``("localhost", 80)``; list both if
clients use both.  Host names compare case-insensitively.  Every other
address gets the original ``create_connection`` (plain TCP).

What is patched: the ``create_connection`` attribute of :mod:`socket` and of
:mod:`gevent.socket` (after ``gevent.monkey.patch_all()`` they are the same
function; call ``patch_all`` *before* this, since it overwrites
``socket.create_connection``).  Code that looks the function up at call time
is routed (the stdlib clients above do); code that bound it earlier with
``from socket import create_connection``, or that builds sockets itself
(urllib3, hence requests), is not.

Protocols in which the server speaks first (SMTP's greeting, so
``smtplib``; FTP, POP3, IMAP) work: KCP has no handshake, but a dialed
session announces itself with one window-tell segment at once (the
``announce`` option, on by default), so the server accepts it and sends its
greeting while the client waits.  With ``announce=False`` they would hang.

Thread safety: patching is process-wide.  Patch and unpatch while no other
thread is connecting (e.g. at start-up); routed calls themselves may come
from any thread, and a session belongs to the thread (gevent hub) that
created it -- greenlet "threads" of ``patch_all`` share their OS thread's hub.
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import gevent.socket

from ._addr import parse_address
from .options import make_options
from .session import create_connection as kcp_create_connection

__all__ = ["patch_create_connection", "unpatch", "is_patched", "routes"]

Route = Tuple[str, int]

_lock = threading.Lock()
_routes: Dict[Route, Dict[str, Any]] = {}
_saved: List[Tuple[Any, Callable[..., Any]]] = []  # (module, its create_connection before patching)


def _key(address: Any) -> Optional[Route]:
    try:
        host, port = parse_address(address)
    except (TypeError, ValueError):
        return None  # not ours to judge: the original reports it
    return host.lower(), port


def _routed(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_connection(address: Any, timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                          source_address: Any = None, **kwargs: Any) -> Any:
        key = _key(address)
        options = _routes.get(key) if key is not None else None
        if options is None:
            return original(address, timeout, source_address, **kwargs)
        if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
            return kcp_create_connection(address, source_address=source_address, **options)
        return kcp_create_connection(address, timeout, source_address, **options)

    create_connection.__doc__ = ("socket.create_connection routed by gkcp.monkey: a gkcp.Session for "
                                 "the patched (host, port) routes, otherwise %s.%s."
                                 % (original.__module__, original.__qualname__))
    create_connection.__wrapped__ = original  # type: ignore[attr-defined]
    return create_connection


def patch_create_connection(routes: Mapping[Any, Mapping[str, Any]]) -> None:
    """Route ``create_connection`` for each ``(host, port)`` (or
    ``'host:port'``) key of *routes* to :func:`gkcp.create_connection` with
    that value's KCP options; other addresses keep plain TCP.

    The routes given replace those of an earlier call, so calling again
    with the same routes changes nothing.  Options are validated here
    (``TypeError``/``ValueError``), before anything is patched."""
    table: Dict[Route, Dict[str, Any]] = {}
    for address, options in routes.items():
        host, port = parse_address(address)
        make_options(**options)
        table[(host.lower(), port)] = dict(options)
    global _routes
    with _lock:
        _routes = table  # one assignment: a concurrent lookup sees the old table or the new one
        if _saved:
            return
        for module in _modules():
            original = module.create_connection
            _saved.append((module, original))
            module.create_connection = _routed(original)


def unpatch() -> None:
    """Put back the ``create_connection`` functions found when patching and
    forget the routes.  Idempotent.  A module whose function was replaced
    again by someone else after patching is left as it is."""
    global _routes
    with _lock:
        _routes = {}
        while _saved:
            module, original = _saved.pop()
            current = module.create_connection
            if getattr(current, "__wrapped__", None) is original:
                module.create_connection = original


def is_patched() -> bool:
    return bool(_saved)


def routes() -> Dict[Route, Dict[str, Any]]:
    """A copy of the routes in force (keys as matched: host lower-cased)."""
    with _lock:
        return {key: dict(options) for key, options in _routes.items()}


def _modules() -> List[Any]:
    return [socket, gevent.socket]
