"""python -m gkcp.bench lossy, run as a user would (root: it creates two
network namespaces).  Functional only: every request answered, figures
complete and consistent, the namespaces gone afterwards -- never fast."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "gkcp-lossy-"
TRANSPORTS = ("tcp", "kcp", "kcp+fec10/3")


def lossy_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)}


@pytest.fixture
def namespaces_allowed():
    """Skip only where this process cannot create a network namespace; a
    missing `ip` is a missing tool (iproute2), hence a failure."""
    probe = "%sprobe-%d" % (PREFIX, os.getpid())
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root / CAP_SYS_ADMIN): "
                    + proc.stderr.strip())
    subprocess.run(["ip", "netns", "del", probe], check=True, timeout=30)
    before = lossy_namespaces()
    yield
    assert lossy_namespaces() <= before, "the bench left namespaces behind"


@pytest.mark.timeout(300)
def test_lossy_short_run_answers_every_request(namespaces_allowed, tmp_path):
    path = tmp_path / "lossy.json"
    rounds = 100
    proc = subprocess.run([sys.executable, "-m", "gkcp.bench", "lossy", "--loss", "0,10",
                           "--rounds", str(rounds), "--run-timeout", "120", "--json", str(path)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=280)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "added delay:" in out and "TCP_NODELAY" in out, out
    table = [line for line in out.splitlines() if line.startswith("| ") and "loss %" not in line]
    assert len(table) == 2 * len(TRANSPORTS), out

    doc = json.loads(path.read_text())
    assert doc["settings"]["rounds"] == rounds and doc["settings"]["tcp_congestion_control"]
    runs = doc["runs"]
    assert [(r["loss_pct"], r["transport"]) for r in runs] == \
        [(loss, t) for loss in (0, 10) for t in TRANSPORTS]
    for r in runs:
        assert r["outcome"] == "finished" and r["answered"] == rounds, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
        assert 0 < r["avg_ms"] <= r["max_ms"], r
        # Every useful byte crossed the wire at least once, with headers on top.
        assert r["wire_bytes"] > 2 * 1024 * rounds and r["wire_per_useful"] >= 1, r
        if r["loss_pct"] == 0:
            assert r["applied_loss_pct"] == 0, r
        else:  # hundreds of packets at 10%: some were dropped
            assert 0 < r["applied_loss_pct"] < 50, r
        assert "%d/%d" % (rounds, rounds) in table[runs.index(r)], (r, out)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_lossy_run_deletes_its_namespaces(namespaces_allowed, signum):
    proc = subprocess.Popen([sys.executable, "-m", "gkcp.bench", "lossy", "--loss", "0",
                             "--transports", "tcp", "--rounds", "10000000"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    mine = {"%s%d-c" % (PREFIX, proc.pid), "%s%d-s" % (PREFIX, proc.pid)}
    try:
        assert wait_until(lambda: mine <= lossy_namespaces(), timeout=60), "no namespaces came up"
        time.sleep(1)  # let the client and server processes start
        proc.send_signal(signum)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in out, out
    assert not mine & lossy_namespaces()
