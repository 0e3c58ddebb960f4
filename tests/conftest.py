"""Shared pytest fixtures for the gkcp test suite.

Keep this file to fixtures that several test modules share; put helpers in
their own modules (tests/gopeer.py, tests/lossy_relay.py) and import them.
"""

import os
import sys

import pytest

# Make the helper modules in tests/ importable however pytest was started.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


# ---------------------------------------------------------------------------
# kcp-go reference peer (tests/go/peer, driven by tests/gopeer.py)

@pytest.fixture(scope="session")
def go_peer_bin():
    """Path of the built kcp-go peer binary.

    Builds it on first use.  A missing Go toolchain or kcp-go source raises
    RuntimeError, so the tests that need the peer fail rather than skip.
    """
    import gopeer
    return gopeer.build_peer()
