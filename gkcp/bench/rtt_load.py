"""``python -m gkcp.bench rtt-load``: latency and spurious retransmissions
of gkcp and kcp-go 5.6.1 on a loaded machine, side by side in one run.

``--busy`` processes (default: one per CPU) spin on the same cores as the
peers for the whole run.  Every pairing (``--pairs all`` by default:
gkcp<->gkcp, gkcp<->kcp-go, kcp-go<->gkcp, kcp-go<->kcp-go) then runs, in
``--rounds`` rounds that visit the pairings in turn,

- a sink transfer of ``--bytes`` (the dialer sends, the listener hashes):
  MB/s and RetransSegs of both peers per MB moved.  On loopback nothing is
  lost, so every retransmission is spurious: an ACK that came later than
  the RTO (30 ms minimum with nodelay) because a peer did not get the CPU
  in time;
- 64-byte round trips: p50 / p99 in microseconds, and their RetransSegs.

The table shows medians over the rounds (retransmissions: their sum per MB)
and ratios to kcp-go<->kcp-go.  Settings as ``python -m gkcp.bench``:
nodelay 1/10/2/1, windows 1024, MTU 1400, 4 MiB socket buffers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from ..demo import parse_size
from .gobuild import build_go_program
from .transfer import (MB, PAIRS, PROFILES, REFERENCE, BenchError, Runner, _retransmits, add_busy_poll_argument,
                       gkcp_only_flags, load_average, measure_rtt, pair_name)

BUSY_LOOP = "while True: pass"


def start_busy(count: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]


def stop_busy(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def measure_sink(runner: Runner, pair: Any, profile: List[str], nbytes: int) -> Dict[str, float]:
    listener, dialer = runner.run(pair, "sink", "send", nbytes, profile)
    send, sink = dialer.result("SEND"), listener.result("SINK")
    if not send["sent"] == send["peer"] == sink["hex"]:
        raise BenchError("sink digest mismatch for %s" % pair_name(pair))
    return {"mbps": send["mbps"], "retrans": _retransmits(listener, dialer)}


def summarize(sinks: List[Dict[str, float]], rtts: List[Dict[str, float]], nbytes: int) -> Dict[str, Any]:
    megabytes = nbytes / MB * len(sinks)
    return {"sink_mbps": statistics.median(r["mbps"] for r in sinks),
            "sink_retrans": sum(r["retrans"] for r in sinks),
            "sink_retrans_per_mb": sum(r["retrans"] for r in sinks) / megabytes,
            "rtt_p50_us": statistics.median(r["p50_us"] for r in rtts),
            "rtt_p99_us": statistics.median(r["p99_us"] for r in rtts),
            "rtt_retrans": sum(r["retrans"] for r in rtts),
            "sink_rounds": sinks, "rtt_rounds": rtts}


COLUMNS = [("sink_mbps", "sink MB/s", "%.1f"), ("sink_retrans_per_mb", "RetransSegs/MB", "%.2f"),
           ("rtt_p50_us", "RTT p50 us", "%.0f"), ("rtt_p99_us", "RTT p99 us", "%.0f"),
           ("rtt_retrans", "RTT RetransSegs", "%d")]


def format_table(results: Dict[str, Dict[str, Dict[str, Any]]]) -> str:
    ref = pair_name(REFERENCE)
    head = ["profile", "pairing (dial<->listen)"] + [c[1] for c in COLUMNS]
    rows = []
    for profile, by_pair in results.items():
        for name, res in by_pair.items():
            row = [profile, name]
            for key, _, fmt in COLUMNS:
                cell = fmt % res[key]
                base = by_pair.get(ref, {}).get(key)
                if name != ref and base and key != "rtt_retrans":
                    cell += " (%.2fx)" % (res[key] / base)
                row.append(cell)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gkcp.bench rtt-load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=None, help="busy processes spinning meanwhile (default: one per CPU)")
    p.add_argument("--bytes", type=parse_size, default=int(20 * MB), help="bytes per sink transfer (default 20M)")
    p.add_argument("--rtt-count", type=int, default=1000, help="64-byte round trips per round (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per pairing, taken in turn (default 3)")
    p.add_argument("--profiles", default="plain", help="comma-separated subset of: %s (default plain)"
                   % ",".join(PROFILES))
    p.add_argument("--pairs", choices=sorted(PAIRS), default="all")
    add_busy_poll_argument(p)
    p.add_argument("--timeout", type=float, default=180, help="per-process deadline, seconds")
    p.add_argument("--json", metavar="PATH", help="save settings and results as JSON")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    profiles = args.profiles.split(",")
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise SystemExit("unknown profile(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(PROFILES)))
    if args.rounds < 1 or args.rtt_count < 1:
        raise SystemExit("--rounds and --rtt-count must be at least 1")
    busy = (os.cpu_count() or 1) if args.busy is None else args.busy
    pairs = PAIRS[args.pairs]
    common = ["-nodelay=1", "-interval=10", "-resend=2", "-nc=1", "-sndwnd=1024", "-rcvwnd=1024",
              "-mtu=1400", "-sockbuf=%d" % (4 << 20)]
    runner = Runner(build_go_program("peer"), common, args.timeout, gkcp_only_flags(args))
    load_before = load_average()
    print("gkcp bench rtt-load: %d busy process(es) on %d CPUs, %d rounds of a %.0f MB sink and %d round "
          "trips per pairing%s; load %s" % (busy, os.cpu_count() or 0, args.rounds, args.bytes / MB,
                                            args.rtt_count,
                                            ", gkcp busy_poll %g s" % args.busy_poll if args.busy_poll else "",
                                            load_before), flush=True)
    started = time.time()
    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    procs = start_busy(busy)
    try:
        for profile in profiles:
            sinks: Dict[str, List[Dict[str, float]]] = {pair_name(p): [] for p in pairs}
            rtts: Dict[str, List[Dict[str, float]]] = {pair_name(p): [] for p in pairs}
            for round_no in range(args.rounds):
                print("  %s round %d/%d ..." % (profile, round_no + 1, args.rounds), end="", flush=True)
                for pair in pairs:
                    sinks[pair_name(pair)].append(measure_sink(runner, pair, PROFILES[profile], args.bytes))
                    rtts[pair_name(pair)].append(measure_rtt(runner, pair, PROFILES[profile], args.rtt_count))
                print(" done", flush=True)
            results[profile] = {name: summarize(sinks[name], rtts[name], args.bytes) for name in sinks}
    except BenchError as e:
        print("\nerror: %s" % e, file=sys.stderr)
        return 1
    finally:
        stop_busy(procs)
    load_after = load_average()
    print()
    print(format_table(results))
    print("medians over the rounds; RetransSegs/MB: every round's sink retransmissions (both peers) per MB "
          "moved, all spurious on loopback; RTT RetransSegs: the sum over the rounds; ratios to "
          "kcp-go<->kcp-go; load %s -> %s" % (load_before, load_after))
    if args.json:
        doc = {"settings": {"busy": busy, "bytes": args.bytes, "rtt_count": args.rtt_count, "rounds": args.rounds,
                            "profiles": {p: PROFILES[p] for p in profiles}, "common": common,
                            "gkcp_busy_poll": args.busy_poll},
               "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
               "started": started, "seconds": time.time() - started, "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("results saved to %s" % args.json)
    return 0
