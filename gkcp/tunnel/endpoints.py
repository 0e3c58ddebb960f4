"""The two ends of a kcptun tunnel, on gevent.

    client:  TCP accept on --localaddr -> smux stream over one of --conn KCP
             sessions (round robin) -> --remoteaddr
    server:  KCP accept on --listen -> smux server per session -> each
             stream a TCP (or unix socket) connection to --target

Sessions are set up exactly as kcptun 20210922 sets up its own (stream mode,
no write delay, the mode's nodelay parameters, windows, MTU, FEC, DSCP,
socket buffers, snappy framing unless --nocomp, smux version and buffers),
so either end talks to a kcptun peer.  ``run()`` serves until SIGTERM or
SIGINT, then closes everything and returns 0; SIGUSR1 logs the SNMP
counters, as kcptun does.
"""
from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from typing import Any, Iterator, List, Optional, Tuple

import gevent
from gevent import socket as gsocket
from gevent.event import Event

from .. import smux
from .._addr import parse_address
from ..listener import listen
from ..session import dial
from ..snmp import snmp
from .compress import CompressedConn
from .config import TunnelConfig
from .relay import Traffic, describe, relay, tcp_keepalive
from .status import StatusLine, snmp_logger

__all__ = ["TunnelClient", "TunnelServer"]

log = logging.getLogger("gkcp.tunnel")

#: seconds between kcptun's reconnection attempts (client waitConn)
RECONNECT_DELAY = 1.0
#: seconds between scavenger passes (kcptun's ticker)
SCAVENGE_PERIOD = 1.0


def _set_dscp(sock: socket.socket, dscp: int) -> None:
    """kcp-go SetDSCP: the 6-bit DSCP in the TOS / traffic-class byte."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)


def _resolve(address: str, kind: int, passive: bool) -> Tuple[int, Tuple[Any, ...]]:
    """(family, sockaddr) of a Go-style "host:port" (":port": every local
    address when passive), first of what getaddrinfo gives."""
    host, port = parse_address(address)
    infos = gsocket.getaddrinfo(host or None, port, 0, kind, 0, socket.AI_PASSIVE if passive else 0)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class _Tunnel:
    """What both ends share: config, counters, logging helpers, the run loop."""

    role = ""

    def __init__(self, config: TunnelConfig) -> None:
        self.config = config
        self.traffic = Traffic()
        self.block = config.block()
        self.options = config.kcp_options()
        self.smux_config = config.smux_config()
        self.listener: Any = None
        self._stopping = Event()
        self._greenlets: List[gevent.Greenlet] = []
        # (smux session, KCP session) pairs alive now
        self._muxes: List[Tuple[smux.Session, Any]] = []

    # -- logging as kcptun ---------------------------------------------------------

    def stream_log(self, *words: Any) -> None:
        """kcptun's 'stream opened/closed' lines, silenced by --quiet."""
        if not self.config.quiet:
            log.info(" ".join(str(w) for w in words))

    def log_settings(self) -> None:
        c = self.config
        for line in self.settings_lines():
            log.info(line)
        log.info("nodelay parameters: %d %d %d %d", c.nodelay, c.interval, c.resend, c.nc)
        log.info("sndwnd: %d rcvwnd: %d", c.sndwnd, c.rcvwnd)
        log.info("compression: %s", str(not c.nocomp).lower())
        log.info("mtu: %d", c.mtu)
        log.info("datashard: %d parityshard: %d", c.datashard, c.parityshard)
        log.info("acknodelay: %s", str(c.acknodelay).lower())
        log.info("dscp: %d  sockbuf: %d  smuxbuf: %d  streambuf: %d  keepalive: %d",
                 c.dscp, c.sockbuf, c.smuxbuf, c.streambuf, c.keepalive)

    def settings_lines(self) -> List[str]:
        raise NotImplementedError

    # -- sessions --------------------------------------------------------------------

    def _forget_ended(self) -> None:
        self._muxes[:] = [(m, k) for m, k in self._muxes if not m.closed]

    def kcp_sessions(self) -> Iterator[Any]:
        """KCP sessions whose smux session is still running (for the status line)."""
        self._forget_ended()
        return iter([k for _, k in self._muxes])

    def _mux_over(self, kcp: Any) -> smux.Session:
        conn = kcp if self.config.nocomp else CompressedConn(kcp)
        log.info("smux version: %d on connection: %s -> %s", self.config.smuxver,
                 describe(kcp.getsockname()), describe(kcp.getpeername()))
        maker = smux.client if self.role == "client" else smux.server
        mux = maker(conn, self.smux_config)
        self._forget_ended()  # the list stays as long as the live sessions
        self._muxes.append((mux, kcp))
        return mux

    def _udp_socket(self, address: Any, passive: bool) -> Optional[socket.socket]:
        """With --dscp, the UDP socket made here as kcptun sets it up (DSCP,
        --sockbuf buffers; bound to address when listening); None otherwise:
        gkcp then makes its own."""
        if not self.config.dscp:
            return None
        family, sockaddr = _resolve(address, socket.SOCK_DGRAM, passive)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, self.config.sockbuf)
            try:
                _set_dscp(sock, self.config.dscp)
            except OSError as exc:
                log.info("SetDSCP: %s", exc)  # kcptun logs and goes on
            sock.bind(sockaddr if passive else ("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        except BaseException:
            sock.close()
            raise
        return sock

    # -- running ---------------------------------------------------------------------

    def spawn(self, function: Any, *args: Any) -> gevent.Greenlet:
        g = gevent.spawn(function, *args)
        self._greenlets.append(g)
        g.link(lambda done: self._greenlets.remove(done) if done in self._greenlets else None)
        return g

    def stop(self) -> None:
        """Ask run() to return (what SIGTERM and SIGINT do)."""
        self._stopping.set()

    def start(self) -> None:
        """Bind the listening socket (errors raise here, before serving)."""
        raise NotImplementedError

    def serve(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        gevent.killall(list(self._greenlets))  # the accept loop first, then what it started
        if self.listener is not None:
            self.listener.close()
        for mux, _ in self._muxes:
            mux.close()
        self._muxes.clear()
        # self.block stays open: closed KCP sessions keep retransmitting
        # (linger) with it; it is freed with the last of them.

    def run(self, status: bool = True) -> int:
        """Serve until stop() or a signal; 0 on a clean stop, 1 if serving failed."""
        handlers = [gevent.signal_handler(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)]
        # kcptun: SIGUSR1 logs the SNMP counters
        handlers.append(gevent.signal_handler(signal.SIGUSR1, lambda: log.info("KCP SNMP:%s", snmp())))
        status_line = None
        try:
            try:
                self.start()
            except OSError as exc:  # kcptun: checkError, exit status != 0
                log.info("%s: cannot listen: %s", self.role, exc)
                return 1
            self.log_settings()
            if status and StatusLine.wanted(sys.stderr):
                status_line = StatusLine(self.traffic, self.kcp_sessions, sys.stderr)
                for handler in log.handlers:
                    if hasattr(handler, "status"):
                        handler.status = status_line
                self.spawn(status_line.run)
            if self.config.snmplog:
                self.spawn(snmp_logger, self.config.snmplog, self.config.snmpperiod)
            server = self.spawn(self.serve)
            gevent.wait([self._stopping, server], count=1)
            if server.dead and not server.successful():
                log.info("%s stopped: %s", self.role, server.exception)
                return 1
            log.info("%s: closing on signal", self.role)
            return 0
        finally:
            for handler in handlers:
                handler.cancel()
            if status_line is not None:
                status_line.clear()
            self.close()


class TunnelClient(_Tunnel):
    """kcptun's client: every TCP connection accepted on localaddr becomes
    one smux stream; streams go round robin over ``conn`` KCP sessions, each
    replaced when it ended or, with ``autoexpire``, when it expired (an
    expired session keeps its streams until ``scavengettl`` more seconds)."""

    role = "client"

    def __init__(self, config: TunnelConfig) -> None:
        super().__init__(config)
        self._slots: List[Optional[Tuple[smux.Session, float]]] = [None] * config.conn
        self._round_robin = 0
        self._expired: List[Tuple[smux.Session, float]] = []  # (session, close-at), the scavenger's list

    def settings_lines(self) -> List[str]:
        c = self.config
        return ["smux version: %d" % c.smuxver, "listening on: %s" % describe(self.address),
                "encryption: %s" % c.crypt, "remote address: %s" % c.remoteaddr,
                "conn: %d  autoexpire: %d  scavengettl: %d" % (c.conn, c.autoexpire, c.scavengettl)]

    @property
    def address(self) -> Tuple[Any, ...]:
        assert self.listener is not None
        return self.listener.getsockname()

    def start(self) -> None:
        family, sockaddr = _resolve(self.config.localaddr, socket.SOCK_STREAM, passive=True)
        sock = gsocket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        self.listener = sock

    def _create_session(self) -> smux.Session:
        """kcptun's createConn."""
        kcp = dial(self.config.remoteaddr, sock=self._udp_socket(self.config.remoteaddr, passive=False),
                   block=self.block, **self.options)
        try:
            return self._mux_over(kcp)
        except BaseException:
            kcp.close()
            raise

    def _wait_session(self) -> smux.Session:
        """kcptun's waitConn: retry every second until a session exists."""
        while True:
            try:
                return self._create_session()
            except (OSError, ValueError) as exc:
                log.info("re-connecting: %s", exc)
                gevent.sleep(RECONNECT_DELAY)

    def session_for_next_stream(self) -> smux.Session:
        """The round-robin slot's session, replaced first if it ended or expired."""
        index = self._round_robin % len(self._slots)
        self._round_robin += 1
        slot = self._slots[index]
        expire = self.config.autoexpire
        now = time.monotonic()
        if slot is None or slot[0].closed or (expire > 0 and now > slot[1]):
            session = self._wait_session()
            slot = (session, time.monotonic() + expire)
            self._slots[index] = slot
            if expire > 0:
                self._expired.append((session, slot[1] + self.config.scavengettl))
        return slot[0]

    def _scavenge(self) -> None:
        """kcptun's scavenger: close expired sessions once their TTL passed."""
        while True:
            gevent.sleep(SCAVENGE_PERIOD)
            now = time.monotonic()
            keep = []
            for session, close_at in self._expired:
                if session.closed:
                    log.info("scavenger: session normally closed")
                elif now > close_at:
                    name = describe(session.getsockname())
                    session.close()
                    log.info("scavenger: session closed due to ttl: %s", name)
                else:
                    keep.append((session, close_at))
            self._expired = keep

    def serve(self) -> None:
        assert self.listener is not None
        if self.config.autoexpire > 0:
            self.spawn(self._scavenge)
        while True:
            tcp, _ = self.listener.accept()
            tcp_keepalive(tcp)
            session = self.session_for_next_stream()
            self.spawn(self._handle, session, tcp)

    def _handle(self, session: smux.Session, tcp: Any) -> None:
        """kcptun's handleClient."""
        try:
            stream = session.open_stream()
        except OSError as exc:
            self.stream_log(exc)
            tcp.close()
            return
        where = "in: %s out: %s(%d)" % (describe(tcp.getpeername()), describe(session.getpeername()), stream.id)
        self.stream_log("stream opened", where)
        relay(tcp, stream, self.traffic, upward_from_tcp=True, label=where)
        self.stream_log("stream closed", where)



class TunnelServer(_Tunnel):
    """kcptun's server: one smux server per KCP session; every stream a new
    connection to the target (TCP host:port, or a unix socket path)."""

    role = "server"

    def __init__(self, config: TunnelConfig) -> None:
        super().__init__(config)
        try:
            self._target: Any = parse_address(config.target)
            self._unix = False
        except (TypeError, ValueError):  # kcptun: not host:port means a unix socket path
            self._target = config.target
            self._unix = True

    def settings_lines(self) -> List[str]:
        c = self.config
        return ["smux version: %d" % c.smuxver, "listening on: %s" % describe(self.address),
                "target: %s" % c.target, "encryption: %s" % c.crypt]

    @property
    def address(self) -> Tuple[Any, ...]:
        return self.listener.getsockname()

    def start(self) -> None:
        self.listener = listen(self.config.listen, sock=self._udp_socket(self.config.listen, passive=True),
                               block=self.block, **self.options)

    def serve(self) -> None:
        while True:
            kcp, address = self.listener.accept()
            log.info("remote address: %s", describe(address))
            self.spawn(self._handle_mux, kcp)

    def _handle_mux(self, kcp: Any) -> None:
        """kcptun's handleMux."""
        try:
            mux = self._mux_over(kcp)
        except BaseException:
            kcp.close()
            raise
        try:
            while True:
                try:
                    stream = mux.accept_stream()
                except OSError as exc:
                    log.info("%s", exc)
                    return
                self.spawn(self._handle_stream, stream)
        finally:
            mux.close()

    def _connect_target(self) -> Any:
        if self._unix:
            sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self._target)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = gsocket.create_connection(self._target)
        tcp_keepalive(sock)
        return sock

    def _handle_stream(self, stream: smux.Stream) -> None:
        try:
            target = self._connect_target()
        except OSError as exc:
            log.info("%s", exc)
            stream.close()
            return
        where = "in: %s(%d) out: %s" % (describe(stream.getpeername()), stream.id,
                                        describe(target.getpeername()))
        self.stream_log("stream opened", where)
        relay(target, stream, self.traffic, upward_from_tcp=False, label=where)
        self.stream_log("stream closed", where)

