"""Opt-in routing of TCP connections to KCP, so unmodified blocking client
code reaches KCP servers.

``patch(routes)`` -- every TCP connect to a routed address, however the
program makes it (``socket.create_connection``, ``socket.socket().connect()``
or ``connect_ex()``, after ``getaddrinfo`` or not), and the program gets a
real connected socket (see gkcp._bridge) carried over KCP::

    from gevent import monkey; monkey.patch_all()   # required, first
    import gkcp.monkey
    gkcp.monkey.patch({
        ("10.0.0.5", 6379): "kcptun://vps:29900?crypt=aes&key=secret&mode=fast3",
        "web.internal:80": "kcp://10.0.0.6:8080?nodelay=1&interval=10&resend=2&nc=1",
    })
    redis.Redis("10.0.0.5", 6379).ping()              # over KCP
    gkcp.monkey.unpatch()                             # TCP again

Route URLs and keys: see :mod:`gkcp.route`.  ``python -m gkcp run --route
HOST:PORT=URL script.py`` does the same for a whole program, unmodified.
What is patched: the connect of gevent's socket class (``socket.socket``
after ``patch_all``; ``connect`` and ``connect_ex`` both go through it, and
gevent's SSLSocket inherits it), its ``getpeername`` (a routed socket reports
the routed address) and ``getaddrinfo``/``gethostbyname``/
``gethostbyname_ex`` of :mod:`socket` and :mod:`gevent.socket` for routed
host names.  The bridges run in the program's gevent hub, hence
``patch_all`` first: a thread blocked in a plain socket call would starve
them (``patch`` refuses to run without it).

``patch_create_connection(routes)`` -- the older, narrower form: routes
``socket.create_connection`` only, to :func:`gkcp.create_connection`,
returning a native :class:`gkcp.Session` (no descriptor: no select, no
MSG_PEEK) -- the fastest path, no bridge::

    gkcp.monkey.patch_create_connection({
        ("10.0.0.5", 8080): dict(nodelay=1, interval=10, resend=2, nc=1),
    })
    http.client.HTTPConnection("10.0.0.5", 8080).request("GET", "/")  # over KCP

It matches the ``(host, port)`` exactly as the caller passes it to
``create_connection`` -- no name resolution: a route for
``("127.0.0.1", 80)`` does not catch ``("localhost", 80)``; list both if
clients use both.  Host names compare case-insensitively.  It patches the
``create_connection`` attribute of :mod:`socket` and of
:mod:`gevent.socket` (call ``gevent.monkey.patch_all()`` *before* this, since
it overwrites ``socket.create_connection``); code that bound the function
earlier, or that builds sockets itself (urllib3, hence requests), is not
routed by it.

Protocols in which the server speaks first (SMTP's greeting, so
``smtplib``; FTP, POP3, IMAP) work over both: a dialed session is verified
(the server answered a window ask) before connect returns, so the server
has accepted it and sends its greeting while the client waits.

Thread safety: patching is process-wide.  Patch and unpatch while no other
thread is connecting (e.g. at start-up); routed calls themselves may come
from any thread, and a session belongs to the thread (gevent hub) that
created it -- greenlet "threads" of ``patch_all`` share their OS thread's hub.
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import gevent.monkey
import gevent.socket

from . import _bridge
from ._addr import parse_address
from .options import make_options
from .route import RouteTable, Target
from .session import create_connection as kcp_create_connection

__all__ = ["patch", "patch_create_connection", "unpatch", "is_patched", "routes", "routed"]

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
    """Undo :func:`patch` and :func:`patch_create_connection`: put back the
    functions found when patching, forget the routes and end the routed
    connections still open (their sockets see EOF).  Idempotent.  A
    function replaced again by someone else after patching is left as it
    is."""
    global _routes, _table
    with _lock:
        _routes = {}
        while _saved:
            module, original = _saved.pop()
            current = module.create_connection
            if getattr(current, "__wrapped__", None) is original:
                module.create_connection = original
        _table = None
        while _installed:
            owner, name, original, own = _installed.pop()
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
            if getattr(current, "__wrapped__", None) is not original:
                continue
            if own:
                setattr(owner, name, original)
            else:  # it was inherited: uncover the base class's again
                delattr(owner, name)
        _bridge.close_all()


def is_patched() -> bool:
    return bool(_saved) or bool(_installed)


def routes() -> Dict[Route, Dict[str, Any]]:
    """A copy of the routes in force (keys as matched: host lower-cased)."""
    with _lock:
        return {key: dict(options) for key, options in _routes.items()}


def _modules() -> List[Any]:
    return [socket, gevent.socket]


# -- patch(): socket-level routing ------------------------------------------------

_table: Optional[RouteTable] = None
# (class or module, attribute, what was there, whether owner had it itself)
_installed: List[Tuple[Any, str, Any, bool]] = []


def patch(routes: Mapping[Any, Any]) -> None:
    """Route every TCP connect to each key of *routes* (``(host, port)`` or
    ``'host:port'``) through its target URL (``kcptun://...`` or
    ``kcp://...``, see :mod:`gkcp.route`); the program's socket becomes a
    real socket bridged to KCP.  Other addresses stay plain TCP.

    The routes replace those of an earlier call; the kcptun sessions of
    routes dropped are closed (their connections end).  Keys and URLs are
    checked here (ValueError naming the route) before anything is patched.
    Requires gevent's socket monkey patching (RuntimeError otherwise)."""
    table = RouteTable(routes)
    if not gevent.monkey.is_module_patched("socket"):
        raise RuntimeError("gkcp.monkey.patch() needs gevent's monkey patching first "
                           "(from gevent import monkey; monkey.patch_all()): routed connections are bridged "
                           "by greenlets, which a blocking socket call would starve")
    global _table
    with _lock:
        _table = table
        _bridge.close_pools_except(set(table.urls()))
        if _installed:
            return
        cls = gevent.socket.socket
        _install(cls, "_internal_connect" if hasattr(cls, "_internal_connect") else "connect", _routed_connect)
        _install(cls, "getpeername", _routed_getpeername)
        for module in _modules():
            _install(module, "getaddrinfo", _routed_getaddrinfo)
            _install(module, "gethostbyname", _routed_gethostbyname)
            _install(module, "gethostbyname_ex", _routed_gethostbyname_ex)


def routed() -> Dict[Tuple[str, int], str]:
    """The routes of :func:`patch` in force: (host, port) as matched -> URL."""
    table = _table
    return {} if table is None else {key: target.url for key, target in table.targets.items()}


def _install(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    own = name in owner.__dict__ if isinstance(owner, type) else True
    original = getattr(owner, name)
    replacement = make(original)
    replacement.__wrapped__ = original
    _installed.append((owner, name, original, own))
    setattr(owner, name, replacement)


def _label(key: Tuple[str, int], target: Target) -> str:
    return "gkcp route %s:%d -> %s" % (key[0], key[1], target.url)


def _routed_connect(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def connect(self: Any, address: Any) -> Any:
        table = _table
        if (table is None or self.type != socket.SOCK_STREAM or self.family not in (socket.AF_INET, socket.AF_INET6)
                or not isinstance(address, tuple) or len(address) < 2):
            return original(self, address)
        host, port = address[0], address[1]
        found = table.match(host, port)
        if found is None:
            name = table.name_of_placeholder(host)
            if name is not None:  # a routed name (from gethostbyname) on a port it has no route for
                address = (name,) + tuple(address[1:])
            address = _resolved(table, self, address)
            found = table.match(address[0], port)
            if found is None:
                return original(self, address)
        key, target = found
        ip = table.placeholder.get(key[0], key[0])
        peer = (ip, port) if self.family == socket.AF_INET else (ip, port, 0, 0)
        return _bridge.connect(self, original, target, peer, _label(key, target))
    return connect


def _resolved(table: RouteTable, sock: Any, address: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """A host name the program connects to directly, looked up once here
    (when some route has this port), so that a name resolving to a routed
    address is routed too; the result goes on to the real connect."""
    host = address[0]
    if not table.resolves_for(host, address[1]):
        return address
    infos = _original("getaddrinfo")(host, address[1], sock.family, socket.SOCK_STREAM)
    return infos[0][4] if infos else address


def _original(name: str) -> Any:
    for owner, attribute, original, _ in _installed:
        if owner is gevent.socket and attribute == name:
            return original
    return getattr(gevent.socket, name)


def _routed_getpeername(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def getpeername(self: Any) -> Any:
        peer = original(self)
        if isinstance(peer, tuple) and _bridge.is_loopback_leg(peer):
            routed_peer = _bridge.peer_of(self.getsockname())
            if routed_peer is not None:
                return routed_peer
        return peer
    return getpeername


def _service_port(port: Any) -> int:
    if port is None:
        return 0
    if isinstance(port, int):
        return port
    text = port.decode() if isinstance(port, bytes) else str(port)
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype") from None


def _routed_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        table = _table
        name = host.decode() if isinstance(host, bytes) else host
        if table is None or table.name_placeholder(name) is None:  # not a routed name
            return original(host, port, family, type, proto, flags)
        number = _service_port(port)
        placeholder = table.name_placeholder(name, number)
        if placeholder is None:  # a routed name on another port: resolved as ever
            return original(host, port, family, type, proto, flags)
        if family not in (socket.AF_UNSPEC, socket.AF_INET):
            raise socket.gaierror(socket.EAI_ADDRFAMILY, "gkcp: routed name %s has an IPv4 placeholder only" % name)
        protocols: Dict[int, int] = {socket.SOCK_STREAM: socket.IPPROTO_TCP, socket.SOCK_DGRAM: socket.IPPROTO_UDP}
        kinds = [type] if type else list(protocols)
        canonical = name if flags & socket.AI_CANONNAME else ""
        return [(socket.AF_INET, kind, proto or protocols.get(kind, 0), canonical, (placeholder, number))
                for kind in kinds]
    return getaddrinfo


def _routed_gethostbyname(original: Callable[[str], str]) -> Callable[[str], str]:
    def gethostbyname(host: str) -> str:
        table = _table
        placeholder = None if table is None else table.name_placeholder(host)
        return original(host) if placeholder is None else placeholder
    return gethostbyname


def _routed_gethostbyname_ex(original: Callable[[str], Any]) -> Callable[[str], Any]:
    def gethostbyname_ex(host: str) -> Any:
        table = _table
        placeholder = None if table is None else table.name_placeholder(host)
        return original(host) if placeholder is None else (host, [], [placeholder])
    return gethostbyname_ex
