"""``python -m gkcp.bench scale --sessions 10000 --interval 10``: many sessions
in one gkcp process.

Two runs, each with a fresh server process (one listener) and client
process(es) holding the other ends (one dialed session, hence one UDP
socket, per session):

- idle: N sessions that exchanged one byte and then sit still.  Measured
  from outside over a window: the server's CPU% of one core (utime + stime
  from /proc/<pid>/stat) and its resident memory per session (VmRSS after
  the sessions settled minus VmRSS with the listener open and no session,
  divided by N -- C state, Python objects and allocator slack together).
- active: the server runs a greenlet per session echoing what it reads (as
  a StreamServer handler would); every client session sends a 64-byte
  message, waits for it to come back, and repeats.  Messages/s = round trips
  completed by all sessions per second, plus both sides' CPU%.

The client processes raise their open-files soft limit to the hard limit;
sessions are spread over enough client processes to stay under it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from .transfer import BenchError, PeerProcess, child_env, load_average

MESSAGE = 64
_TICK = os.sysconf("SC_CLK_TCK")
_FD_SPARE = 64  # descriptors a client needs besides its sessions' sockets


def _line(line: str) -> Optional[dict]:
    kind, _, rest = line.strip().partition(" ")
    return {"kind": kind, "args": rest.split()} if kind else None


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def proc_cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def proc_rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


# ---------------------------------------------------------------- the children

def _options(args: argparse.Namespace, sockbuf: int) -> Dict[str, Any]:
    return dict(nodelay=1, interval=args.interval, resend=2, nc=1, sndwnd=args.window,
                rcvwnd=args.window, mtu=1400, sockbuf=sockbuf, keepalive=args.keepalive)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def run_server(args: argparse.Namespace) -> None:
    import gevent
    import gkcp

    raise_nofile()
    listener = gkcp.listen(("127.0.0.1", 0), backlog=max(128, args.sessions),
                           **_options(args, 4 << 20))
    marks = [0]

    def report_packets() -> None:  # on SIGUSR1: the bench reads the datagram counters around its window
        stats = gkcp.snmp()
        _say("PKTS%d %d %d" % (marks[0], stats["InPkts"], stats["OutPkts"]))
        marks[0] += 1

    gevent.signal_handler(signal.SIGUSR1, report_packets)
    _say("READY %d" % listener.getsockname()[1])
    sessions = []
    while True:
        session, _ = listener.accept()
        sessions.append(session)
        if args.echo:
            gevent.spawn(_echo, session)
        if len(sessions) == args.sessions:
            _say("ACCEPTED %d" % len(sessions))


def _echo(session: Any) -> None:
    buf = bytearray(MESSAGE * 16)
    view = memoryview(buf)
    while True:
        n = session.recv_into(buf)
        if n == 0:
            return
        session.sendall(view[:n])


def run_client(args: argparse.Namespace) -> None:
    import gevent
    from gevent.event import Event
    import gkcp

    limit = raise_nofile()
    if args.sessions + _FD_SPARE > limit:
        raise SystemExit("%d sessions need more than the open-files limit %d" % (args.sessions, limit))
    addr = ("127.0.0.1", args.port)
    # One socket per session; leave its buffers at the OS default.
    sessions = []
    for i in range(args.sessions):
        session = gkcp.dial(addr, **_options(args, 0))
        session.sendall(b"h")
        sessions.append(session)
        if i % 100 == 99:
            gevent.sleep(0)  # let the replies of earlier sessions in
    _say("DIALED %d" % len(sessions))
    if not args.echo:
        gevent.sleep(1e9)  # idle: the bench measures, then kills us
    ready = [0]
    start = Event()
    counts = [0] * len(sessions)
    stop_at = [0.0]

    def ping(i: int, session: Any) -> None:
        hello = session.recv(1)
        if hello != b"h":
            raise RuntimeError("bad hello echo %r" % hello)
        ready[0] += 1
        if ready[0] == len(sessions):
            stop_at[0] = time.monotonic() + args.duration
            start.set()
        start.wait()
        msg = b"m" * MESSAGE
        while time.monotonic() < stop_at[0]:
            session.sendall(msg)
            got = 0
            while got < MESSAGE:
                got += len(session.recv(MESSAGE - got))
            counts[i] += 1

    workers = [gevent.spawn(ping, i, s) for i, s in enumerate(sessions)]
    start.wait()
    t0 = time.monotonic()
    _say("START")
    gevent.joinall(workers, raise_error=True)
    _say("MSGS %d %.6f" % (sum(counts), time.monotonic() - t0))
    os._exit(0)


# ---------------------------------------------------------------- orchestration

class _Cluster:
    """A server and its client processes (killed on exit)."""

    def __init__(self, args: argparse.Namespace, echo: bool) -> None:
        self.args, self.echo = args, echo
        self.env = child_env()
        self.server: Optional[PeerProcess] = None
        self.clients: List[PeerProcess] = []

    def _argv(self, role: str, extra: List[str]) -> List[str]:
        argv = [sys.executable, "-m", "gkcp.bench.scale", role, "--interval", str(self.args.interval),
                "--window", str(self.args.window), "--keepalive", str(self.args.keepalive)] + extra
        return argv + (["--echo"] if self.echo else [])

    def __enter__(self) -> "_Cluster":
        a = self.args
        self.server = PeerProcess(self._argv("server", ["--sessions", str(a.sessions)]), self.env, _line)
        self.port = int(self.server.wait_for("READY", 30)["args"][0])
        time.sleep(0.5)
        self.rss_before = proc_rss_kib(self.server.proc.pid)
        per_client = max(1, raise_nofile() - _FD_SPARE)
        left = a.sessions
        while left > 0:
            n = min(left, per_client)
            self.clients.append(PeerProcess(self._argv("client", ["--sessions", str(n), "--port", str(self.port),
                                                                  "--duration", str(a.active_seconds)]),
                                            self.env, _line))
            left -= n
        t0 = time.monotonic()
        self.server.wait_for("ACCEPTED", a.setup_timeout)
        for c in self.clients:
            c.wait_for("DIALED", a.setup_timeout)
        self.setup_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.clients + ([self.server] if self.server else []):
            p.kill()

    def server_packets(self, mark: int) -> int:
        """Datagrams the server read and wrote so far (its mark-th report)."""
        os.kill(self.server.proc.pid, signal.SIGUSR1)
        counts = self.server.wait_for("PKTS%d" % mark, 30)["args"]
        return int(counts[0]) + int(counts[1])

    def cpu(self) -> Dict[str, float]:
        out = {"server": proc_cpu_seconds(self.server.proc.pid)}
        out["clients"] = sum(proc_cpu_seconds(c.proc.pid) for c in self.clients)
        return out


def measure_idle(args: argparse.Namespace) -> Dict[str, Any]:
    with _Cluster(args, echo=False) as cl:
        time.sleep(args.settle)  # hellos acknowledged, retransmissions over
        rss_after = proc_rss_kib(cl.server.proc.pid)
        p0, c0, t0 = cl.server_packets(0), cl.cpu(), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, elapsed, p1 = cl.cpu(), time.monotonic() - t0, cl.server_packets(1)
    return {
        "server_packets_per_s": (p1 - p0) / elapsed,
        "setup_seconds": cl.setup_seconds,
        "server_cpu_pct": (c1["server"] - c0["server"]) / elapsed * 100,
        "clients_cpu_pct": (c1["clients"] - c0["clients"]) / elapsed * 100,
        "window_seconds": elapsed,
        "server_rss_before_kib": cl.rss_before,
        "server_rss_after_kib": rss_after,
        "rss_per_session_kib": (rss_after - cl.rss_before) / args.sessions,
    }


def measure_active(args: argparse.Namespace) -> Dict[str, Any]:
    with _Cluster(args, echo=True) as cl:
        for c in cl.clients:
            c.wait_for("START", args.setup_timeout)
        c0, t0 = cl.cpu(), time.monotonic()
        total = 0
        seconds = 0.0
        for c in cl.clients:
            msgs = c.wait_for("MSGS", args.active_seconds + 60)["args"]
            total += int(msgs[0])
            seconds = max(seconds, float(msgs[1]))
        c1, elapsed = cl.cpu(), time.monotonic() - t0
    return {
        "setup_seconds": cl.setup_seconds,
        "messages": total,
        "seconds": seconds,
        "messages_per_s": total / seconds,
        "server_cpu_pct": (c1["server"] - c0["server"]) / elapsed * 100,
        "clients_cpu_pct": (c1["clients"] - c0["clients"]) / elapsed * 100,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gkcp.bench scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=10000, help="sessions (default 10000)")
    p.add_argument("--interval", type=int, default=10, help="KCP interval ms (default 10; nodelay 1, resend 2, nc 1)")
    p.add_argument("--window", type=int, default=1024, help="send and receive window (default 1024)")
    p.add_argument("--keepalive", type=float, default=10.0,
                   help="sessions' keepalive seconds (default 10, gkcp's; 0 = off, as kcp-go)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU measurement window (default 10)")
    p.add_argument("--active-seconds", type=float, default=5.0, help="active run length (default 5)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between set-up and measuring (default 3)")
    p.add_argument("--setup-timeout", type=float, default=300.0)
    p.add_argument("--no-active", action="store_true", help="idle run only")
    p.add_argument("--json", metavar="PATH", help="save settings and results as JSON")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sessions < 1:
        raise SystemExit("--sessions must be at least 1")
    load_before = load_average()
    print("gkcp scale: %d sessions, nodelay 1/%d/2/1, window %d, keepalive %s s; %d CPUs, load %s"
          % (args.sessions, args.interval, args.window, args.keepalive or "off", os.cpu_count() or 0, load_before),
          flush=True)
    try:
        idle = measure_idle(args)
        print("idle:   set-up %.1f s; server CPU %.2f%% of one core over %.0f s (clients %.2f%%); "
              "server %.0f datagrams/s in+out; server RSS %d -> %d KiB = %.2f KiB per session"
              % (idle["setup_seconds"], idle["server_cpu_pct"], idle["window_seconds"], idle["clients_cpu_pct"],
                 idle["server_packets_per_s"],
                 idle["server_rss_before_kib"], idle["server_rss_after_kib"], idle["rss_per_session_kib"]),
              flush=True)
        active = None
        if not args.no_active:
            active = measure_active(args)
            print("active: %d sessions x %d-byte echo: %.0f messages/s (%d in %.1f s); "
                  "server CPU %.0f%%, clients %.0f%%"
                  % (args.sessions, MESSAGE, active["messages_per_s"], active["messages"], active["seconds"],
                     active["server_cpu_pct"], active["clients_cpu_pct"]), flush=True)
    except BenchError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    load_after = load_average()
    print("load %s -> %s" % (load_before, load_after))
    if args.json:
        doc = {"settings": {k: v for k, v in vars(args).items() if k != "json"},
               "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
               "idle": idle, "active": active}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("results saved to %s" % args.json)
    return 0


def _child_main(argv: List[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m gkcp.bench.scale")
    p.add_argument("role", choices=("server", "client"))
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--interval", type=int, required=True)
    p.add_argument("--window", type=int, required=True)
    p.add_argument("--keepalive", type=float, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--echo", action="store_true")
    args = p.parse_args(argv)
    (run_server if args.role == "server" else run_client)(args)


if __name__ == "__main__":  # the server and client processes
    _child_main(sys.argv[1:])
