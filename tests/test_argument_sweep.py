"""Every option and argument of the public surface against the values an
attacker or a typo supplies (NaN, +-inf, 0, negative, 2**31, 2**32, 2**64,
str, bytes, None, float for int, bool for int): a bad value raises a clear
ValueError/TypeError naming it, nothing is half-applied, nothing leaks.
Timeouts mirror the socket module exactly (compared with a real socket)."""
import dataclasses
import functools
import math
import socket

import gevent
import pytest

import gkcp
from conftest import resource_usage, wait_until
from helpers import free_udp_port
from gkcp.options import MAX_DURATION, Options
from gkcp.server import KCPServer, KCPWSGIServer

NAN, INF = math.nan, math.inf
SWEEP = [NAN, INF, -INF, 0, -1, 2 ** 31, 2 ** 32, 2 ** 64, "1", b"1", None, 1.5, True]
IDS = ["nan", "inf", "-inf", "0", "-1", "2^31", "2^32", "2^64", "str", "bytes", "None", "1.5", "True"]


def _same(a, b):
    return a is b or (type(a) is type(b) and a == b)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _accepts(*values):
    return lambda v: any(_same(v, ok) for ok in values)


def _seconds_ok(v):
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= MAX_DURATION


# Which sweep values each option accepts; every other value must be refused.
OPTION_ACCEPTS = {
    "mtu": _accepts(), "sndwnd": _accepts(), "rcvwnd": _accepts(),
    "nodelay": _accepts(0), "interval": _accepts(), "resend": _accepts(0), "nc": _accepts(0),
    "stream": _accepts(0, True), "ack_nodelay": _accepts(0, True), "write_delay": _accepts(0, True),
    "mmsg": _accepts(0, True), "reuse_port": _accepts(0, True), "announce": _accepts(0, True),
    "data_shards": _accepts(0), "parity_shards": _accepts(0),
    "crypt": _accepts(None), "key": _accepts(None), "block": _accepts(None),
    "sockbuf": _accepts(0), "dead_link": _accepts(0),
    "idle_timeout": lambda v: v is None or _seconds_ok(v), "linger": _seconds_ok,
    "backlog": _accepts(), "batch": _accepts(),
    "connect_timeout": _seconds_ok, "keepalive": _seconds_ok,
    # longer than the default keepalive (10 s), which no swept value is
    "keepalive_timeout": lambda v: _seconds_ok(v) and v > Options.keepalive,
    "busy_poll": _accepts(0),  # at most 0.01 s: of the swept values only 0
}


def test_the_table_covers_every_option():
    assert set(OPTION_ACCEPTS) == {f.name for f in dataclasses.fields(Options)}


def _refused(call, name, *args, **kwargs):
    """call raises ValueError/TypeError whose message names name."""
    with pytest.raises((ValueError, TypeError)) as info:
        call(*args, **kwargs)
    assert name in str(info.value), (name, info.value)


# The silent address never answers: dial it unverified (as kcp-go dials).
dial_unverified = functools.partial(gkcp.dial, connect_timeout=0)


@pytest.fixture(scope="module")
def silent_address():
    """A UDP port that never answers (dialed sessions just sit there)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


@pytest.fixture(scope="module")
def baseline():
    """Resources before the sweep; the last test checks they are back."""
    gevent.sleep(0.1)
    return resource_usage()


@pytest.mark.parametrize("value", SWEEP, ids=IDS)
@pytest.mark.parametrize("option", sorted(OPTION_ACCEPTS))
def test_every_option_value(option, value, silent_address, baseline):
    if OPTION_ACCEPTS[option](value):
        if option == "connect_timeout" and value:
            with pytest.raises(socket.timeout):  # a verified dial to nobody
                gkcp.dial(silent_address, connect_timeout=value)
        else:
            dial_unverified(silent_address, **{option: value}).close()
        gkcp.listen(("127.0.0.1", 0), **{option: value}).close()
        return
    _refused(dial_unverified, option, silent_address, **{option: value})
    _refused(gkcp.listen, option, ("127.0.0.1", 0), **{option: value})
    _refused(KCPServer, option, ("127.0.0.1", 0), lambda s, a: None, **{option: value})


@pytest.mark.parametrize("value", SWEEP, ids=IDS)
def test_entry_point_arguments(value, silent_address, baseline):
    host = silent_address[0]
    _refused(gkcp.dial, "address", value)
    _refused(gkcp.listen, "address", value)
    _refused(KCPServer, "listener", value, lambda s, a: None)
    if not _is_int(value) or not 1 <= value <= 65535:
        _refused(gkcp.dial, "port", (host, value))
    if not _is_int(value) or not 0 <= value <= 65535:
        _refused(gkcp.listen, "port", (host, value))
        _refused(gkcp.dial, "source_address", silent_address, source_address=(host, value))
    if value is not None:
        _refused(gkcp.dial, "source_address", silent_address, source_address=value)
        _refused(gkcp.dial, "sock", silent_address, sock=value)
        _refused(gkcp.listen, "sock", None, sock=value)
        _refused(KCPServer, "handle", ("127.0.0.1", 0), value)
        _refused(KCPWSGIServer, "application", ("127.0.0.1", 0), value)
    if value is None or (_is_int(value) and 0 <= value < 2 ** 32):
        dial_unverified(silent_address, conv=value).close()
    else:
        _refused(gkcp.dial, "conv", silent_address, conv=value)
    if value is not None and not (_is_int(value) and 1 <= value < 2 ** 31):
        _refused(KCPServer, "spawn", ("127.0.0.1", 0), lambda s, a: None, spawn=value)


def test_sockets_that_cannot_carry_kcp_are_refused(silent_address):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.close()
    try:
        for bad in (tcp, v6, closed):
            _refused(gkcp.dial, "sock", silent_address, sock=bad)
        _refused(gkcp.listen, "sock", None, sock=tcp)
        _refused(gkcp.listen, "sock", None, sock=closed)
        assert tcp.fileno() >= 0 and v6.fileno() >= 0  # a refused socket is left to its owner
    finally:
        tcp.close()
        v6.close()


def _socket_outcome(call):
    """('ok', result) or (exception type, message)."""
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 -- compared with the socket module's
        return type(exc), str(exc)


@pytest.mark.parametrize("value", SWEEP + [9.3e9, 9223372036, 9223372037, -0.0, 1e-10],
                         ids=IDS + ["9.3e9", "2^63ns", "2^63ns+1s", "-0.0", "1e-10"])
def test_timeouts_mirror_the_socket_module(value, silent_address, baseline):
    session = dial_unverified(silent_address)
    listener = gkcp.listen(("127.0.0.1", 0))
    reference = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for setting in ("settimeout", "setblocking"):
            for gkcp_object in (session, listener):
                getattr(gkcp_object, "settimeout")(7.0)
                if value is True and setting == "settimeout":
                    # the one deliberate difference: settimeout(True) is a mix-up
                    _refused(gkcp_object.settimeout, "timeout", value)
                    assert gkcp_object.gettimeout() == 7.0
                    continue
                reference.settimeout(7.0)
                expected = _socket_outcome(lambda: getattr(reference, setting)(value))
                got = _socket_outcome(lambda: getattr(gkcp_object, setting)(value))
                assert got == expected, (setting, gkcp_object)
                assert gkcp_object.gettimeout() == reference.gettimeout()
        if value is True:
            return
        expected = _socket_outcome(lambda: reference.settimeout(value))
        if expected[0] == "ok":
            connection = gkcp.create_connection(silent_address, timeout=value, connect_timeout=0)
            assert connection.gettimeout() == reference.gettimeout()
            connection.close()
        else:
            got = _socket_outcome(lambda: gkcp.create_connection(silent_address, timeout=value))
            assert got == expected
    finally:
        reference.close()
        listener.close()
        session.close()


@pytest.fixture
def pair():
    """A connected (client, server) pair of sessions."""
    with gkcp.listen(("127.0.0.1", 0), interval=10) as listener:
        listener.settimeout(10)
        client = gkcp.dial(listener.getsockname(), interval=10)
        server, _ = listener.accept()
        yield client, server
        client.close()
        server.close()


def _round_trip(client, server):
    client.settimeout(10)
    server.settimeout(10)
    client.sendall(b"still works")
    assert server.recv(100) == b"still works"


@pytest.mark.parametrize("value", SWEEP, ids=IDS)
def test_session_method_arguments(pair, value):
    client, server = pair
    client.setblocking(False)
    # recv/recv_into sizes: any int >= 0 is fine (a large one returns what is ready)
    for call, name in ((client.recv, "bufsize"), (lambda v: client.recv_into(bytearray(16), v), "nbytes")):
        if not _is_int(value):
            _refused(call, name, value)
        elif value < 0:
            _refused(call, "negative buffersize", value)
        elif name == "nbytes" and value > 16:
            _refused(call, "buffer too small", value)
        elif value == 0 and name == "bufsize":
            assert call(value) == b""
        else:
            with pytest.raises(BlockingIOError):  # non-blocking and nothing to read
                call(value)
    _refused(client.recv_into, "read-write bytes-like object", value)
    if value != b"1":
        _refused(client.send, "a bytes-like object is required", value)
        _refused(client.sendall, "a bytes-like object is required", value)
    if not _same(value, 0):
        _refused(client.recv, "flags", 10, value)
        _refused(client.recv_into, "flags", bytearray(16), 0, value)
        _refused(client.send, "flags", b"x", value)
        _refused(client.sendall, "flags", b"x", value)
    client.setblocking(True)
    # deadlines: any finite time.time() value; a rejected one keeps the old deadline
    for setter in ("set_deadline", "set_read_deadline", "set_write_deadline"):
        getattr(client, setter)(1.0)  # long past: reads (and writes) time out at once
        finite = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                   and math.isfinite(value))
        if finite:
            getattr(client, setter)(value)
        else:
            _refused(getattr(client, setter), "deadline", value)
            if setter != "set_write_deadline":
                with pytest.raises(socket.timeout):
                    client.recv(10)
        client.set_deadline(None)
    if not _is_int(value) or value not in (0, 1, 2):
        _refused(client.shutdown, "how", value)
    # socket options: TCP_NODELAY takes any int; level and option must be ints
    if _is_int(value) or value is True:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, value)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == int(value != 0)
    else:
        _refused(client.setsockopt, "TCP_NODELAY", socket.IPPROTO_TCP, socket.TCP_NODELAY, value)
    if not _is_int(value):
        _refused(client.setsockopt, "level", value, socket.TCP_NODELAY, 1)
        _refused(client.setsockopt, "option", socket.IPPROTO_TCP, value, 1)
        _refused(client.getsockopt, "level", value, socket.TCP_NODELAY)
        _refused(client.getsockopt, "buflen", socket.IPPROTO_TCP, socket.TCP_NODELAY, value)
    # makefile: a refused call leaves no file reference behind (close() still closes)
    if not _is_int(value) and value is not None:
        _refused(client.makefile, "buffering", "rb", value)
    if not isinstance(value, str):
        _refused(client.makefile, "mode", value)
    with pytest.raises((TypeError, LookupError)):
        client.makefile("r", encoding=value if isinstance(value, str) else 5)
    _round_trip(client, server)
    client.close()
    assert client.closed  # no makefile reference was left by a refused call


# (setter, how the sweep value is passed, the option it names, its current value)
TUNING = [
    ("set_nodelay", lambda v: (v, 10, 2, 1), "nodelay"),
    ("set_nodelay", lambda v: (1, v, 2, 1), "interval"),
    ("set_nodelay", lambda v: (1, 10, v, 1), "resend"),
    ("set_nodelay", lambda v: (1, 10, 2, v), "nc"),
    ("set_window_size", lambda v: (v, 64), "sndwnd"),
    ("set_window_size", lambda v: (64, v), "rcvwnd"),
    ("set_mtu", lambda v: (v,), "mtu"),
    ("set_stream_mode", lambda v: (v,), "stream"),
    ("set_ack_no_delay", lambda v: (v,), "ack_nodelay"),
    ("set_write_delay", lambda v: (v,), "write_delay"),
    ("set_dead_link", lambda v: (v,), "dead_link"),
    ("set_idle_timeout", lambda v: (v,), "idle_timeout"),
]


@pytest.mark.parametrize("value", SWEEP, ids=IDS)
@pytest.mark.parametrize("setter, args, option", TUNING, ids=[t[0] + ":" + t[2] for t in TUNING])
def test_tuning_setters(pair, setter, args, option, value):
    client, server = pair
    if OPTION_ACCEPTS[option](value):
        getattr(client, setter)(*args(value))
        assert _same(getattr(client.options, option), value)
        client.set_idle_timeout(None)  # idle_timeout=0 would end the session at once
    else:
        before, info = client.options, client.info()
        _refused(getattr(client, setter), option, *args(value))
        assert client.options == before and client.info() == info  # nothing half-applied
    _round_trip(client, server)


def test_the_longest_linger_keeps_retransmitting(silent_address):
    # nobody hears the first transmissions; the closed session must keep
    # retransmitting (not free itself at once, not raise) until a listener appears
    port = free_udp_port()
    session = dial_unverified(("127.0.0.1", port), linger=MAX_DURATION, interval=10)
    session.sendall(b"sent before anyone listened")
    session.close()
    gevent.sleep(0.3)
    with gkcp.listen(("127.0.0.1", port), interval=10) as listener:
        listener.settimeout(10)
        server, _ = listener.accept()
        server.settimeout(10)
        assert server.recv(100) == b"sent before anyone listened"
        server.close()
    for option in ("linger", "idle_timeout", "connect_timeout", "keepalive", "keepalive_timeout"):
        _refused(gkcp.dial, option, silent_address, **{option: MAX_DURATION + 0.001})
        _refused(gkcp.dial, "2**31-1 ms", silent_address, **{option: INF})


def test_recv_does_not_grow_a_huge_buffer(pair):
    client, server = pair
    client.sendall(b"x" * 5000)
    server.settimeout(10)
    data = server.recv(2 ** 31)
    assert 0 < len(data) <= 5000
    assert len(server._engine.scratch) <= 1 << 20


def test_the_sweep_left_nothing_behind(baseline):
    assert wait_until(lambda: _settled(baseline), timeout=15), (resource_usage(), baseline)


def _settled(base):
    now = resource_usage()
    return all(now[k] <= base[k] for k in ("fds", "engine_sessions", "endpoints", "curr_estab"))
