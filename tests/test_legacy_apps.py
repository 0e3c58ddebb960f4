"""Unmodified client programs (redis-py, pymemcache, requests) run under
``python -m gkcp run --route ...`` against real servers (redis-server,
memcached, an HTTP/1.1 keep-alive server) behind a kcptun-compatible
server: Debian's kcptun-server and gkcp's tunnel server.

The routed addresses are 10.255.0.x and a name that does not resolve
(web.legacy.test): under gkcp run no packet goes there -- routing
intercepts the connect first.  The controls run each program with plain
python against its routed address, where it fails (the connect times out,
is unreachable, or reaches whatever the network puts there -- on some
machines an intercepting proxy answers 10.x, which no program accepts),
and show a routed address that plain TCP cannot reach (a 127.0.0.1 port
nothing listens on) refused without gkcp and working with it.  Missing
servers fail the tests.
"""
import socket
import time

import pytest

from legacy_servers import (BIG_BODY_SIZE, CONNECT_TIMEOUT_ENV, RAW_PROGRAM, check, dead_tcp_port, http_server,
                            kcptun_url, memcached, redis_server, run_program, tunnel_server)
from tunnel_harness import free_port

SERVERS = ["kcptun", "gkcp"]

REDIS_PROGRAM = """
    import os, sys
    import redis

    host, port = sys.argv[1], int(sys.argv[2])
    r = redis.Redis(host, port, socket_timeout=30,
                    socket_connect_timeout=float(os.environ.get("LEGACY_CONNECT_TIMEOUT", 10)))
    value = os.urandom(300_000)
    assert r.set("big", value)
    assert r.get("big") == value
    pipe = r.pipeline(transaction=False)
    for i in range(2000):
        pipe.set("key:%d" % i, "v%d" % i)
    assert pipe.execute() == [True] * 2000
    pipe = r.pipeline(transaction=False)
    for i in range(2000):
        pipe.get("key:%d" % i)
    assert pipe.execute() == [b"v%d" % i for i in range(2000)]
    print("redis ok", r.dbsize())
"""

MEMCACHED_PROGRAM = """
    import os
    from pymemcache.client.base import Client

    client = Client(("10.255.0.2", 11211), connect_timeout=float(os.environ.get("LEGACY_CONNECT_TIMEOUT", 10)),
                    timeout=30)
    values = {"k%d" % i: os.urandom(20_000) for i in range(200)}
    for key, value in values.items():
        assert client.set(key, value, noreply=False)
    for key, value in values.items():
        assert client.get(key) == value, key
    print("memcached ok", len(values))
"""

REQUESTS_PROGRAM = """
    import hashlib, os
    import requests

    session = requests.Session()
    ports = set()
    for i in range(40):
        r = session.get("http://web.legacy.test:8080/small/%d" % i,
                        timeout=(float(os.environ.get("LEGACY_CONNECT_TIMEOUT", 10)), 30))
        assert r.status_code == 200 and r.content == b"ok /small/%d" % i, r.content
        ports.add(r.headers["X-Client-Port"])
    r = session.get("http://web.legacy.test:8080/big", timeout=60)
    ports.add(r.headers["X-Client-Port"])
    assert len(r.content) == BIG and hashlib.sha256(r.content).hexdigest() == r.headers["X-Sha256"]
    # the server saw every request on one connection: urllib3 kept the pooled socket
    assert len(ports) == 1, ports
    print("requests ok")
""".replace("BIG", str(BIG_BODY_SIZE))


@pytest.mark.parametrize("server", SERVERS)
def test_redis_py_big_value_and_pipeline(tmp_path, server):
    with redis_server() as redis_port, tunnel_server(server, redis_port) as kcp_port:
        out = check(run_program(tmp_path, REDIS_PROGRAM, {"10.255.0.1:6379": kcptun_url(kcp_port)},
                                args=["10.255.0.1", "6379"]))
    assert "redis ok 2001" in out


@pytest.mark.parametrize("server", SERVERS)
def test_redis_py_smux_v2_without_compression(tmp_path, server):
    flags = ["--key", "k2", "--mode", "fast2", "--smuxver", "2", "--nocomp", "--crypt", "salsa20"]
    with redis_server() as redis_port, tunnel_server(server, redis_port, flags) as kcp_port:
        url = "kcptun://127.0.0.1:%d?key=k2&mode=fast2&smuxver=2&nocomp=1&crypt=salsa20&conn=2" % kcp_port
        out = check(run_program(tmp_path, REDIS_PROGRAM, {"10.255.0.1:6379": url}, args=["10.255.0.1", "6379"]))
    assert "redis ok 2001" in out


@pytest.mark.parametrize("server", SERVERS)
def test_pymemcache_200_values_of_20_kB(tmp_path, server):
    with memcached() as memcached_port, tunnel_server(server, memcached_port) as kcp_port:
        out = check(run_program(tmp_path, MEMCACHED_PROGRAM, {"10.255.0.2:11211": kcptun_url(kcp_port)}))
    assert "memcached ok 200" in out


@pytest.mark.parametrize("server", SERVERS)
def test_requests_keep_alive_and_5_MB_body(tmp_path, server):
    with http_server() as http_port, tunnel_server(server, http_port) as kcp_port:
        out = check(run_program(tmp_path, REQUESTS_PROGRAM, {"web.legacy.test:8080": kcptun_url(kcp_port)}))
    assert "requests ok" in out


def _unrouted_controls():
    dead = str(dead_tcp_port())
    return [("redis-py", REDIS_PROGRAM, ["10.255.0.1", "6379"], "redis ok"),
            ("pymemcache", MEMCACHED_PROGRAM, [], "memcached ok"),
            ("requests", REQUESTS_PROGRAM, [], "requests ok"),
            ("raw-socket", RAW_PROGRAM, ["full-close", dead, dead], "raw ok")]


@pytest.mark.parametrize("program", _unrouted_controls(), ids=lambda program: program[0])
def test_each_program_fails_on_its_routed_address_without_gkcp(tmp_path, program):
    """The control for each routed test: the same program, run by plain
    python against the same 10.255.0.x address or name, does not get
    through (its connect timeout is 1 s here), so it is the route that
    makes it work under gkcp run."""
    what, source, args, success = program
    start = time.monotonic()
    proc = run_program(tmp_path, source, {}, args=args, gkcp=False, env={CONNECT_TIMEOUT_ENV: "1"}, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1 and success not in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback (most recent call last)" in proc.stderr, proc.stderr
    assert elapsed < 30, (elapsed, proc.stderr.strip().splitlines()[-1])  # redis-py retries its connect 3 times


def test_a_routed_address_unreachable_by_tcp_works_only_with_gkcp(tmp_path):
    """The control: redis-py to a 127.0.0.1 port nothing listens on is
    refused by plain python and works under gkcp run with that route."""
    dead = dead_tcp_port()
    args = ["127.0.0.1", str(dead)]
    with redis_server() as redis_port, tunnel_server("gkcp", redis_port) as kcp_port:
        plain = run_program(tmp_path, REDIS_PROGRAM, {}, args=args, gkcp=False)
        assert plain.returncode == 1 and "Connection refused" in plain.stderr, plain.stderr
        out = check(run_program(tmp_path, REDIS_PROGRAM, {"127.0.0.1:%d" % dead: kcptun_url(kcp_port)}, args=args))
    assert "redis ok 2001" in out


DOWN_PROGRAM = """
    import socket, sys, time
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    start = time.monotonic()
    try:
        socket.create_connection(("10.255.0.7", 6379), timeout=30)
    except OSError as exc:
        print("create_connection", type(exc).__name__, round(time.monotonic() - start, 2), exc)
    start = time.monotonic()
    print("connect_ex", socket.socket().connect_ex(("10.255.0.7", 6379)), round(time.monotonic() - start, 2))
    start = time.monotonic()
    try:
        redis.Redis("10.255.0.7", 6379, socket_connect_timeout=30, retry=Retry(NoBackoff(), 0)).ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print("redis", type(exc).__name__, round(time.monotonic() - start, 2))
"""


def _timings(out):
    return {line.split()[0]: line.split() for line in out.splitlines()}


def test_route_whose_server_is_down_fails_at_connect(tmp_path):
    """Nothing on the tunnel server's UDP port: the ICMP error refuses the
    connect (connect_ex: ECONNREFUSED) within a few seconds, before any
    write; redis-py reports its ConnectionError."""
    down = free_port(socket.SOCK_DGRAM)
    start = time.monotonic()
    out = check(run_program(tmp_path, DOWN_PROGRAM, {"10.255.0.7:6379": kcptun_url(down)}, timeout=60))
    assert time.monotonic() - start < 30
    lines = _timings(out)
    assert lines["create_connection"][1] == "ConnectionRefusedError", out
    assert float(lines["create_connection"][2]) < 6
    assert lines["connect_ex"][1] == "111" and float(lines["connect_ex"][2]) < 6, out
    assert lines["redis"][1] == "ConnectionError" and float(lines["redis"][2]) < 6, out


def test_route_whose_server_is_silent_times_out_at_connect(tmp_path):
    """A UDP port that swallows every datagram (no ICMP comes back): the
    connect raises TimeoutError after the route's connect_timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        url = kcptun_url(sink.getsockname()[1], "connect_timeout=2")
        out = check(run_program(tmp_path, DOWN_PROGRAM, {"10.255.0.7:6379": url}, timeout=60))
    lines = _timings(out)
    assert lines["create_connection"][1] == "TimeoutError", out
    assert 1.5 < float(lines["create_connection"][2]) < 6, out
    assert lines["connect_ex"][1] == "11" and float(lines["connect_ex"][2]) < 6, out  # EAGAIN, as gevent's
    assert lines["redis"][1] in ("TimeoutError", "ConnectionError") and float(lines["redis"][2]) < 6, out


def test_a_tunnel_server_that_died_refuses_the_next_connect(tmp_path):
    """The pooled KCP session outlives its server: once an ICMP error came
    back for it (the program's next write here; smux keepalives otherwise),
    the next connect makes a fresh verified session, which is refused."""
    import legacy_servers
    with redis_server() as redis_port:
        kcp_port = free_port(socket.SOCK_DGRAM)
        server = legacy_servers.Tunnel("gkcp", "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t",
                                                          "127.0.0.1:%d" % redis_port] + legacy_servers.TUNNEL_FLAGS)
        with server:
            server.wait_log("listening on")
            out = check(run_program(tmp_path, """
                import os, signal, socket, sys, time
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
                r = redis.Redis("10.255.0.1", 6379, socket_timeout=2, retry=Retry(NoBackoff(), 0))
                assert r.ping()
                os.kill(int(sys.argv[1]), signal.SIGKILL)
                time.sleep(0.5)
                try:
                    r.ping()                 # on the old stream: no answer, and the ICMP error comes back
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                start = time.monotonic()
                try:
                    socket.create_connection(("10.255.0.1", 6379), timeout=20)
                except ConnectionRefusedError:
                    print("refused", round(time.monotonic() - start, 2))
            """, {"10.255.0.1:6379": kcptun_url(kcp_port)}, args=[str(server.proc.pid)]))
    assert out.startswith("refused") and float(out.split()[1]) < 6, out
