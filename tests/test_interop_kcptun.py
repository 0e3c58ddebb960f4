"""gkcp's tunnel against Debian's kcptun 20210922 binaries, both directions:

    gkcp client   -> kcptun-server -> TCP echo (in this process)
    kcptun-client -> gkcp server   -> TCP echo

for kcptun's main setting families (cipher, mode, compression, FEC, smux
version), 50 parallel connections of 1 MB, and a -c JSON configuration
shared verbatim by both implementations.  Every byte comes back through the
tunnel and is compared by SHA-256.  A missing kcptun binary fails the tests.
"""
import json

import pytest

from tunnel_harness import EchoServer, kcptun_binary, parallel_echo, tunnel_pair

DIRECTIONS = [("gkcp", "kcptun"), ("kcptun", "gkcp")]  # (client, server)

PROFILES = {
    "aes-fast3-nocomp-smux1": ["--crypt", "aes", "--mode", "fast3", "--nocomp", "--smuxver", "1"],
    "aes-fast3-nocomp-smux2": ["-crypt", "aes", "-mode", "fast3", "-nocomp", "-smuxver", "2"],
    "salsa20-fast2-comp-fec10/3": ["--crypt=salsa20", "--mode=fast2", "--ds=10", "--ps=3", "--key=interop"],
    "none-normal-comp-nofec": ["--crypt", "none", "--mode", "normal", "--datashard", "0", "--parityshard", "0"],
}


def test_kcptun_binaries_are_installed():
    for role in ("client", "server"):
        assert kcptun_binary(role)


def check_echo(client_impl, server_impl, flags, connections, nbytes, **extra):
    with EchoServer() as echo:
        server, client, port = tunnel_pair(client_impl, server_impl, echo.port, flags, **extra)
        with server, client:
            digests = parallel_echo(port, connections, nbytes)
            bad = [i for i, (sent, got) in enumerate(digests) if sent != got]
            assert not bad, "connections %s came back corrupted\nserver:\n%s\nclient:\n%s" % (
                bad, server.log()[-3000:], client.log()[-3000:])
            assert echo.connections == connections
            assert server.proc.poll() is None and client.proc.poll() is None
        # SIGTERM ends a gkcp end cleanly
        for end in (server, client):
            if end.impl == "gkcp":
                assert end.proc.returncode == 0, end.log()[-3000:]
        return server, client


@pytest.mark.parametrize("client_impl,server_impl", DIRECTIONS, ids=["gkcp-to-kcptun", "kcptun-to-gkcp"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles(client_impl, server_impl, profile):
    check_echo(client_impl, server_impl, PROFILES[profile], connections=4, nbytes=512 * 1024)


@pytest.mark.parametrize("client_impl,server_impl", DIRECTIONS, ids=["gkcp-to-kcptun", "kcptun-to-gkcp"])
def test_fifty_parallel_connections_of_one_megabyte(client_impl, server_impl):
    check_echo(client_impl, server_impl, ["--mode", "fast3", "--smuxver", "2", "--sndwnd", "1024",
                                          "--rcvwnd", "1024", "--quiet"], connections=50, nbytes=1 << 20,
               client_flags=["--conn", "4"])  # the streams spread over 4 KCP sessions


@pytest.mark.parametrize("client_impl,server_impl", DIRECTIONS, ids=["gkcp-to-kcptun", "kcptun-to-gkcp"])
def test_json_config(tmp_path, client_impl, server_impl):
    """One -c file per side, kcptun's keys, read by both implementations;
    its values override the command line (wrong flags given on purpose)."""
    common = {"key": "from json", "crypt": "twofish", "mode": "fast2", "nocomp": False, "smuxver": 2,
              "datashard": 5, "parityshard": 2, "mtu": 1200, "streambuf": 1048576, "keepalive": 5,
              "quiet": True}
    client_json, server_json = tmp_path / "client.json", tmp_path / "server.json"
    client_json.write_text(json.dumps(dict(common, sndwnd=256, rcvwnd=256, conn=2)))
    server_json.write_text(json.dumps(dict(common, sndwnd=512, rcvwnd=512)))
    wrong = ["--key", "overridden", "--crypt", "aes", "--smuxver", "1"]
    check_echo(client_impl, server_impl, wrong, connections=4, nbytes=256 * 1024,
               client_flags=["-c", str(client_json)], server_flags=["-c", str(server_json)])


def test_tunnel_benchmark_runs(tmp_path):
    """The benchmark's plumbing (not its speed): both implementations move
    the data, digest-checked, and report figures."""
    import subprocess
    import sys
    from tunnel_harness import REPO
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "gkcp.bench", "tunnel", "--bytes", "2M", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gkcp/kcptun: throughput" in proc.stdout
    figures = json.loads(out.read_text())["medians"]
    assert set(figures) == {"gkcp", "kcptun"}
    assert all(f["mbps"] > 0 and f["cpu_s"] >= 0 for f in figures.values())  # CPU: 10 ms ticks


@pytest.mark.parametrize("client_impl,server_impl", DIRECTIONS, ids=["gkcp-to-kcptun", "kcptun-to-gkcp"])
def test_through_a_lossy_link(client_impl, server_impl):
    """Between the ends: 3% loss, 1% duplicates, 2% reordering and 0.5%
    flipped bits each way (kcptun's defaults otherwise: compression, FEC 10/3,
    AES, whose checksum drops the corrupted packets); every byte still
    arrives, SHA-256 checked."""
    import socket
    from lossy_relay import LossyRelay
    from tunnel_harness import Tunnel, free_port
    flags = ["--mode", "fast2", "--key", "lossy", "--quiet"]
    kcp_port, local_port = free_port(socket.SOCK_DGRAM), free_port()
    with EchoServer() as echo, \
            Tunnel(server_impl, "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t", "127.0.0.1:%d" % echo.port]
                   + flags) as server:
        server.wait_log("listening on")
        with LossyRelay(("127.0.0.1", kcp_port), drop=0.03, dup=0.01, reorder=0.02, corrupt=0.005,
                        seed=11) as relay, \
                Tunnel(client_impl, "client", ["-l", "127.0.0.1:%d" % local_port,
                                               "-r", "%s:%d" % relay.address] + flags) as client:
            client.wait_log("listening on")
            digests = parallel_echo(local_port, 8, 256 * 1024)
            assert all(sent == got for sent, got in digests), (server.log()[-2000:], client.log()[-2000:])
            faults = relay.stats()
            assert faults["c2s"]["dropped"] > 0 and faults["s2c"]["corrupted"] > 0
