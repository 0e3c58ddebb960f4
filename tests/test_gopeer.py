"""Go <-> Go through the test harness: the kcp-go peer, its Python driver and
the lossy relay.  Needs only Go and Debian's kcp-go, not gkcp itself."""

import socket
import subprocess
import time

import pytest

import gopeer
from gkcp.bench import gobuild
from gopeer import GoPeer, PeerError, run_pair, stream_digest
from lossy_relay import LossyRelay

FAST = dict(mode="fast3", sndwnd=1024, rcvwnd=1024)
CONFIGS = {
    "plain": {},
    "aes": dict(crypt="aes", passphrase="x"),
    "fec": dict(ds=10, ps=3),
    "aes+fec": dict(crypt="aes", passphrase="x", ds=10, ps=3),
}
MB = 1_000_000


@pytest.fixture(params=sorted(CONFIGS))
def cfg(request, go_peer_bin):
    return {**FAST, **CONFIGS[request.param]}


def test_sink_send_5mb(cfg):
    srv, cli = run_pair("sink", "send", 5 * MB, timeout=20, seed=11, **cfg)
    send, sink = cli.result, srv.result
    assert send["n"] == sink["n"] == 5 * MB
    # the Go sender's stream is the Python one, and the sink saw all of it
    assert send["sent"] == send["peer"] == sink["hex"] == stream_digest(11, 5 * MB)
    assert send["mbps"] > 1
    assert srv.snmp["BytesReceived"] == 5 * MB and cli.snmp["BytesSent"] == 5 * MB
    if cfg.get("ds"):
        assert cli.snmp["OutPkts"] > cli.snmp["OutSegs"] * 1.2  # parity went out
    assert cli.cpu is not None and srv.cpu is not None


def test_echo_2mb(cfg):
    srv, cli = run_pair("echo", "echo", 2 * MB, timeout=20, seed=5, **cfg)
    r = cli.result
    assert r["n"] == 2 * MB and r["sent"] == r["recv"] == stream_digest(5, 2 * MB)
    assert srv.result == {"kind": "ECHO", "n": 2 * MB}


def test_rtt(cfg):
    count, size = 50, 64
    srv, cli = run_pair("echo", "rtt", count * size, timeout=20,
                        count=count, size=size, **cfg)
    r = cli.result
    assert r["count"] == count
    assert 0 < r["p50_us"] <= r["p99_us"] < 1_000_000


def test_source_recv():
    srv, cli = run_pair("source", "recv", 2 * MB, timeout=20, seed=3,
                        crypt="salsa20", key=bytes(range(32)), **FAST)
    assert srv.result["sent"] == srv.result["peer"] == cli.result["hex"] \
        == stream_digest(3, 2 * MB)


def test_kcp_go_defaults_and_message_mode_options(go_peer_bin):
    # kcp-go's own defaults (32/32 windows, interval 100): slow, so small
    srv, cli = run_pair("sink", "send", 100_000, timeout=20, mode="default")
    assert cli.result["sent"] == srv.result["hex"]
    srv, cli = run_pair("sink", "send", 1 * MB, timeout=20, stream=True,
                        writedelay=True, acknodelay=True, mtu=1200,
                        crypt="none", **FAST)
    assert cli.result["sent"] == srv.result["hex"]


def test_three_concurrent_sessions(go_peer_bin):
    # Congestion control on (nc=0): cwnd starts at 0 and grows, so the
    # dialers do not push 32 segments into a session the listener has not
    # yet configured.  With nc=1 that happens now and then and runs into
    # kcp-go's 7 s window stall (docs/wire.md §6), which is real kcp-go
    # behaviour, not a harness fault.
    n = 1 * MB
    cc = dict(FAST, mode=None, nodelay=1, interval=10, resend=2, nc=0)
    with GoPeer("listen", role="sink", nbytes=n, sessions=3, timeout=20,
                **cc) as srv:
        clis = [GoPeer("dial", addr=srv.address, role="send", nbytes=n,
                       seed=s, timeout=20, **cc) for s in (1, 2, 3)]
        try:
            for c in clis:
                c.start()
            for c in clis:
                c.wait()
        finally:
            for c in clis:
                c.kill()
        srv.wait()
    assert sorted(r["hex"] for r in srv.results) == \
        sorted(stream_digest(s, n) for s in (1, 2, 3))
    # EXIT comes after every session's result, followed only by the closing
    # WORK, CPU and SNMP lines
    kinds = [ev["kind"] for ev in srv.events]
    assert kinds[kinds.index("EXIT") + 1:] == ["WORK", "CPU", "SNMP"], kinds
    assert srv.snmp["PassiveOpens"] == 3


def _late_window_transfer(tellwnd):
    # The listener applies its 1024/1024 windows 200 ms after Accept, when
    # the dialer's first 32 segments already fill the default 32-segment
    # receive queue (docs/wire.md §6).
    srv, cli = run_pair("sink", "send", 4 * MB, timeout=20,
                        listen_settings=dict(acceptdelay=0.2, tellwnd=tellwnd),
                        **FAST)
    assert cli.result["sent"] == srv.result["hex"]
    return cli.result["seconds"]


def test_late_window_is_announced(go_peer_bin):
    assert _late_window_transfer(True) < 3


@pytest.mark.soak
def test_late_window_stalls_in_plain_kcp_go(go_peer_bin):
    assert _late_window_transfer(False) > 6


def test_wrong_passphrase_gets_no_session(go_peer_bin):
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="TIMEOUT|timeout"):
        run_pair("sink", "send", 100_000, timeout=1.5,
                 listen_settings=dict(crypt="aes", passphrase="right"),
                 dial_settings=dict(crypt="aes", passphrase="wrong"), **FAST)
    assert time.monotonic() - t0 < 10


def test_through_lossy_relay_5pct_drop(go_peer_bin):
    relays = []

    def via(host, port):
        relays.append(LossyRelay((host, port), drop=0.05, seed=1).start())
        return relays[-1].address

    try:
        srv, cli = run_pair("sink", "send", 5 * MB, timeout=20, via=via,
                            seed=9, **FAST)
    finally:
        for r in relays:
            r.stop()
    st = relays[0].stats()
    assert cli.result["sent"] == cli.result["peer"] == srv.result["hex"] \
        == stream_digest(9, 5 * MB)
    assert st["c2s"]["dropped"] > 0 and st["s2c"]["in"] > 0
    assert cli.snmp["RetransSegs"] > 0
    for d in st.values():
        assert d["out"] == d["in"] - d["dropped"] + d["duplicated"] - d["send_errors"]


def test_relay_fault_accounting():
    """Raw datagrams: every fault is counted and the arithmetic adds up."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.settimeout(0.3)
    tx.settimeout(2)
    n = 2000
    try:
        with LossyRelay(rx.getsockname(), drop=0.1, dup=0.05, reorder=0.05,
                        corrupt=0.05, seed=4) as relay:
            sent = []
            for i in range(n):
                pkt = i.to_bytes(4, "big") * 100
                sent.append(pkt)
                tx.sendto(pkt, relay.address)
                if i % 100 == 99:
                    time.sleep(0.002)
            got = []
            for _ in range(3 * n):  # bounded
                try:
                    got.append(rx.recv(2048))
                except socket.timeout:
                    break
            st = relay.stats()["c2s"]
            assert relay.client_port == tx.getsockname()[1]
            # and the other direction reaches the client through the relay
            rx.sendto(b"pong", ("127.0.0.1", relay.server_side_port))
            assert tx.recvfrom(100) == (b"pong", relay.address)
    finally:
        rx.close()
        tx.close()
    assert st["in"] == n
    assert min(st["dropped"], st["duplicated"], st["reordered"], st["corrupted"]) > 0
    assert st["out"] == n - st["dropped"] + st["duplicated"] == len(got)
    intact = [g for g in got if g in set(sent)]
    assert len(got) - len(intact) == pytest.approx(st["corrupted"], abs=st["duplicated"])
    idx = [int.from_bytes(g[:4], "big") for g in intact]
    assert idx != sorted(idx)  # reordered


def test_build_peer_fails_without_go(monkeypatch):
    monkeypatch.setattr(gobuild.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Go toolchain not found"):
        gopeer.build_peer()


def test_build_fails_loudly_without_kcp_go_source(monkeypatch, tmp_path):
    monkeypatch.setattr(gobuild, "KCP_GO_SRC", tmp_path / "absent")
    with pytest.raises(RuntimeError, match="kcp-go source not found"):
        gobuild.build_go_program("peer")


def test_go_builds_are_cached_by_source(monkeypatch, tmp_path, go_peer_bin):
    """One cache: a second build of unchanged source is the same file, an
    edited source gets a new binary, and XDG_CACHE_HOME moves the cache."""
    assert gobuild.build_go_program("peer") == go_peer_bin
    src = tmp_path / "hello"
    src.mkdir()
    (src / "main.go").write_text('package main\n\nfunc main() { println("one") }\n')
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = gobuild.build_go_program(src)
    assert first.startswith(str(tmp_path / "cache" / "gkcp" / "go" / "hello-"))
    assert gobuild.build_go_program(src) == first
    (src / "main.go").write_text('package main\n\nfunc main() { println("two") }\n')
    second = gobuild.build_go_program(src)
    assert second != first
    assert subprocess.run([second], capture_output=True, timeout=30).stderr == b"two\n"
    (src / "main.go").write_text("package main\n\nfunc main() { syntax error }\n")
    with pytest.raises(RuntimeError, match="building the Go program .* failed"):
        gobuild.build_go_program(src)


def test_go_bench(go_peer_bin):
    b = gopeer.go_bench(5 * MB)
    assert b.ok and b.mbps > 1 and 0 < b.cpu_seconds  # figures present, not a speed threshold


KCPTUN_CIPHERS = ["aes", "aes-128", "aes-192", "twofish", "sm4", "blowfish",
                  "cast5", "3des", "tea", "xtea", "salsa20", "xor", "none"]


@pytest.mark.parametrize("crypt", KCPTUN_CIPHERS)
def test_every_kcptun_cipher(go_peer_bin, crypt):
    # lockcrypt: kcp-go shares a BlockCrypt between goroutines and tjfoc's
    # SM4 is not safe for that; serialised, no packet may fail its CRC.
    srv, cli = run_pair("sink", "send", 300_000, timeout=20, crypt=crypt,
                        passphrase="it's a secrect", lockcrypt=True, **FAST)
    assert cli.result["sent"] == cli.result["peer"] == srv.result["hex"]
    assert srv.snmp["InCsumErrors"] == 0 and cli.snmp["InCsumErrors"] == 0


def test_echo_listener_until_idle(go_peer_bin):
    # -bytes 0 with -idle: the echo session ends after 0.3 s of silence
    with GoPeer("listen", role="echo", nbytes=0, idle=0.3, timeout=20,
                **FAST) as srv:
        with GoPeer("dial", addr=srv.address, role="echo", nbytes=100_000,
                    timeout=20, **FAST) as cli:
            cli.wait()
        srv.wait()
    assert srv.result == {"kind": "ECHO", "n": 100_000}
    assert cli.result["sent"] == cli.result["recv"]


def test_relay_blackout(go_peer_bin):
    """A 0.5 s blackout mid-transfer: kcp-go retransmits, data arrives intact."""
    relays = []

    def via(host, port):
        relays.append(LossyRelay((host, port)).start())
        return relays[-1].address

    try:
        with GoPeer("listen", role="sink", nbytes=3 * MB, timeout=20, **FAST) as srv:
            relay_addr = via(*srv.address)
            with GoPeer("dial", addr=relay_addr, role="send", nbytes=3 * MB,
                        timeout=20, mode="normal", sndwnd=64, rcvwnd=64) as cli:
                relay = relays[0]
                for _ in range(400):  # wait for traffic, bounded
                    if relay.stats()["c2s"]["in"] > 20:
                        break
                    time.sleep(0.005)
                relay.blackout(True)
                # at least 0.5 s, and until the sender's retransmissions were
                # dropped too (a loaded machine may delay the relay or the peers)
                end = time.monotonic() + 10
                time.sleep(0.5)
                while relay.dropped < 10 and time.monotonic() < end:
                    time.sleep(0.05)
                relay.blackout(False)
                cli.wait()
            srv.wait()
    finally:
        for r in relays:
            r.stop()
    assert cli.result["sent"] == srv.result["hex"]
    assert relays[0].dropped > 0 and cli.snmp["RetransSegs"] > 0
