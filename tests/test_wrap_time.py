"""Millisecond time in the C core is u32 and wraps every 49.7 days: every
deadline must be compared as a wrapping difference, and durations of 2^31 ms
or more (which such a comparison cannot tell from the past) are clamped to
GK_DURATION_MAX_MS by the core itself, whatever the Python edge lets
through.  The engine is driven directly (tests/corerig.py) with a clock set
just below the wrap and leaping by days.

A spinning updater never returns, so the checks that would hang on a broken
core run in a child process with a timeout."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from gkcp._core import ffi, lib

from corerig import PUSH, CoreRig, recv_all, segment

TESTS = Path(__file__).resolve().parent
WRAP = 0xFFFFFF00          # 256 ms before the clock wraps
DAY_MS = 86_400_000


def run_child(body: str, timeout: float = 30) -> str:
    """Run body (with CoreRig imported) in a fresh interpreter; a core that
    spins shows up as a timeout."""
    code = "import sys; sys.path.insert(0, %r)\nimport json\nfrom corerig import CoreRig\nfrom gkcp._core import lib\n" % (
        str(TESTS),) + textwrap.dedent(body)
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the C updater did not return within %d s (spinning)" % timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_idle_timeout_between_2_31_and_2_32_ms_neither_spins_nor_ends_early():
    out = run_child("""
        with CoreRig(start=%d) as rig:
            silent = rig.sink()                       # never answers
            dialer = rig.udp(listening=False, idle_timeout_ms=3_000_000_000)
            sess = rig.dial(dialer, silent.getsockname())
            waits = [rig.step(0)]
            # leap through a quarter of 2^31 ms at a time, across the wrap
            for _ in range(7):
                waits.append(rig.step(1 << 28))
            open_before = lib.gk_sess_status(sess)
            rig.step(1 << 28)                         # now 2^31 ms of silence: past the clamp
            print(json.dumps([waits, open_before, lib.gk_sess_status(sess), len(rig.dead)]))
    """ % WRAP)
    waits, open_before, status, dead = json.loads(out)
    assert all(0 < w <= 1 << 30 for w in waits), waits     # sane waits, never "due in the past"
    assert open_before == lib.GK_ST_OPEN                     # 7 * 2^28 ms < GK_DURATION_MAX_MS
    assert status == lib.GK_ST_IDLE and dead == 1            # ended once the clamped timeout passed


def test_idle_timeout_is_clamped_to_the_documented_maximum():
    out = run_child("""
        with CoreRig(start=%d) as rig:
            silent = rig.sink()
            dialer = rig.udp(listening=False, idle_timeout_ms=0xFFFFFFFF)
            sess = rig.dial(dialer, silent.getsockname())
            rig.step(0)
            rig.step(lib.GK_DURATION_MAX_MS - 1)
            before = lib.gk_sess_status(sess)
            rig.step(1)
            print(before, lib.gk_sess_status(sess))
    """ % WRAP)
    assert out.split() == [str(lib.GK_ST_OPEN), str(lib.GK_ST_IDLE)]


def test_huge_linger_keeps_retransmitting_instead_of_dropping_at_once():
    # A linger of 2^31..2^32 ms used to look like a deadline already passed:
    # the session was freed with its data unacknowledged at the next update.
    for linger in (3_000_000_000, 0xFFFFFFFF):
        with CoreRig(start=WRAP) as rig:
            silent = rig.sink()
            dialer = rig.udp(listening=False)
            sess = rig.dial(dialer, silent.getsockname(), announce=False)
            assert lib.gk_sess_send(sess, b"unacknowledged", 14, rig.now) == 14
            assert lib.gk_sess_close(sess, rig.now, linger) == 0       # lingering
            for _ in range(5):
                assert 0 < rig.step(DAY_MS) <= 1 << 30
            assert rig.freed == []
            assert lib.gk_engine_sessions(rig.eng) == 1
            # it still retransmits: the silent listener keeps hearing it
            recv_all(silent)
            rig.step(DAY_MS)
            assert recv_all(silent)


def test_transfer_and_proof_across_the_wrap():
    """Accept (the window-ask round trip), data both ways and the updater's
    waits, with the clock crossing 2^32 in the middle."""
    with CoreRig(start=0xFFFFFFFF - 150) as rig:
        lis = rig.udp(listening=True)
        dia = rig.udp(listening=False)
        client = rig.dial(dia, rig.address(lis))
        payload = bytes(range(256)) * 40
        assert lib.gk_sess_send(client, payload, len(payload), rig.now) == len(payload)
        waits = []
        for _ in range(60):
            waits.append(rig.step(5))
            if rig.accepted:
                break
        assert len(rig.accepted) == 1
        server = rig.accepted[0]
        got = b""
        buf = bytearray(65536)
        cbuf = ffi.from_buffer(buf)
        for _ in range(200):
            n = lib.gk_sess_recv(server, cbuf, len(buf), rig.now)
            if n > 0:
                got += bytes(buf[:n])
            if len(got) >= len(payload):
                break
            waits.append(rig.step(5))
        assert got == payload
        assert lib.gk_sess_send(server, b"reply", 5, rig.now) == 5
        for _ in range(50):
            waits.append(rig.step(5))
            n = lib.gk_sess_recv(client, cbuf, len(buf), rig.now)
            if n > 0:
                break
        assert bytes(buf[:n]) == b"reply"
        assert rig.now < 0xFFFFFFFF - 150    # the clock did wrap
        assert all(w <= 1000 for w in waits), waits


def test_unproven_session_timers_across_the_wrap():
    """An unproven session is asked again twice and freed after
    GK_UNPROVEN_LIFETIME_MS, also when that spans the wrap."""
    with CoreRig(start=0xFFFFFFFF - 1500) as rig:
        lis = rig.udp(listening=True)
        spoof = rig.sink()
        before = dict(expired=lib.gk_stats.UnprovenExpired)
        push = segment(77, PUSH)
        spoof.sendto(push, rig.address(lis))
        rig.step(0)
        asks = [len(recv_all(spoof))]
        for _ in range(int(lib.GK_UNPROVEN_LIFETIME_MS / 250) - 1):
            rig.step(250)
            asks.append(len(recv_all(spoof)))
        assert lib.gk_udp_unproven(lis) == 1
        rig.step(250)
        assert lib.gk_udp_unproven(lis) == 0 and lib.gk_udp_sessions(lis) == 0
        assert lib.gk_stats.UnprovenExpired == before["expired"] + 1
        assert sum(asks) == 3 and asks[0] == 1   # one answer, then two re-asks
        assert rig.accepted == []


def test_keepalive_probes_and_ends_a_silent_session_across_the_wrap():
    out = run_child("""
        with CoreRig(start=%d) as rig:
            silent = rig.sink()                       # never answers a probe
            dialer = rig.udp(listening=False, keepalive_ms=1000, keepalive_timeout_ms=3000)
            sess = rig.dial(dialer, silent.getsockname())
            probes = lib.gk_stats.KeepaliveProbes
            waits = [rig.step(0)] + [rig.step(500) for _ in range(5)]   # 2.5 s, across the wrap
            middle = [lib.gk_sess_status(sess), lib.gk_stats.KeepaliveProbes - probes]
            rig.step(600)                             # 3.1 s of silence
            print(json.dumps([waits, middle, lib.gk_sess_status(sess), len(rig.dead)]))
    """ % WRAP)
    waits, middle, status, dead = json.loads(out)
    assert all(0 < w <= 1100 for w in waits), waits          # parked until the next probe, never overdue
    assert middle == [lib.GK_ST_OPEN, 1]                     # one probe after 1 s (rounded), none yet at 2.5 s
    assert status == lib.GK_ST_KEEPALIVE and dead == 1
