"""The engine at scale: thousands of sessions on one listener, send-window
back-pressure, SO_REUSEPORT workers, and an L4 UDP balancer (nginx) in front
of several gkcp servers."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import gevent
import pytest

import gkcp
from helpers import core_stat, free_udp_port
from pyroles import recv_exactly

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def echo_forever(session):
    # a client's closed port reused by a new client ends the old session
    # (ConnectionResetError), as it should
    with session:
        try:
            while True:
                data = session.recv(65536)
                if not data:
                    return
                session.sendall(data)
        except ConnectionError:
            return


def echo_clients(address, count, size, timeout=60, **options):
    """count sessions to address, each echoing size random bytes; returns how
    many came back intact."""
    def one(_):
        payload = os.urandom(size)
        with gkcp.dial(address, **options) as s:
            s.settimeout(timeout)
            s.sendall(payload)
            return recv_exactly(s, size) == payload

    jobs = [gevent.spawn(one, i) for i in range(count)]
    gevent.joinall(jobs, timeout=timeout)
    for job in jobs:
        if not job.ready():
            job.kill()
    return sum(1 for job in jobs if job.successful() and job.value)


def test_2000_sessions_on_one_listener_exchange_data_intact():
    count = 2000
    opts = dict(nodelay=1, interval=10, resend=2, nc=1, idle_timeout=30)
    with gkcp.listen(("127.0.0.1", 0), backlog=count, **opts) as listener:
        echoes = []

        def acceptor():
            while True:
                session, _ = listener.accept()
                echoes.append(gevent.spawn(echo_forever, session))

        acc = gevent.spawn(acceptor)
        try:
            assert echo_clients(listener.getsockname(), count, 2048, timeout=120, **opts) == count
        finally:
            acc.kill()
            # each closes its session: none is left to keepalive-probe its
            # closed client during later tests
            gevent.killall(echoes)


def test_request_response_acks_ride_in_the_replies():
    """An echoed message acknowledges the request in the reply's own
    datagram (the flush input makes is held until the woken reader has
    replied), so a round trip costs two datagrams, not three or four (ACKs
    sent alone from input, each waking the peer for nothing)."""
    rounds = 300
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        server = gevent.spawn(lambda: echo_forever(listener.accept()[0]))
        try:
            with gkcp.dial(listener.getsockname(), **FAST) as s:
                s.settimeout(30)
                for _ in range(20):  # past the handshake and first window tells
                    s.sendall(b"w" * 64)
                    assert recv_exactly(s, 64) == b"w" * 64
                before = core_stat("OutPkts")
                for i in range(rounds):
                    message = os.urandom(64)
                    s.sendall(message)
                    assert recv_exactly(s, 64) == message, i
                datagrams = core_stat("OutPkts") - before
        finally:
            server.kill()
    # 2 per round trip, plus the few ACKs a 10 ms interval flush sends alone
    assert datagrams <= 2.3 * rounds, datagrams


def test_a_writer_busy_past_the_rto_reads_the_acks_before_it_flushes():
    """A writer that keeps the hub busy longer than the RTO (30 ms) between
    sends has its peer's ACKs waiting unread in the socket; its next send
    reads them before flushing instead of retransmitting everything in
    flight (spurious retransmissions under CPU load)."""
    chunk, rounds = 8192, 12
    peer = subprocess.Popen([sys.executable, "-m", "gkcp.bench.peer", "listen", "-role=sink",
                             "-bytes=%d" % (chunk * rounds), "-timeout=60", "-nodelay=1", "-interval=10",
                             "-resend=2", "-nc=1", "-sndwnd=1024", "-rcvwnd=1024"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        ready = peer.stdout.readline().split()
        assert ready and ready[0] == b"READY", ready
        host, port = ready[1].decode().rsplit(":", 1)
        with gkcp.dial((host, int(port)), **FAST) as s:
            s.settimeout(30)
            before = core_stat("RetransSegs")
            for _ in range(rounds):
                s.sendall(os.urandom(chunk))
                spin_until = time.monotonic() + 0.1  # CPU-bound, never yields to the hub
                while time.monotonic() < spin_until:
                    pass
            retransmitted = core_stat("RetransSegs") - before
            assert recv_exactly(s, 32)  # the sink's digest: everything arrived
    finally:
        peer.kill()
        peer.wait()
    assert retransmitted == 0


def test_full_send_window_blocks_the_writer_until_acknowledged():
    opts = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=16, rcvwnd=16)
    with gkcp.listen(("127.0.0.1", 0), **opts) as listener:
        client = gkcp.dial(listener.getsockname(), **opts)
        server, _ = listener.accept()
        payload = os.urandom(300_000)  # far more than 16 + 16 segments
        client.settimeout(0.5)
        with pytest.raises(socket.timeout):
            client.sendall(payload)  # the reader is not reading: the writer blocks
        # the reader's queue is full and it advertises a zero window
        assert server.info()["nrcv_que"] == 16
        assert client.info()["rmt_wnd"] == 0
        client.settimeout(20)

        received = gevent.spawn(recv_exactly, server, 100_000)
        client.sendall(payload[:100_000])  # unblocks once the server reads and ACKs
        received.join(20)
        assert received.successful()
        client.close()
        server.close()


def test_reuse_port_workers_keep_each_peer_on_one_process():
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "prefork_echo_server.py"),
                             "127.0.0.1:%d" % port, "--workers", "2"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready = [proc.stdout.readline() for _ in range(2)]
        assert all("ready" in line for line in ready), ready
        intact = echo_clients(("127.0.0.1", port), 60, 16 * 1024, **FAST)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    counts = [int(line.split()[-1]) for line in out.splitlines() if "sessions" in line]
    print("sessions per worker:", counts)
    assert intact == 60
    assert len(counts) == 2 and sum(counts) == 60 and min(counts) >= 1
    assert proc.returncode == 0


NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
stream {{
    upstream gkcp_backends {{
        hash $remote_addr$remote_port consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} udp reuseport rcvbuf=4m sndbuf=4m;
        proxy_pass gkcp_backends;
        proxy_timeout 30s;
    }}
}}
"""


def test_nginx_udp_balancer_spreads_sessions_over_backends():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    assert os.path.exists(nginx) and os.path.exists(module), \
        "needs Debian's nginx-light and libnginx-mod-stream (see .ci/apt-packages)"
    backends = [gkcp.listen(("127.0.0.1", 0), idle_timeout=30, **FAST) for _ in range(2)]
    counts = [0, 0]

    def serve(i):
        while True:
            session, _ = backends[i].accept()
            counts[i] += 1
            gevent.spawn(echo_forever, session)

    servers = [gevent.spawn(serve, i) for i in range(2)]
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(
                module=module, tmp=tmp, port=port,
                servers="\n".join("        server 127.0.0.1:%d;" % b.getsockname()[1] for b in backends)))
        proc = subprocess.Popen([nginx, "-c", conf, "-p", tmp], stderr=subprocess.PIPE)
        try:
            gevent.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read()
            intact = echo_clients(("127.0.0.1", port), 60, 32 * 1024, **FAST)
        finally:
            proc.terminate()
            proc.wait(10)
    for g in servers:
        g.kill()
    for b in backends:
        b.close()
    print("sessions per backend:", counts)
    assert intact == 60
    assert sum(counts) == 60 and min(counts) >= 1
