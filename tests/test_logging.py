"""The "gkcp" logger: one record per session end, per interval of listener
drops and per handler error; none per packet; silent without configuration."""
import errno
import hashlib
import logging
import os
import socket
import subprocess
import sys

import gevent
import pytest

import gkcp
from gkcp._core import lib
from gkcp._log import counter_watch
from gkcp.server import KCPServer

from conftest import wait_until

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)


def gkcp_records(caplog):
    return [r for r in caplog.records if r.name == "gkcp"]


@pytest.fixture
def silent_peer():
    """A bound UDP socket that never reads: no answer, no ICMP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


def test_dead_link_logged_once(caplog, silent_peer):
    caplog.set_level(logging.DEBUG, logger="gkcp")
    session = gkcp.dial(silent_peer, connect_timeout=0, dead_link=3, **FAST)
    try:
        session.settimeout(10)
        session.sendall(b"x" * 100)
        with pytest.raises(ConnectionAbortedError) as info:
            session.recv(10)
        assert info.value.errno == errno.ETIMEDOUT
        with pytest.raises(ConnectionAbortedError):  # a second look at the end logs nothing more
            session.send(b"y")
    finally:
        session.close()
    records = gkcp_records(caplog)
    assert len(records) == 1, records
    assert records[0].levelno == logging.INFO
    assert "dead link" in records[0].getMessage()
    assert "conv=%d" % session.conv in records[0].getMessage()


def test_idle_timeout_logged_once_at_debug(caplog, silent_peer):
    caplog.set_level(logging.DEBUG, logger="gkcp")
    session = gkcp.dial(silent_peer, connect_timeout=0, announce=False, idle_timeout=0.3, keepalive=0, **FAST)
    try:
        session.settimeout(10)
        assert session.recv(10) == b""  # the idle end reads as EOF
    finally:
        session.close()
    records = gkcp_records(caplog)
    assert [(r.levelno, "idle_timeout" in r.getMessage()) for r in records] == [(logging.DEBUG, True)]


def test_closed_by_the_application_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="gkcp")
    counter_watch.reset()
    payload = os.urandom(1 << 20)
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), sndwnd=256, rcvwnd=256, **FAST)
        listener.settimeout(10)
        server, _ = listener.accept()
        client.settimeout(30)
        server.settimeout(30)
        sender = gevent.spawn(client.sendall, payload)
        digest, got = hashlib.sha256(), 0
        while got < len(payload):
            chunk = server.recv(65536)
            assert chunk
            digest.update(chunk)
            got += len(chunk)
        sender.get(timeout=30)
        assert digest.digest() == hashlib.sha256(payload).digest()
        client.close()
        server.close()
    assert gkcp_records(caplog) == []


def test_accept_drops_warned_once_per_interval(caplog):
    caplog.set_level(logging.DEBUG, logger="gkcp")
    with gkcp.listen(("127.0.0.1", 0), backlog=1, **FAST) as listener:
        counter_watch.reset()
        drops = lib.gk_stats.AcceptDrops
        dialers = [gkcp.dial(listener.getsockname(), connect_timeout=0, **FAST) for _ in range(4)]
        try:
            # all three beyond the backlog of one dropped (not one of them
            # still unproven, to be accepted once the first is taken)
            assert wait_until(lambda: lib.gk_stats.AcceptDrops >= drops + 3)
            listener.settimeout(5)
            first, _ = listener.accept()
            first.close()
            for _ in range(3):  # more checks within the interval: no new record
                with pytest.raises(socket.timeout):
                    listener.settimeout(0.05)
                    listener.accept()
        finally:
            for d in dialers:
                d.close()
    warnings = [r for r in gkcp_records(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "AcceptDrops +" in warnings[0].getMessage()
    assert "backlog" in warnings[0].getMessage()


def test_counter_watch_names_each_grown_counter_and_waits_an_interval(caplog):
    caplog.set_level(logging.DEBUG, logger="gkcp")
    clock = [1000.0]
    watch = type(counter_watch)(clock=lambda: clock[0])
    watch.check()  # nothing grew: nothing said
    assert gkcp_records(caplog) == []
    lib.gk_stats.InReplays += 2
    lib.gk_stats.UnprovenEvicted += 1
    watch.check()  # reported at once
    lib.gk_stats.InReplays += 5
    clock[0] += watch.interval / 2
    watch.check()  # within the interval: kept for the next warning
    assert len(gkcp_records(caplog)) == 1
    clock[0] += watch.interval
    watch.check()
    watch.check()  # nothing new
    messages = [r.getMessage() for r in gkcp_records(caplog)]
    assert len(messages) == 2
    assert "InReplays +2" in messages[0] and "UnprovenEvicted +1" in messages[0]
    assert "InReplays +5" in messages[1] and "UnprovenEvicted" not in messages[1]
    assert not any("AcceptDrops" in m for m in messages)


def test_handler_error_logged_with_traceback(caplog):
    caplog.set_level(logging.DEBUG, logger="gkcp")

    def handle(session, address):
        session.recv(10)
        raise ValueError("handler boom")

    with KCPServer(("127.0.0.1", 0), handle, **FAST) as server:
        server.start()
        client = gkcp.dial(server.address, **FAST)
        client.sendall(b"hello")
        assert wait_until(lambda: any(r.levelno == logging.ERROR for r in gkcp_records(caplog)))
        client.close()
    errors = [r for r in gkcp_records(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "handler failed" in errors[0].getMessage()
    assert errors[0].exc_info[0] is ValueError


def test_nothing_reaches_stderr_without_logging_configured():
    """logging's last-resort handler prints WARNINGs of a logger without
    handlers; gkcp's NullHandler keeps the library silent."""
    code = ("import gkcp\n"
            "from gkcp._core import lib\n"
            "from gkcp._log import counter_watch\n"
            "lib.gk_stats.AcceptDrops += 1\n"
            "counter_watch.check()\n"
            "import logging; assert logging.getLogger('gkcp').handlers\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
