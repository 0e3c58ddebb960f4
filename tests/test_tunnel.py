"""gkcp tunnel (gkcp/tunnel/): kcptun's flags and JSON, and gkcp client <->
gkcp server behaviour (half-close, round robin, autoexpire, unix targets,
signals, logs, status line).  Interop with kcptun: test_interop_kcptun.py."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import gevent
import pytest
from gevent import socket as gsocket

from gkcp.tunnel.config import MODES, parse_args
from gkcp.tunnel.relay import Traffic
from gkcp.tunnel.status import StatusLine, go_time_format
from tunnel_harness import REPO, EchoServer, Tunnel, echo_through, free_port, tunnel_pair


# ---- flags and JSON ------------------------------------------------------------

def test_defaults_are_kcptuns():
    client = parse_args("client", [])
    assert (client.localaddr, client.remoteaddr, client.key, client.crypt, client.mode) == (
        ":12948", "vps:29900", "it's a secrect", "aes", "fast")
    assert (client.conn, client.autoexpire, client.scavengettl, client.mtu, client.sndwnd, client.rcvwnd) == (
        1, 0, 600, 1350, 128, 512)
    assert (client.datashard, client.parityshard, client.dscp, client.nocomp, client.sockbuf) == (
        10, 3, 0, False, 4194304)
    assert (client.smuxver, client.smuxbuf, client.streambuf, client.keepalive, client.snmpperiod) == (
        1, 4194304, 2097152, 10, 60)
    assert (client.nodelay, client.interval, client.resend, client.nc) == (0, 30, 2, 1)  # "fast"
    server = parse_args("server", [])
    assert (server.listen, server.target, server.sndwnd, server.rcvwnd) == (":29900", "127.0.0.1:12948", 1024, 1024)


@pytest.mark.parametrize("spelling", [
    ["-key", "k", "-l", ":1", "-r", "h:2", "-ds", "4", "-nocomp"],
    ["--key", "k", "--l", ":1", "--r", "h:2", "--ds", "4", "--nocomp"],
    ["-key=k", "-localaddr=:1", "--remoteaddr=h:2", "--datashard=4", "-nocomp=true"],
    ["--key=k", "--localaddr", ":1", "-remoteaddr", "h:2", "-datashard", "4", "--nocomp=1"],
])
def test_go_flag_spellings(spelling):
    c = parse_args("client", spelling)
    assert (c.key, c.localaddr, c.remoteaddr, c.datashard, c.nocomp) == ("k", ":1", "h:2", 4, True)


def test_bool_flag_false_and_environment_key(monkeypatch):
    from gkcp.tunnel.config import build_parser
    assert parse_args("client", ["--nocomp", "-nocomp=false"]).nocomp is False
    monkeypatch.setenv("KCPTUN_KEY", "from env")
    assert parse_args("server", []).key == "from env"
    assert parse_args("server", ["--key", "flag"]).key == "flag"
    assert "from env" not in build_parser("server").format_help()  # --help never shows the secret


@pytest.mark.parametrize("mode", sorted(MODES))
def test_modes_set_kcptuns_nodelay_parameters(mode):
    manual = ["--nodelay", "1", "--interval", "15", "--resend", "3", "--nc", "0"]
    c = parse_args("server", ["--mode", mode] + manual)
    expected = MODES[mode] or (1, 15, 3, 0)
    assert (c.nodelay, c.interval, c.resend, c.nc) == expected
    options = c.kcp_options()
    assert (options["nodelay"], options["interval"], options["resend"], options["nc"]) == expected
    assert options["stream"] is True and options["write_delay"] is False


def test_json_overrides_flags_key_by_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"remoteaddr": "1.2.3.4:5", "Mode": "fast3", "nocomp": True, "conn": 3,
                                "AckNodelay": True}))  # any case, as Go's encoding/json
    c = parse_args("client", ["-c", str(path), "--remoteaddr", "x:1", "--mtu", "1200", "--mode", "normal"])
    assert (c.remoteaddr, c.mode, c.interval, c.nocomp, c.conn, c.acknodelay, c.mtu) == (
        "1.2.3.4:5", "fast3", 10, True, 3, True, 1200)
    smux = c.smux_config()
    assert (smux.version, smux.max_receive_buffer, smux.max_stream_buffer, smux.keepalive_interval) == (
        1, 4194304, 2097152, 10)


@pytest.mark.parametrize("argv,message", [
    (["--mode", "fats3"], "unknown mode"),
    (["--crypt", "aes256"], "unknown cipher"),
    (["--tcp"], "not supported"),
    (["--conn", "0"], "--conn 0"),
    (["--smuxver", "3"], "unsupported smux version"),
    (["--keepalive", "31"], "--keepalive 31"),
    (["--streambuf", "8388608"], "--smuxbuf"),
    (["--mtu", "1600"], "mtu"),
    (["--dscp", "64"], "6 bits"),
    (["--sndwnd", "x"], "invalid int"),
    (["--nocomp=maybe"], "nocomp"),
    (["--unknown"], "unrecognized"),
    (["-c", "/nonexistent.json"], "/nonexistent.json"),
])
def test_bad_flags_exit_2_naming_them(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args("client", argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"listen": ":1"}', "unknown key 'listen'"),   # a server key in a client file
    ('{"mtu": "1350"}', "'mtu' must be a JSON integer"),
    ('{"nocomp": 1}', "'nocomp' must be a JSON boolean"),
])
def test_bad_json_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        parse_args("client", ["-c", str(path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "gkcp", "tunnel"] + list(argv), capture_output=True,
                          timeout=60, cwd=str(REPO), text=True)


def test_command_line_entry_points():
    bad = run_cli("server", "--tcp")
    assert bad.returncode == 2 and "tcpraw" in bad.stderr
    assert run_cli().returncode == 2 and run_cli("sideways").returncode == 2
    helped = run_cli("client", "-h")
    assert helped.returncode == 0 and "--remoteaddr" in helped.stdout and "--scavengettl" in helped.stdout
    assert "--nodelay" not in helped.stdout  # hidden, as in kcptun
    assert run_cli("server", "--version").stdout.startswith("gkcp tunnel")


# ---- gkcp client <-> gkcp server -------------------------------------------------

FAST = ["--mode", "fast3", "--key", "test"]


def test_half_close_passes_end_to_end():
    """TCP FIN at the client -> smux FIN -> shutdown(SHUT_WR) at the target;
    the target's answer still comes back, then its FIN."""
    with EchoServer() as echo:
        server, client, port = tunnel_pair("gkcp", "gkcp", echo.port, FAST + ["--smuxver", "2"])
        with server, client:
            sock = gsocket.create_connection(("127.0.0.1", port), timeout=30)
            data = os.urandom(300000)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            got = bytearray()
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            sock.close()
            assert bytes(got) == data


def test_round_robin_over_conn_sessions_and_logs():
    with EchoServer() as echo:
        server, client, port = tunnel_pair("gkcp", "gkcp", echo.port, FAST, client_flags=["--conn", "3"])
        with server, client:
            for seed in range(6):
                sent, got = echo_through(port, 10000, seed)
                assert sent == got
            deadline = time.monotonic() + 10
            while server.log().count("stream closed") < 6 and time.monotonic() < deadline:
                gevent.sleep(0.05)
            assert server.log().count("remote address:") == 3  # 3 KCP sessions, 2 streams each
            assert client.log().count("stream opened") == 6 and server.log().count("stream closed") == 6
        assert "closing on signal" in client.log() and client.proc.returncode == 0


def test_quiet_silences_stream_lines():
    with EchoServer() as echo:
        server, client, port = tunnel_pair("gkcp", "gkcp", echo.port, FAST + ["--quiet"])
        with server, client:
            assert echo_through(port, 1000, 1)[0] == echo_through(port, 1000, 1)[1]
        assert "stream opened" not in server.log() + client.log()


def test_autoexpire_opens_new_sessions_and_scavenger_closes_old():
    with EchoServer() as echo:
        server, client, port = tunnel_pair("gkcp", "gkcp", echo.port, FAST,
                                           client_flags=["--autoexpire", "1", "--scavengettl", "1"])
        with server, client:
            sent, got = echo_through(port, 1000, 1)
            gevent.sleep(1.3)
            sent2, got2 = echo_through(port, 1000, 2)   # expired: a second session carries it
            assert (sent, sent2) == (got, got2)
            deadline = time.monotonic() + 10
            while "session closed due to ttl" not in client.log() and time.monotonic() < deadline:
                gevent.sleep(0.1)
            assert "session closed due to ttl" in client.log()
            assert server.log().count("remote address:") == 2


def test_unix_socket_target(tmp_path):
    path = str(tmp_path / "target.sock")
    listener = gsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def serve_one():
        conn, _ = listener.accept()
        conn.sendall(b"hello from unix:" + conn.recv(100))
        conn.close()

    server_greenlet = gevent.spawn(serve_one)
    kcp_port, local_port = free_port(socket.SOCK_DGRAM), free_port()
    try:
        with Tunnel("gkcp", "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t", path] + FAST) as server, \
                Tunnel("gkcp", "client", ["-l", "127.0.0.1:%d" % local_port, "-r", "127.0.0.1:%d" % kcp_port]
                       + FAST) as client:
            server.wait_log("listening on")
            client.wait_log("listening on")
            sock = gsocket.create_connection(("127.0.0.1", local_port), timeout=20)
            sock.sendall(b"ping")
            reply = b""
            while len(reply) < 20:
                chunk = sock.recv(100)
                if not chunk:
                    break
                reply += chunk
            sock.close()
            assert reply == b"hello from unix:ping"
    finally:
        server_greenlet.kill()
        listener.close()


def test_unreachable_target_closes_the_stream():
    dead_port = free_port()  # nothing listens there
    server, client, port = tunnel_pair("gkcp", "gkcp", dead_port, FAST)
    with server, client:
        sock = gsocket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(b"anyone?")
        assert sock.recv(10) == b""     # EOF, not a hang
        sock.close()
        server.wait_log("Connection refused")


def test_sigint_and_log_file_and_snmplog(tmp_path):
    log_file, snmp_file = tmp_path / "server.log", tmp_path / "snmp-20060102.csv"
    kcp_port = free_port(socket.SOCK_DGRAM)
    server = Tunnel("gkcp", "server", ["-l", "127.0.0.1:%d" % kcp_port, "--log", str(log_file),
                                       "--snmplog", str(snmp_file), "--snmpperiod", "1"])
    with server:
        deadline = time.monotonic() + 15
        expected = tmp_path / go_time_format("snmp-20060102.csv")
        while not (expected.exists() and expected.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        server.proc.send_signal(signal.SIGUSR1)  # kcptun's "log the SNMP counters"
        deadline = time.monotonic() + 10
        while "KCP SNMP:" not in log_file.read_text() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert "'OutSegs'" in log_file.read_text()
        server.proc.send_signal(signal.SIGINT)
        assert server.wait_exit() == 0
    lines = expected.read_text().splitlines()
    assert lines[0].startswith("Unix,BytesSent,BytesReceived,MaxConn") and len(lines) >= 2
    assert "listening on: 127.0.0.1:%d" % kcp_port in log_file.read_text()
    assert "closing on signal" in log_file.read_text()


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_status_line_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    assert StatusLine.wanted(_FakeTerminal()) and not StatusLine.wanted(io.StringIO())
    traffic = Traffic()
    traffic.streams = 2

    class Session:
        srtt = 12

    line = StatusLine(traffic, lambda: [Session(), Session()], _FakeTerminal())
    text = line.text(2.5e6, 1500, 0.25)
    assert text == "up 2.5 MB/s  down 1.5 KB/s  streams 2  sessions 2  rtt 12 ms  retrans 0.25%"
    status = gevent.spawn(line.run, 0.05)
    gevent.sleep(0.2)
    status.kill()
    assert "\r\033[Kup " in line.out.getvalue()
    line.clear()
    assert line.out.getvalue().endswith("\r\033[K")


def test_dscp_is_set_on_the_udp_socket():
    from gkcp.tunnel.endpoints import TunnelClient
    tunnel = TunnelClient(parse_args("client", ["--dscp", "46"]))
    sock = tunnel._udp_socket("127.0.0.1:9", passive=False)
    try:
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 46 << 2
    finally:
        sock.close()
        tunnel.close()


def test_address_in_use_exits_1_with_a_message():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with Tunnel("gkcp", "client", ["-l", "127.0.0.1:%d" % port, "-r", "127.0.0.1:9"]) as client:
            assert client.wait_exit() == 1
        assert "cannot listen" in client.log() and "Address already in use" in client.log()


# ---- in one process: resources and hostile peers ----------------------------------

def start_in_process(role, flags):
    from gkcp.tunnel.endpoints import TunnelClient, TunnelServer
    end = (TunnelClient if role == "client" else TunnelServer)(parse_args(role, flags))
    end.start()
    end.spawn(end.serve)
    return end


def test_streams_and_sessions_do_not_accumulate():
    from conftest import resource_usage, wait_until
    with EchoServer() as echo:
        server = start_in_process("server", ["-l", "127.0.0.1:0", "-t", "127.0.0.1:%d" % echo.port, "--quiet"]
                                  + FAST)
        client = start_in_process("client", ["-l", "127.0.0.1:0", "-r", "127.0.0.1:%d" % server.address[1],
                                             "--quiet", "--conn", "2"] + FAST)
        try:
            port = client.address[1]

            def batch():
                jobs = [gevent.spawn(echo_through, port, 20000, seed) for seed in range(20)]
                gevent.joinall(jobs, timeout=60, raise_error=True)
                assert all(sent == got for sent, got in (j.value for j in jobs))
                assert wait_until(lambda: client.traffic.streams == 0 and server.traffic.streams == 0
                                  and echo.active == 0)

            batch()
            before = resource_usage()
            for _ in range(3):
                batch()
            # bounded wait: closing greenlets may need a few more turns of the hub
            flat = wait_until(lambda: resource_usage()["greenlets"] <= before["greenlets"]
                              and resource_usage()["fds"] <= before["fds"])
            assert flat, (before, resource_usage())
            assert client.traffic.total_streams == 80 and server.traffic.total_streams == 80
            assert client.traffic.up == server.traffic.up == 80 * 20000
            assert len(list(server.kcp_sessions())) == 2
        finally:
            client.close()
            server.close()


def test_garbage_instead_of_snappy_ends_only_that_session():
    """A peer whose KCP stream is not snappy-framed (say, a --nocomp client)
    loses its session; the server goes on serving the others."""
    import gkcp
    from gkcp.crypt import kcptun_crypt
    from conftest import wait_until
    with EchoServer() as echo:
        server = start_in_process("server", ["-l", "127.0.0.1:0", "-t", "127.0.0.1:%d" % echo.port] + FAST)
        client = start_in_process("client", ["-l", "127.0.0.1:0", "-r", "127.0.0.1:%d" % server.address[1]]
                                  + FAST)
        try:
            options = server.config.kcp_options()
            hostile = gkcp.dial(("127.0.0.1", server.address[1]), block=kcptun_crypt("aes", "test"), **options)
            hostile.sendall(b"\x00\x08\x00\x00garbage that is not a snappy stream")
            assert wait_until(lambda: len(server._muxes) >= 1 and all(m.closed for m, _ in server._muxes)
                              and server._muxes, timeout=10)
            error = server._muxes[0][0].error
            assert "snappy stream" in str(error)
            sent, got = echo_through(client.address[1], 50000, 3)
            assert sent == got
            hostile.close()
        finally:
            client.close()
            server.close()


def test_status_line_on_a_real_terminal():
    import pty
    master, slave = pty.openpty()
    kcp_port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "gkcp", "tunnel", "server", "-l", "127.0.0.1:%d" % kcp_port],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=str(REPO),
                            env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while b"streams 0  sessions 0" not in seen and time.monotonic() < deadline:
            import select
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
        assert b"\r\x1b[Kup 0.0 B/s  down 0.0 B/s  streams 0  sessions 0  rtt -" in seen, seen[-500:]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        os.close(master)


# ---- the relay on its own ------------------------------------------------------------

def relay_over_socketpairs(stall_timeout):
    """relay() between the inner ends of two socket pairs; returns
    (tcp peer, stream peer, the relay greenlet, its Traffic)."""
    from gkcp.tunnel.relay import relay
    tcp_outer, tcp_inner = gsocket.socketpair()
    stream_outer, stream_inner = gsocket.socketpair()
    traffic = Traffic()
    job = gevent.spawn(relay, tcp_inner, stream_inner, traffic, upward_from_tcp=True,
                       stall_timeout=stall_timeout)
    return tcp_outer, stream_outer, job, traffic


def test_relay_gives_up_a_stalled_half_closed_direction():
    tcp, stream, job, traffic = relay_over_socketpairs(stall_timeout=0.3)
    tcp.shutdown(socket.SHUT_WR)                 # the TCP side is done
    assert stream.recv(10) == b""                # ...and its FIN went on
    job.join(5)                                  # the stream side never speaks
    assert job.dead and traffic.streams == 0
    assert tcp.recv(10) == b""                   # both sides closed
    tcp.close()
    stream.close()


def test_relay_keeps_a_half_closed_direction_that_moves():
    tcp, stream, job, traffic = relay_over_socketpairs(stall_timeout=0.3)
    tcp.sendall(b"request")
    tcp.shutdown(socket.SHUT_WR)
    assert stream.recv(100) == b"request" and stream.recv(10) == b""
    for _ in range(6):                           # 1.2 s in all, never 0.3 s quiet
        gevent.sleep(0.2)
        stream.sendall(b"x" * 1000)
    stream.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = tcp.recv(65536)
        if not chunk:
            break
        got += chunk
    assert got == b"x" * 6000
    job.join(5)
    assert job.dead and (traffic.up, traffic.down, traffic.streams) == (7, 6000, 0)
    tcp.close()
    stream.close()
