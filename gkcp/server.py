"""gevent servers over KCP: :class:`KCPServer` (``StreamServer``'s contract)
and :class:`KCPWSGIServer` (``pywsgi.WSGIServer`` served over KCP).

A handler written for :class:`gevent.server.StreamServer` runs unchanged: it
is called as ``handle(session, address)`` with a :class:`gkcp.Session`, which
offers the socket methods such handlers use (``recv``, ``sendall``,
``makefile``, ``settimeout``, ``close``...), and the session is closed when
the handler returns.

``BaseServer`` waits for new connections by watching the listening socket's
descriptor.  A UDP descriptor being readable does not mean a session is
waiting to be accepted (it is read by gkcp's reader, which may be
handling packets of established sessions), so these servers replace that
watcher with an *accept greenlet* blocked in ``Listener.accept()``; the
pool, spawn, ``max_accept``, error back-off and stop semantics stay
``BaseServer``'s.
"""
from __future__ import annotations

import socket
import sys
from typing import Any, Callable, Dict, Optional, Tuple, Union

import gevent
from gevent import pywsgi
from gevent.baseserver import BaseServer

from ._addr import parse_address
from ._log import log
from .listener import Listener, listen
from .options import OPTION_NAMES, make_options
from .session import Session

__all__ = ["KCPServer", "KCPWSGIServer"]

Address = Union[Tuple[str, int], str]
Handler = Callable[[Session, Tuple[Any, ...]], Any]


class KCPServer(BaseServer):
    """Accepts KCP sessions and runs ``handle(session, address)`` for each, in
    a greenlet made by *spawn* -- :class:`gevent.server.StreamServer`'s
    contract over KCP.

    :param listener: an address to listen on -- ``(host, port)`` or
        ``'host:port'`` (port 0 picks a free port; see :attr:`server_port`
        after :meth:`start`) -- or a :class:`gkcp.Listener`.  The server owns
        a listener given to it: it makes its ``accept`` blocking, and
        :meth:`close`/:meth:`stop` close it.
    :param handle: ``handle(session, address)``; or define a ``handle``
        method in a subclass.  When it returns (or raises, or is killed) the
        session is closed; ``close()`` still delivers queued data (see the
        ``linger`` option).
    :param spawn: ``'default'`` (a new greenlet per session, no limit),
        a :class:`gevent.pool.Pool` or an int (a pool of that size: while it
        is full no session is accepted; packets from new peers then wait in
        the listener's ``backlog``), ``None`` (run the handler in the accept
        greenlet itself, one session at a time) or any callable used like
        ``gevent.spawn``.
    :param kcp_options: the options of :func:`gkcp.listen` (``nodelay=1``,
        ``crypt='aes', key=...``, ``idle_timeout=30``...), applied to every
        accepted session.  Not allowed with a ready-made Listener, which has
        its own.

    KCP has no close handshake on the wire: a gkcp client's ``recv`` sees
    the end of a session closed by the handler once its next packet (at the
    latest a keepalive probe) is answered by a fresh session of the
    listener (ConnectionResetError, if the server had acknowledged data of
    the client), or through its own ``idle_timeout``.  Protocols that
    delimit messages themselves (HTTP with Content-Length or chunking, line
    protocols) are not affected.
    """

    #: the accept greenlet yields to others after this many sessions accepted in a row
    max_accept = 100

    def __init__(self, listener: Union[Address, Listener], handle: Optional[Handler] = None,
                 spawn: Any = "default", **kcp_options: Any) -> None:
        _check_callable("handle", handle)
        _check_spawn(spawn)
        self._init_kcp(listener, kcp_options)
        super().__init__(listener, handle=handle, spawn=spawn)

    def _init_kcp(self, listener: Any, kcp_options: Dict[str, Any]) -> None:
        make_options(**kcp_options)  # fail here, not at start(), on a bad option
        if isinstance(listener, Listener) and kcp_options:
            raise TypeError("KCP options are not allowed with a Listener, which has its own: %s"
                            % ", ".join(sorted(kcp_options)))
        self.kcp_options: Dict[str, Any] = dict(kcp_options)
        self._acceptor: Optional[gevent.Greenlet] = None

    def set_handle(self, handle: Optional[Handler]) -> None:
        super().set_handle(handle)
        self._handle = _logging_errors(self.handle, self)  # what BaseServer.set_handle chose

    # -- listener ------------------------------------------------------------

    def set_listener(self, listener: Union[Address, Listener]) -> None:
        if isinstance(listener, Listener):
            self.socket = listener
            self.address = listener.getsockname()
            self.family = socket.AF_INET6 if len(self.address) > 2 else socket.AF_INET
        else:
            host, port = parse_address(listener, "listener")
            self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.address = (host, port)

    @classmethod
    def get_listener(cls, address: Address, **kcp_options: Any) -> Listener:
        """The Listener :meth:`init_socket` opens for an address."""
        return listen(address, **kcp_options)

    def init_socket(self) -> None:
        """Open the Listener (when given an address); called by :meth:`start`."""
        if not hasattr(self, "socket"):
            self.socket = self.get_listener(self.address, **self.kcp_options)
            self.address = self.socket.getsockname()
        # the accept greenlet waits in accept(); a timeout would only make it spin
        self.socket.settimeout(None)

    # -- accepting -------------------------------------------------------------

    def start_accepting(self) -> None:
        """Start the accept greenlet (no-op while it runs)."""
        if self._acceptor is None:
            self._acceptor = gevent.spawn(self._accept_loop)

    def stop_accepting(self) -> None:
        """End the accept greenlet; sessions already accepted are unaffected.
        A session the greenlet accepts while being stopped is closed."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None and acceptor is not gevent.getcurrent():
            acceptor.kill(block=False)  # may be called from the hub (pool callbacks)
        super().stop_accepting()

    def _accept_loop(self) -> None:
        me = gevent.getcurrent()
        in_a_row = 0
        while self._acceptor is me:
            if self.full():
                self._wait_for_room()
                continue
            try:
                args = self.do_read()
            except Exception as ex:  # noqa: BLE001 -- reported through the hub, as BaseServer does
                if self._acceptor is not me:
                    return
                self.loop.handle_error(self, *sys.exc_info())
                if self.is_fatal_error(ex):
                    log.error("%s: accepting failed, closing the server", self, exc_info=True)
                    sys.stderr.write("ERROR: %s failed with %s\n" % (self, str(ex) or repr(ex)))
                    self.close()
                    return
                self._back_off()
                continue
            self.delay = self.min_delay
            if self._acceptor is not me:
                args[0].close()
                return
            try:
                self.do_handle(*args)
            except Exception:  # noqa: BLE001 -- the spawn failed; do_handle closed the session
                self.loop.handle_error((args[1:], self), *sys.exc_info())
                self._back_off()
                continue
            in_a_row += 1
            if in_a_row >= self.max_accept:
                in_a_row = 0
                gevent.sleep(0)

    def _wait_for_room(self) -> None:
        if self.pool is not None and hasattr(self.pool, "wait_available"):
            self.pool.wait_available()
        else:
            gevent.sleep(self.min_delay)  # a subclass's own full() has nothing to wait on

    def _back_off(self) -> None:
        # BaseServer's error policy: pause accepting, doubling the pause per
        # consecutive failure up to max_delay; a negative delay means no pause.
        if self.delay >= 0:
            gevent.sleep(self.delay)
            self.delay = min(self.max_delay, self.delay * 2)

    def do_read(self) -> Tuple[Session, Tuple[Any, ...]]:
        """The next session and its peer address (blocks in ``accept``)."""
        return self.socket.accept()

    def do_close(self, session: Session, *args: Any) -> None:
        session.close()

    # -- lifecycle (documented here for KCP; the behaviour is BaseServer's) -----

    def start(self) -> None:
        """Open the listener if needed and start accepting; returns at once.
        Afterwards :attr:`started` is true and :attr:`address`,
        :attr:`server_host` and :attr:`server_port` give the bound address."""
        super().start()

    def serve_forever(self, stop_timeout: Optional[float] = None) -> None:
        """:meth:`start` if not started, then block until :meth:`stop` or
        :meth:`close` is called (from another greenlet); on the way out
        :meth:`stop` runs with *stop_timeout*."""
        super().serve_forever(stop_timeout=stop_timeout)

    def close(self) -> None:
        """Stop accepting and close the listener (sessions waiting to be
        accepted are closed).  Running handlers and their sessions are left
        alone.  Idempotent."""
        super().close()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Graceful stop: :meth:`close`, then -- when *spawn* is a pool (a Pool
        or an int) -- wait up to *timeout* seconds (default
        :attr:`stop_timeout`, 1 s) for running handlers to return and kill
        those still running (their sessions are closed as they unwind).
        With ``spawn='default'`` handlers are not tracked and keep running, as
        with StreamServer.  Idempotent; also what ``with server:`` does on exit."""
        super().stop(timeout=timeout)

    def __repr__(self) -> str:
        return "<%s address=%s>" % (type(self).__name__, getattr(self, "address", "?"))

    __str__ = __repr__


class KCPWSGIServer(KCPServer, pywsgi.WSGIServer):
    """:class:`gevent.pywsgi.WSGIServer` over KCP.

    Takes WSGIServer's keyword arguments (``log``, ``error_log``,
    ``handler_class``, ``environ``, ``spawn``...) and gkcp's options
    (``nodelay``, ``crypt``, ``idle_timeout``...) side by side; ``backlog``
    is gkcp's (sessions waiting to be accepted).  TLS keyword arguments
    (``ssl_context``, ``keyfile``...) are refused: ``ssl.wrap_socket`` needs a
    kernel socket; run TLS inside the application protocol with
    ``SSLContext.wrap_bio`` instead (see examples/tls_over_kcp.py).

    Clients reach it with any HTTP library that connects through
    ``socket.create_connection`` once :mod:`gkcp.monkey` routes the address
    to KCP.  An idle keep-alive connection holds a handler until the
    client's next request or the server's ``idle_timeout``: set one.
    """

    def __init__(self, listener: Union[Address, Listener], application: Optional[Callable[..., Any]] = None,
                 **kwargs: Any) -> None:
        kcp_options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_NAMES}
        tls = sorted(set(kwargs) - _WSGI_KWARGS)
        if tls:
            raise TypeError("KCPWSGIServer does not take %s: not a WSGIServer or gkcp option "
                            "(TLS needs SSLContext.wrap_bio over a session)" % ", ".join(tls))
        _check_callable("application", application)
        _check_spawn(kwargs.get("spawn", "default"))
        # WSGIServer.__init__ reaches KCPServer's methods through the MRO but
        # not KCPServer.__init__, so set up its state first.
        self._init_kcp(listener, kcp_options)
        pywsgi.WSGIServer.__init__(self, listener, application, **kwargs)

    def init_socket(self) -> None:
        KCPServer.init_socket(self)
        self.update_environ()


_WSGI_KWARGS = frozenset({"spawn", "log", "error_log", "handler_class", "environ"})
_MAX_POOL = 2 ** 31 - 1


def _logging_errors(handle: Handler, server: KCPServer) -> Handler:
    """handle, logging what it raises (ERROR, with the traceback) before the
    hub reports it as for any greenlet."""

    def handle_logging_errors(session: Session, address: Tuple[Any, ...]) -> Any:
        try:
            return handle(session, address)
        except Exception:
            log.error("%s: handler failed for the session from %s", server, address, exc_info=True)
            raise

    return handle_logging_errors


def _check_callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError("%s must be callable or None, not %s" % (name, type(value).__name__))


def _check_spawn(spawn: Any) -> None:
    """BaseServer takes anything here and fails at the first session; fail now."""
    if spawn is None or spawn == "default" or hasattr(spawn, "spawn"):
        return
    if isinstance(spawn, int) and not isinstance(spawn, bool):
        if not 1 <= spawn <= _MAX_POOL:
            raise ValueError("spawn (a pool size) must be in 1..%d, got %d" % (_MAX_POOL, spawn))
        return
    if not callable(spawn):
        raise TypeError("spawn must be 'default', None, a pool size, a Pool or a callable, not %r" % (spawn,))
