"""Several worker processes serving one UDP port: how a gkcp server outgrows
one core.

Each worker opens its own listener on the same address with SO_REUSEPORT;
the kernel hashes every datagram's source address and port to one socket, so
a peer's KCP session always lands in the same process.  (Across machines, the
same idea with an L4 UDP balancer hashing on the source address: see the
README.)

    def worker(index):
        KCPServer(("0.0.0.0", 29900), handle, reuse_port=True, **FAST).serve_forever()

    gkcp.prefork.run(worker, workers=4)
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, List, Optional

__all__ = ["run", "fork_workers", "wait_workers"]

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def fork_workers(worker: Callable[[int], object], workers: Optional[int] = None) -> List[int]:
    """Fork ``workers`` processes (default: one per CPU) that each call
    ``worker(index)`` and exit with 0 when it returns, 1 if it raises.
    Call it before creating any gkcp object in the parent: each child builds
    its own sockets, engine and gevent hub.  Returns the children's pids."""
    count = workers or os.cpu_count() or 1
    if count < 1:
        raise ValueError("workers must be >= 1")
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # the parent blocks the stop signals while it forks (see
                # run); a worker starts with them delivered and default
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                import gevent
                gevent.reinit()
                worker(index)
                code = 0
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    return pids


def wait_workers(pids: List[int]) -> int:
    """Wait for every worker; SIGINT/SIGTERM received meanwhile are passed on
    to them.  Returns the number of workers that failed."""
    previous = {sig: signal.signal(sig, _forwarder(pids)) for sig in _STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    failed = 0
    try:
        for pid in pids:
            try:  # retried across signals by Python itself (PEP 475)
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:  # reaped already: nothing to report
                status = 0
            failed += os.waitstatus_to_exitcode(status) != 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return failed


def _forwarder(pids: List[int]) -> Callable[[int, object], None]:
    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    return forward


def run(worker: Callable[[int], object], workers: Optional[int] = None) -> int:
    """fork_workers then wait_workers: the pre-fork server's main.  A stop
    signal that arrives while workers are being forked is held until the
    parent can pass it on, so no worker is left running without its parent."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    return wait_workers(fork_workers(worker, workers))
