"""Routes for gkcp.monkey and ``gkcp run``: which TCP destinations travel
over KCP, and how.

A route maps a ``(host, port)`` a program connects to onto a target URL:

``kcptun://SERVER:PORT?crypt=aes&key=secret&mode=fast3&...``
    kcptun's client model: each connection is one smux stream over KCP
    sessions shared per target (``conn`` of them, round robin), to a
    kcptun-compatible server (Debian's kcptun-server, ``gkcp tunnel
    server``) that forwards it to its ``-t`` target.  Parameters are
    kcptun-client's flags (``crypt``, ``key``, ``mode``, ``conn``,
    ``autoexpire``, ``scavengettl``, ``mtu``, ``sndwnd``, ``rcvwnd``,
    ``datashard``/``ds``, ``parityshard``/``ps``, ``dscp``, ``nocomp``,
    ``acknodelay``, ``nodelay``, ``interval``, ``resend``, ``nc``,
    ``sockbuf``, ``smuxver``, ``smuxbuf``, ``streambuf``, ``keepalive``,
    ``c`` for a kcptun JSON file) with kcptun's defaults, plus
    ``connect_timeout`` (seconds, default 5).
``kcp://SERVER:PORT?nodelay=1&interval=10&...``
    one native KCP session per connection (:func:`gkcp.dial` with these
    options) to a server that speaks the application protocol itself
    (:class:`gkcp.server.KCPServer`).  KCP has no FIN: the server does not
    see the program's half-close or close, nor the program the server's.

Query values are percent-decoded (``+`` stays ``+``); each parameter at most
once.  A bad URL raises ValueError naming the route.

Route keys are ``(host, port)`` or ``'host:port'``; host an IPv4/IPv6
literal (compared as addresses: ``10.0.0.05`` is not a new key) or a name
(case-insensitive).  A name route catches connects to the name itself and to
what :func:`socket.getaddrinfo`/``gethostbyname`` return for it while
patched, for a routed port or no port: a placeholder address in
127.255.0.0/16 standing for the name (the name is not looked up, so it need
not exist in DNS).  The name's other ports are untouched: they resolve and
connect as ever (a placeholder connected to on such a port means the name).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from ._addr import parse_address
from .options import Options, make_options

__all__ = ["KcptunTarget", "KcpTarget", "Target", "RouteTable", "parse_target", "parse_route_arg"]

Key = Tuple[str, int]

#: seconds a route waits for its server to answer before connect() fails (the program's socket timeout, if
#: shorter, wins)
DEFAULT_CONNECT_TIMEOUT = 5.0

# kcptun-client flags that belong to a process, not to one route
_KCPTUN_PROCESS_FLAGS = {"localaddr", "l", "remoteaddr", "r", "log", "quiet", "snmplog", "snmpperiod"}
# gkcp options a dialed session cannot use
_KCP_REFUSED = {"block": "a BlockCrypt object cannot be written in a URL: use crypt= and key=",
                "reuse_port": "a listener option", "backlog": "a listener option"}
PLACEHOLDER_NET = ipaddress.ip_network("127.255.0.0/16")


@dataclasses.dataclass(frozen=True)
class KcptunTarget:
    """A kcptun:// URL, parsed: ``config`` is the kcptun client's
    TunnelConfig (remoteaddr = the server)."""

    url: str
    server: Key
    config: Any
    connect_timeout: float


@dataclasses.dataclass(frozen=True)
class KcpTarget:
    """A kcp:// URL, parsed: ``options`` are gkcp.dial's keyword arguments."""

    url: str
    server: Key
    options: Dict[str, Any]
    connect_timeout: float


Target = Union[KcptunTarget, KcpTarget]


def _query(query: str) -> Dict[str, str]:
    params: Dict[str, str] = {}
    for part in query.split("&") if query else ():
        name, sep, value = part.partition("=")
        name = unquote(name)
        if not name or not sep:
            raise ValueError("parameter %r is not name=value" % part)
        if name in params:
            raise ValueError("parameter %r given twice" % name)
        params[name] = value  # percent-decoded by the caller: kcp:// keys are bytes
    return params


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("%s=%s: not a number of seconds" % (name, text)) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("%s=%s: must be a positive number of seconds" % (name, text))
    return value


def _kcp_options(params: Dict[str, str]) -> Dict[str, Any]:
    """gkcp.dial options from URL text, typed by Options' defaults."""
    fields = {f.name: f for f in dataclasses.fields(Options)}
    options: Dict[str, Any] = {}
    for name, raw in params.items():
        if name in _KCP_REFUSED:
            raise ValueError("%s: %s" % (name, _KCP_REFUSED[name]))
        if name not in fields:
            raise ValueError("unknown option %r (known: %s)"
                             % (name, ", ".join(sorted(set(fields) - set(_KCP_REFUSED)))))
        if name == "key":
            options[name] = unquote_to_bytes(raw)
            continue
        text = unquote(raw)
        default = fields[name].default
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError("%s=%s: not a boolean (1/0, true/false)" % (name, text))
            options[name] = lowered in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            try:
                options[name] = int(text)
            except ValueError:
                raise ValueError("%s=%s: not an integer" % (name, text)) from None
        elif isinstance(default, float) or name == "idle_timeout":
            try:
                options[name] = float(text)
            except ValueError:
                raise ValueError("%s=%s: not a number" % (name, text)) from None
        else:  # crypt: a cipher name
            options[name] = text
    make_options(**options)  # ValueError/TypeError naming the option
    return options


def parse_target(url: str, route: str = "route") -> Target:
    """A kcptun:// or kcp:// URL, checked; errors are ValueError naming
    *route* and saying what is wrong."""
    if not isinstance(url, str):
        raise TypeError("%s: the target must be a URL string, not %s" % (route, type(url).__name__))
    from .tunnel.config import make_config
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("kcptun", "kcp"):
            raise ValueError("the scheme must be kcptun:// or kcp://")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no user:password@ in the URL (the key is a parameter: ?key=...)")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("nothing may follow SERVER:PORT but ?parameters")
        if not parts.hostname:
            raise ValueError("the server host is missing (kcptun://SERVER:PORT)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError("bad server port: %s" % exc) from None
        if not port:
            raise ValueError("the server port is missing or 0 (kcptun://SERVER:PORT)")
        server = (parts.hostname, port)
        params = _query(parts.query)
        connect_timeout = _seconds("connect_timeout", unquote(params.pop("connect_timeout"))) \
            if "connect_timeout" in params else DEFAULT_CONNECT_TIMEOUT
        if scheme == "kcp":
            return KcpTarget(url, server, _kcp_options(params), connect_timeout)
        settings = {name: unquote(value) for name, value in params.items()}
        for name in settings:
            if name in _KCPTUN_PROCESS_FLAGS:
                raise ValueError("%s is not a route parameter (the server is the URL's host:port)" % name)
        settings["remoteaddr"] = "%s:%d" % ("[%s]" % server[0] if ":" in server[0] else server[0], port)
        return KcptunTarget(url, server, make_config("client", settings), connect_timeout)
    except (ValueError, TypeError) as exc:
        raise ValueError("%s -> %s: %s" % (route, url, exc)) from None


def _normal_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return host.lower().rstrip(".")


def route_key(address: Any) -> Key:
    """The key a route is stored and matched under (ValueError/TypeError if
    address is not (host, port) or 'host:port')."""
    host, port = parse_address(address, "route")
    if not host:
        raise ValueError("route %r: the host is missing" % (address,))
    if port == 0:
        raise ValueError("route %r: port 0 is never connected to" % (address,))
    return _normal_host(host), port


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return True


class RouteTable:
    """Routes by key, and the placeholder address of every routed name."""

    def __init__(self, routes: Mapping[Any, Any]) -> None:
        self.targets: Dict[Key, Target] = {}
        for address, url in routes.items():
            key = route_key(address)
            label = "route %s:%d" % key
            self.targets[key] = url if isinstance(url, (KcptunTarget, KcpTarget)) else parse_target(url, label)
        names = sorted({host for host, _ in self.targets if _is_name(host)})
        if len(names) > PLACEHOLDER_NET.num_addresses - 2:
            raise ValueError("too many routed host names (%d)" % len(names))
        # placeholder <-> name, numbered in a stable order
        self.placeholder = {name: str(PLACEHOLDER_NET[i + 1]) for i, name in enumerate(names)}
        self.name_of = {ip: name for name, ip in self.placeholder.items()}
        self.ports = {port for _, port in self.targets}
        self._address_ports = {port for host, port in self.targets if not _is_name(host)}

    def __bool__(self) -> bool:
        return bool(self.targets)

    def urls(self) -> Iterable[str]:
        return (target.url for target in self.targets.values())

    def name_placeholder(self, host: Any, port: Any = None) -> Optional[str]:
        """The placeholder IPv4 address of a routed host name, for a lookup
        of it on a routed port or on no port (gethostbyname); else None:
        the name's other ports resolve as ever."""
        if not isinstance(host, str):
            return None
        name = host.lower().rstrip(".")
        placeholder = self.placeholder.get(name)
        if placeholder is None or (port and (name, port) not in self.targets):
            return None
        return placeholder

    def match(self, host: Any, port: Any) -> Optional[Tuple[Key, Target]]:
        """(key, target) for a destination as a program gives it to
        connect(): a routed address, a routed name or its placeholder."""
        if not isinstance(host, str) or not isinstance(port, int) or port not in self.ports:
            return None
        normal = _normal_host(host)
        normal = self.name_of.get(normal, normal)
        target = self.targets.get((normal, port))
        return None if target is None else ((normal, port), target)

    def resolves_for(self, host: Any, port: Any) -> bool:
        """Whether a name the program connects to directly must be looked
        up to see if it stands for a routed address (some address route
        has this port)."""
        return isinstance(host, str) and port in self._address_ports and _is_name(host)

    def name_of_placeholder(self, host: Any) -> Optional[str]:
        """The routed name a placeholder address stands for, else None."""
        return self.name_of.get(host) if isinstance(host, str) else None


def parse_route_arg(text: str) -> Tuple[Key, Target]:
    """``HOST:PORT=URL`` (gkcp run --route) -> (key, target)."""
    address, sep, url = text.partition("=")
    if not sep or not address or not url:
        raise ValueError("--route %r: expected HOST:PORT=URL, e.g. 10.0.0.5:6379=kcptun://vps:29900?key=secret"
                         % text)
    try:
        key = route_key(address)
    except (TypeError, ValueError) as exc:
        raise ValueError("--route %r: %s" % (text, exc)) from None
    return key, parse_target(url, "route %s:%d" % key)
