"""python -m gkcp.bench (transfer and scale) and its peer, run as a user
would, as subprocesses.  Functional only: the figures must exist and be
positive, never fast (the machine is shared)."""
import json
import os
import re
import subprocess
import sys

import pytest

from gkcp.bench.transfer import METRICS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRINGS = ("gkcp<->gkcp", "gkcp<->kcp-go", "kcp-go<->kcp-go")
NUMBER = r"(\d+(?:\.\d+)?)"


def run_bench(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "gkcp.bench", *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out
    return out


def test_transfer_quick_table(go_peer_bin, tmp_path):
    path = tmp_path / "bench.json"
    out = run_bench("--quick", "--bytes", "3M", "--rtt-count", "50", "--rtt-rounds", "2", "--json", str(path))
    rows = {}
    for line in out.splitlines():
        m = re.match(r"plain\s+(\S+<->\S+)\s+(.*)$", line)
        if m and "..." not in line:
            rows[m.group(1)] = [float(x) for x in re.findall(NUMBER + r"(?= |$)", m.group(2))]
    assert set(rows) == set(PAIRINGS), out
    for name, numbers in rows.items():
        assert len(numbers) == len(METRICS) and all(x > 0 for x in numbers), (name, out)
    assert "(" in out and "x)" in out  # ratios to kcp-go<->kcp-go
    doc = json.loads(path.read_text())
    plain = doc["results"]["plain"]
    assert set(plain) == set(PAIRINGS)
    for res in plain.values():
        assert all(res[m] > 0 for m in METRICS)
        # CPU is the timed transfer's, so interpreter start-up never enters it
        # (subtracting a separately measured start-up once made it 0.0).
        assert 0 < res["sink_cpu_listen_s"] + res["sink_cpu_dial_s"] < res["sink_cpu_raw_s"]
        # the RTT figures are medians over rounds that visited the pairings in turn
        assert len(res["rtt_rounds"]) == 2
        assert sorted(r["p50_us"] for r in res["rtt_rounds"])[0] <= res["rtt_p50_us"]
    assert plain["kcp-go<->kcp-go"]["sink_mbps_ratio"] == pytest.approx(1.0)


def test_rtt_load_table_compares_retransmissions_in_one_run(go_peer_bin, tmp_path):
    path = tmp_path / "load.json"
    out = run_bench("rtt-load", "--busy", "1", "--bytes", "1M", "--rtt-count", "30", "--rounds", "1",
                    "--pairs", "default", "--json", str(path), timeout=120)
    rows = [line for line in out.splitlines() if re.match(r"plain\s+\S+<->\S+\s+\d", line)]
    assert len(rows) == len(PAIRINGS), out
    doc = json.loads(path.read_text())
    assert doc["settings"]["busy"] == 1
    plain = doc["results"]["plain"]
    assert set(plain) == set(PAIRINGS)
    for res in plain.values():
        assert res["sink_mbps"] > 0 and res["rtt_p50_us"] > 0 and res["rtt_p99_us"] >= res["rtt_p50_us"]
        assert res["sink_retrans_per_mb"] >= 0 and len(res["sink_rounds"]) == len(res["rtt_rounds"]) == 1


def test_plot_without_matplotlib_fails_before_any_run(monkeypatch):
    from gkcp.bench import transfer

    def no_run(*args, **kwargs):
        raise AssertionError("the benchmark started although --plot cannot be honoured")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(transfer, "build_go_program", no_run)
    monkeypatch.setattr(transfer, "Runner", no_run)
    with pytest.raises(SystemExit, match="--plot needs matplotlib"):
        transfer.main(["--quick", "--plot", "chart.png"])


def test_transfer_is_the_default_command():
    proc = subprocess.run([sys.executable, "-m", "gkcp.bench", "--help"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert proc.returncode == 0 and b"--quick" in proc.stdout and b"scale" in proc.stdout


def test_scale_small(tmp_path):
    path = tmp_path / "scale.json"
    out = run_bench("scale", "--sessions", "200", "--idle-seconds", "2", "--active-seconds", "2",
                    "--settle", "1", "--json", str(path))
    assert re.search(r"server CPU %s%% .* = %s KiB per session" % (NUMBER, NUMBER), out), out
    assert re.search(r"200 sessions x 64-byte echo: %s messages/s" % NUMBER, out), out
    doc = json.loads(path.read_text())
    assert doc["idle"]["server_cpu_pct"] >= 0
    assert doc["idle"]["rss_per_session_kib"] > 0
    assert doc["active"]["messages_per_s"] > 0 and doc["active"]["messages"] > 0


def test_gkcp_peer_usage_errors():
    for args, code in ((["listen", "-role", "bogus"], 2), (["dial", "-role", "bogus"], 2), (["nope"], 2),
                       (["dial", "-crypt", "aes", "-key", "zz", "-addr", "127.0.0.1:9"], 1)):
        proc = subprocess.run([sys.executable, "-m", "gkcp.bench.peer", *args], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
        assert proc.returncode == code, (args, proc.stdout)
        assert proc.stdout.startswith(b"ERROR "), (args, proc.stdout)
