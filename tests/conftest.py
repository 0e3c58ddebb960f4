"""Shared pytest fixtures for the gkcp test suite.

Keep this file to fixtures that several test modules share; put helpers in
their own modules (tests/helpers.py for the small shared ones, tests/gopeer.py,
tests/lossy_relay.py) and import them.
"""

import os
import sys

import pytest

# Make the helper modules in tests/ importable however pytest was started.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


# ---------------------------------------------------------------------------
# kcp-go reference peer (gkcp/bench/goref/peer, driven by tests/gopeer.py)

@pytest.fixture(scope="session")
def go_peer_bin():
    """Path of the built kcp-go peer binary.

    Builds it on first use.  A missing Go toolchain or kcp-go source raises
    RuntimeError, so the tests that need the peer fail rather than skip.
    """
    import gopeer
    return gopeer.build_peer()


@pytest.fixture(scope="session")
def go_smux_peer_bin():
    """Path of the built Go smux peer (tests/go/smuxpeer, driven by
    tests/smuxpeer.py): smux 1.5.16 over kcp-go 5.6.1 or TCP.  A missing Go
    toolchain, kcp-go or smux source raises, so its tests fail, never skip."""
    import smuxpeer
    return smuxpeer.build_smux_peer()


# ---------------------------------------------------------------------------
# Waiting and resource accounting for gkcp tests in one process

def wait_until(condition, timeout=10.0):
    """Poll condition (letting greenlets run) until true or timeout; its last value."""
    import time
    import gevent
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        gevent.sleep(0.05)
    return condition()


def resource_usage():
    """What a leak grows: RSS (KiB), live greenlets, open fds, gkcp Endpoints,
    C sessions of this thread's engine and the CurrEstab counter."""
    import gc
    import greenlet
    import gkcp
    from gkcp._core import lib
    from gkcp._endpoint import Endpoint
    from gkcp.engine import get_engine
    gc.collect()
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    objects = gc.get_objects()
    return dict(rss_kib=rss,
                greenlets=sum(isinstance(o, greenlet.greenlet) for o in objects),
                fds=len(os.listdir("/proc/self/fd")),
                endpoints=sum(isinstance(o, Endpoint) for o in objects),
                engine_sessions=lib.gk_engine_sessions(get_engine().c),
                curr_estab=gkcp.snmp()["CurrEstab"])
