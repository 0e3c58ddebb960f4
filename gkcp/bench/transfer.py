"""``python -m gkcp.bench [transfer]``: gkcp against kcp-go 5.6.1, each end
in its own process, side by side in one run.

For every profile (plain, AES, AES + FEC 10/3) and pairing (dialer<->listener:
gkcp<->gkcp, gkcp<->kcp-go, kcp-go<->kcp-go; ``--pairs all`` adds
kcp-go<->gkcp) it starts the two peers (gkcp: ``python -m gkcp.bench.peer``,
kcp-go: the reference peer in gkcp/bench/goref/peer, built with Go
into ~/.cache/gkcp/go on first use; same flags) and measures

- sink: the dialer sends N bytes, the listener answers with their SHA-256;
  MB/s from the dialer's clock, dial to digest;
- echo: the dialer sends N bytes and reads them back; MB/s = N / seconds;
- RTT: 64-byte round trips, p50 / p99 in microseconds, each the median
  over several rounds (``--rtt-rounds``) that visit the pairings in turn,
  so that one noisy moment of a shared machine does not decide a figure;
- CPU: user + system time both processes spent on the timed part of the
  sink run (each peer's getrusage at the start and end of its transfer, the
  WORK line), per MB -- an interpreter's start-up never enters the figure.

Each figure is also shown as a ratio to kcp-go<->kcp-go of the same profile.
Settings: nodelay 1/10/2/1, windows 1024, MTU 1400, 4 MiB
socket buffers.  The CPU figures include the payload generation (SHAKE128)
and hashing (SHA-256) both peers do.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..demo import parse_size
from .gobuild import build_go_program
from .wire import parse_line

MB = 1e6
CRYPT_PASS = "gkcp-bench"
PROFILES: Dict[str, List[str]] = {
    "plain": [],
    "aes": ["-crypt=aes", "-pass=" + CRYPT_PASS],
    "aes+fec10/3": ["-crypt=aes", "-pass=" + CRYPT_PASS, "-ds=10", "-ps=3"],
}
REFERENCE = ("kcp-go", "kcp-go")
PAIRS = {
    "default": [("gkcp", "gkcp"), ("gkcp", "kcp-go"), REFERENCE],
    "all": [("gkcp", "gkcp"), ("gkcp", "kcp-go"), ("kcp-go", "gkcp"), REFERENCE],
}
# metric -> (table heading, format, lower is better)
METRICS = {
    "sink_mbps": ("sink MB/s", "%.1f", False),
    "echo_mbps": ("echo MB/s", "%.1f", False),
    "rtt_p50_us": ("RTT p50 us", "%.0f", True),
    "rtt_p99_us": ("RTT p99 us", "%.0f", True),
    "sink_cpu_ms_per_mb": ("CPU ms/MB", "%.2f", True),
}


class BenchError(RuntimeError):
    pass


def pair_name(pair: Sequence[str]) -> str:
    return "%s<->%s" % tuple(pair)


# ---------------------------------------------------------------- processes

class PeerProcess:
    """One peer process (either implementation); stdout parsed line by line
    (by default as the peers' protocol, see gkcp.bench.wire.parse_line)."""

    def __init__(self, argv: List[str], env: Dict[str, str],
                 parse: Callable[[str], Optional[dict]] = parse_line) -> None:
        self.argv = argv
        self._parse = parse
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, env=env)
        self._pending = b""
        self.events: List[dict] = []

    def _take(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            ev = self._parse(line.decode(errors="replace"))
            if ev is not None:
                self.events.append(ev)

    def first(self, kind: str) -> Optional[dict]:
        return next((ev for ev in self.events if ev["kind"] == kind), None)

    def wait_for(self, kind: str, timeout: float) -> dict:
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while self.first(kind) is None:
            left = end - time.monotonic()
            if left <= 0:
                self.kill()
                raise BenchError("no %s line within %.0f s\n%s" % (kind, timeout, self.describe()))
            if select.select([fd], [], [], left)[0]:
                data = os.read(fd, 65536)
                if not data:
                    self.proc.wait()
                    raise BenchError("exited before %s\n%s" % (kind, self.describe()))
                self._take(data)
        return self.first(kind)

    def finish(self, timeout: float) -> "PeerProcess":
        """Wait for a clean exit; raise BenchError otherwise."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError("did not finish within %.0f s\n%s" % (timeout, self.describe()))
        self._take(out + b"\n")
        if self.proc.returncode != 0 or self.first("ERROR") or self.first("TIMEOUT"):
            raise BenchError("failed\n" + self.describe())
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def describe(self) -> str:
        self._err.seek(0)
        err = self._err.read()[-2000:].decode(errors="replace")
        lines = ["%s" % ev for ev in self.events if ev["kind"] != "SNMP"][-10:]
        return "  %s\n  exit %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(self.argv), self.proc.poll(), "\n    ".join(lines), err)

    def cpu_seconds(self, kind: str = "CPU") -> float:
        """user + system seconds of the whole process (CPU) or of its timed
        transfer (WORK)."""
        ev = self.first(kind)
        if ev is None:
            raise BenchError("no %s line\n%s" % (kind, self.describe()))
        return ev["user"] + ev["sys"]

    def result(self, kind: str) -> dict:
        ev = self.first(kind)
        if ev is None:
            raise BenchError("no %s line\n%s" % (kind, self.describe()))
        return ev


def child_env() -> Dict[str, str]:
    """Environment in which `python -m gkcp...` imports this very gkcp."""
    import gkcp
    pkg_parent = str(Path(gkcp.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p)
    return env


def add_busy_poll_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--busy-poll", type=float, default=0.0, metavar="SECONDS",
                   help="gkcp's busy_poll option for its peers, e.g. 0.0001 (default 0: off; kcp-go has none)")


def gkcp_only_flags(args: argparse.Namespace) -> List[str]:
    """The peer flags of --busy-poll, for gkcp's peers only (Runner's gkcp_flags)."""
    return ["-busypoll=%g" % args.busy_poll] if args.busy_poll else []


class Runner:
    """Starts listener/dialer pairs of either implementation with shared flags."""

    def __init__(self, go_peer: str, common: List[str], timeout: float, gkcp_flags: Sequence[str] = ()) -> None:
        self.env = child_env()
        # gkcp_flags: options kcp-go has no flag for (-busypoll), given to gkcp's peers only
        self.commands = {"gkcp": [sys.executable, "-m", "gkcp.bench.peer"], "kcp-go": [go_peer]}
        self.impl_flags = {"gkcp": list(gkcp_flags), "kcp-go": []}
        self.common = common
        self.timeout = timeout

    def run(self, pair: Sequence[str], listen_role: str, dial_role: str, nbytes: int,
            flags: Sequence[str] = (), dial_flags: Sequence[str] = ()) -> Tuple[PeerProcess, PeerProcess]:
        dial_impl, listen_impl = pair
        deadline = "-timeout=%g" % self.timeout
        shared = ["-bytes=%d" % nbytes, deadline, *self.common, *flags]
        listener = PeerProcess(self.commands[listen_impl] + ["listen", "-role=" + listen_role, *shared,
                                                             *self.impl_flags[listen_impl]], self.env)
        dialer = None
        try:
            ready = listener.wait_for("READY", 30)
            dialer = PeerProcess(self.commands[dial_impl] + ["dial", "-addr=" + ready["addr"],
                                                              "-role=" + dial_role, *shared, *dial_flags,
                                                              *self.impl_flags[dial_impl]],
                                 self.env)
            dialer.finish(self.timeout + 15)
            listener.finish(self.timeout + 15)
        finally:
            listener.kill()
            if dialer is not None:
                dialer.kill()
        return listener, dialer


# ---------------------------------------------------------------- measuring

def cpu_figures(run: str, listener: PeerProcess, dialer: PeerProcess, megabytes: float) -> Dict[str, Any]:
    """CPU of one run: the timed transfer of both peers (WORK, per MB moved)
    and, for reference, their whole processes."""
    listen_s, dial_s = listener.cpu_seconds("WORK"), dialer.cpu_seconds("WORK")
    return {run + "_cpu_listen_s": listen_s, run + "_cpu_dial_s": dial_s,
            run + "_cpu_raw_s": listener.cpu_seconds() + dialer.cpu_seconds(),
            run + "_cpu_ms_per_mb": (listen_s + dial_s) * 1000 / megabytes,
            run + "_retrans": _retransmits(listener, dialer)}


RTT_SIZE = 64


def measure_rtt(runner: Runner, pair: Sequence[str], profile: List[str], rtt_count: int) -> Dict[str, float]:
    """One RTT run: rtt_count 64-byte round trips; p50, p99 and retransmitted
    segments of both peers."""
    listener, dialer = runner.run(pair, "echo", "rtt", rtt_count * RTT_SIZE, profile,
                                  ["-count=%d" % rtt_count, "-size=%d" % RTT_SIZE])
    r = dialer.result("RTT")
    return {"p50_us": r["p50_us"], "p99_us": r["p99_us"], "retrans": _retransmits(listener, dialer)}


def interleaved_rtt(runner: Runner, pairs: Sequence[Sequence[str]], profile: List[str], rtt_count: int,
                    rounds: int) -> Dict[str, Dict[str, Any]]:
    """RTT of every pairing, round after round in turn (a load spike then
    hits one round of each pairing, not every round of one); per pairing the
    median p50 and p99 over the rounds, and the rounds themselves."""
    samples: Dict[str, List[Dict[str, float]]] = {pair_name(p): [] for p in pairs}
    for _ in range(rounds):
        for pair in pairs:
            samples[pair_name(pair)].append(measure_rtt(runner, pair, profile, rtt_count))
    return {name: {"rtt_p50_us": statistics.median(r["p50_us"] for r in runs),
                   "rtt_p99_us": statistics.median(r["p99_us"] for r in runs),
                   "rtt_count": rtt_count, "rtt_rounds": runs}
            for name, runs in samples.items()}


def measure(runner: Runner, pair: Sequence[str], profile: List[str], nbytes: int) -> Dict[str, Any]:
    """Throughput (sink, echo) and the sink run's CPU of one pairing."""
    out: Dict[str, Any] = {}

    listener, dialer = runner.run(pair, "sink", "send", nbytes, profile)
    send, sink = dialer.result("SEND"), listener.result("SINK")
    if not send["sent"] == send["peer"] == sink["hex"]:
        raise BenchError("sink digest mismatch for %s" % pair_name(pair))
    out.update(sink_mbps=send["mbps"], sink_seconds=send["seconds"])
    out.update(cpu_figures("sink", listener, dialer, nbytes / MB))

    listener, dialer = runner.run(pair, "echo", "echo", nbytes, profile)
    echo = dialer.result("ECHO")
    if echo["sent"] != echo["recv"]:
        raise BenchError("echo digest mismatch for %s" % pair_name(pair))
    out.update(echo_mbps=nbytes / echo["seconds"] / MB, echo_seconds=echo["seconds"])
    out.update(cpu_figures("echo", listener, dialer, 2 * nbytes / MB))
    return out


def median_of(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Each figure's median over repeated runs (a shared machine is noisy),
    with the runs themselves kept."""
    out: Dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    if len(runs) > 1:
        out["runs"] = runs
    return out


def _retransmits(*peers: PeerProcess) -> int:
    total = 0
    for p in peers:
        ev = p.first("SNMP")
        if ev is not None:
            total += int(ev["snmp"].get("RetransSegs", 0))
    return total


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------- reporting

def ratios(results: Dict[str, Dict[str, Dict[str, Any]]]) -> None:
    """Add '<metric>_ratio' (value / kcp-go<->kcp-go) to every result."""
    ref_name = pair_name(REFERENCE)
    for by_pair in results.values():
        ref = by_pair.get(ref_name)
        for res in by_pair.values():
            for metric in METRICS:
                base = ref.get(metric) if ref else None
                res[metric + "_ratio"] = (res[metric] / base) if base else None


def format_table(results: Dict[str, Dict[str, Dict[str, Any]]]) -> str:
    headings = ["profile", "pairing (dial<->listen)"] + [METRICS[m][0] for m in METRICS]
    rows = []
    for profile, by_pair in results.items():
        for name, res in by_pair.items():
            row = [profile, name]
            for metric, (_, fmt, _) in METRICS.items():
                cell = fmt % res[metric]
                ratio = res.get(metric + "_ratio")
                if ratio is not None and name != pair_name(REFERENCE):
                    cell += " (%.2fx)" % ratio
                row.append(cell)
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [headings]) for i in range(len(headings))]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(headings, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def load_pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend; SystemExit naming the
    package to install when it is missing (checked before any run)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'gkcp[bench]' (or pip install matplotlib)")
    return plt


def plot(results: Dict[str, Dict[str, Dict[str, Any]]], path: str, title: str) -> None:
    """A bar chart per metric: one group per profile, one bar per pairing."""
    plt = load_pyplot()
    profiles = list(results)
    pairs = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 4.2))
    width = 0.8 / len(pairs)
    for ax, (metric, (heading, _, lower_better)) in zip(axes, METRICS.items()):
        for i, name in enumerate(pairs):
            values = [results[p][name][metric] for p in profiles]
            xs = [k + (i - (len(pairs) - 1) / 2) * width for k in range(len(profiles))]
            ax.bar(xs, values, width, label=name)
        ax.set_xticks(range(len(profiles)))
        ax.set_xticklabels(profiles, fontsize=8)
        ax.set_title(heading + (" (lower is better)" if lower_better else ""), fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    from . import COMMANDS
    p = argparse.ArgumentParser(prog="python -m gkcp.bench [transfer]",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="other benchmarks: python -m gkcp.bench {%s} --help"
                                % ",".join(sorted(set(COMMANDS) - {"transfer"})))
    p.add_argument("--bytes", type=parse_size, default=None,
                   help="bytes per sink/echo transfer (default 100M; 20M with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: 20 MB, plain profile only, 500 round trips per round")
    p.add_argument("--profiles", default=None, help="comma-separated subset of: %s" % ",".join(PROFILES))
    p.add_argument("--pairs", choices=sorted(PAIRS), default="default",
                   help="default: gkcp<->gkcp, gkcp<->kcp-go, kcp-go<->kcp-go; all: also kcp-go<->gkcp")
    p.add_argument("--window", type=int, default=1024, help="send and receive window (default 1024)")
    p.add_argument("--interval", type=int, default=10, help="KCP interval ms (default 10)")
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--sockbuf", type=parse_size, default=4 << 20, help="socket buffers (default 4Mi = 4194304 bytes)")
    p.add_argument("--rtt-count", type=int, default=None,
                   help="64-byte round trips per RTT round (default 2000; 500 with --quick)")
    p.add_argument("--rtt-rounds", type=int, default=5,
                   help="RTT rounds per pairing, taken in turn; the table shows the median (default 5)")
    add_busy_poll_argument(p)
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the table shows medians (default 1)")
    p.add_argument("--timeout", type=float, default=120, help="per-process deadline, seconds")
    p.add_argument("--json", metavar="PATH", help="save settings and results as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="render the table as a chart (needs matplotlib)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    nbytes = args.bytes or int((20 if args.quick else 100) * MB)
    rtt_count = args.rtt_count or (500 if args.quick else 2000)
    if args.rtt_rounds < 1:
        raise SystemExit("--rtt-rounds must be at least 1")
    if args.profiles:
        profiles = args.profiles.split(",")
        unknown = set(profiles) - set(PROFILES)
        if unknown:
            raise SystemExit("unknown profile(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(PROFILES)))
    else:
        profiles = ["plain"] if args.quick else list(PROFILES)
    pairs = PAIRS[args.pairs]
    if args.plot:
        load_pyplot()
    go_peer = build_go_program("peer")
    common = ["-nodelay=1", "-interval=%d" % args.interval, "-resend=2", "-nc=1",
              "-sndwnd=%d" % args.window, "-rcvwnd=%d" % args.window, "-mtu=%d" % args.mtu,
              "-sockbuf=%d" % args.sockbuf]
    runner = Runner(go_peer, common, args.timeout, gkcp_only_flags(args))
    load_before = load_average()
    print("gkcp bench: %.0f MB per transfer, %d run(s) per cell, RTT %d rounds of %d round trips; "
          "nodelay 1/%d/2/1, window %d, MTU %d, sockbuf %d%s; %d CPUs, load %s"
          % (nbytes / MB, args.repeat, args.rtt_rounds, rtt_count, args.interval, args.window, args.mtu,
             args.sockbuf, ", gkcp busy_poll %g s" % args.busy_poll if args.busy_poll else "",
             os.cpu_count() or 0, load_before), flush=True)
    started = time.time()
    try:
        results: Dict[str, Dict[str, Dict[str, Any]]] = {}
        for profile in profiles:
            results[profile] = {}
            for pair in pairs:
                print("  %-12s %-16s ..." % (profile, pair_name(pair)), end="", flush=True)
                res = median_of([measure(runner, pair, PROFILES[profile], nbytes) for _ in range(args.repeat)])
                results[profile][pair_name(pair)] = res
                print(" sink %.1f MB/s, echo %.1f MB/s" % (res["sink_mbps"], res["echo_mbps"]), flush=True)
            print("  %-12s RTT, %d rounds over the pairings ..." % (profile, args.rtt_rounds), end="", flush=True)
            for name, rtt in interleaved_rtt(runner, pairs, PROFILES[profile], rtt_count, args.rtt_rounds).items():
                results[profile][name].update(rtt)
            print(" " + ", ".join("%s %.0f/%.0f us" % (name, res["rtt_p50_us"], res["rtt_p99_us"])
                                  for name, res in results[profile].items()), flush=True)
    except BenchError as e:
        print("\nerror: %s" % e, file=sys.stderr)
        return 1
    ratios(results)
    load_after = load_average()
    print()
    print(format_table(results))
    print("ratios are to kcp-go<->kcp-go of the same profile; CPU ms/MB (= s/GB): sink run, both processes, "
          "timed transfer only; load %s -> %s" % (load_before, load_after))
    if args.json:
        doc = {"settings": {"bytes": nbytes, "rtt_count": rtt_count, "rtt_rounds": args.rtt_rounds,
                            "repeat": args.repeat,
                            "nodelay": [1, args.interval, 2, 1], "window": args.window, "mtu": args.mtu, "sockbuf": args.sockbuf,
                            "gkcp_busy_poll": args.busy_poll,
                            "profiles": {p: PROFILES[p] for p in profiles}},
               "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
               "started": started, "seconds": time.time() - started,
               "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("results saved to %s" % args.json)
    if args.plot:
        plot(results, args.plot, "gkcp vs kcp-go: %.0f MB, window %d, load %s"
             % (nbytes / MB, args.window, load_before))
        print("chart saved to %s" % args.plot)
    return 0
