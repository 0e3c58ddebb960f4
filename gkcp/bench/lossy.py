"""``python -m gkcp.bench lossy``: KCP against TCP on a link that loses packets.

The link: two network namespaces created for the run (``gkcp-lossy-<pid>-c``
and ``-s``, deleted afterwards, also on error or Ctrl-C) joined by a veth
pair with private addresses that exist only inside them (10.199.14.1/30 and
.2/30).  nftables drops a share of the IPv4 packets each end *receives*
(``numgen random mod 100 < N drop`` at prerouting), so both directions lose
N% of their packets after they crossed the wire -- the sender's interface
counters still see every transmission, as on a real lossy path.  A fixed
delay is added with ``tc qdisc ... netem delay`` when the kernel has netem;
otherwise the link has none (and the output says so): without netem (or
fq, which honours departure times) Linux's other qdiscs only shape a rate.

The workload: a client in one namespace sends a 1 KB request, the server in
the other answers with 1 KB (the request echoed back, so every reply is
checked), 2,000 rounds, one request in flight.  Each end is its own process
(``ip netns exec NS python -m gkcp.bench.lossy server|client``).  Compared:

- TCP: the kernel's default congestion control, TCP_NODELAY both ends;
- KCP: gkcp with the fast settings nodelay 1/10/2/1 and windows 1024 (those
  of the throughput/RTT bench, so the tables compare; a 1 KB request is one
  segment, so no window ever fills here), MTU 1400, no cipher;
- KCP + FEC 10/3: the same with Reed-Solomon 10 data + 3 parity shards.

Figures per run: average, p50, p99 and max latency of a round (send to
complete reply), the loss nftables actually applied, and wire bytes per
useful byte: every byte that crossed the veth in either direction during the
timed rounds (Ethernet frames, i.e. headers, ACKs, retransmissions and
parity included; read from the client's veth tx + rx counters, which count
what the peer sent before the receiver's drop) divided by the request and
reply bytes delivered.  Each run is capped (``--run-timeout``); a run that
did not finish in time is reported as such, with the rounds it completed.

Needs root (namespaces, nftables) and iproute2 + nftables.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, Dict, List, Optional, Sequence

from .transfer import BenchError, PeerProcess, child_env
from .wire import parse_line, percentile

LOSS_RATES = (0, 1, 5, 10, 20)
MESSAGE = 1024
CLIENT_ADDR, SERVER_ADDR, PREFIX = "10.199.14.1", "10.199.14.2", 30
CLIENT_DEV, SERVER_DEV = "lossy-c", "lossy-s"
FIRST_PORT = 29000
NFT_TABLE = "gkcp_lossy"
FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024, mtu=1400)
#: transport name -> gkcp options on top of FAST (None: TCP)
TRANSPORTS: Dict[str, Optional[Dict[str, int]]] = {
    "tcp": None,
    "kcp": {},
    "kcp+fec10/3": {"data_shards": 10, "parity_shards": 3},
}
_SETUP_TIMEOUT = 30.0  # seconds for one ip/nft/tc command or a server to come up


# ---------------------------------------------------------------- the two ends

def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _connect(transport: str, host: str, port: int, timeout: float) -> Any:
    options = TRANSPORTS[transport]
    if options is None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    import gkcp
    return gkcp.dial((host, port), **FAST, **options)


def _listen(transport: str, host: str, port: int) -> Any:
    options = TRANSPORTS[transport]
    if options is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1)
        return sock
    import gkcp
    return gkcp.listen((host, port), **FAST, **options)


def _recv_exactly(conn: Any, n: int) -> bytes:
    """n bytes from a TCP socket or a gkcp session (both have recv and
    raise socket.timeout past the timeout set on them)."""
    data = b""
    while len(data) < n:
        piece = conn.recv(n - len(data))
        if not piece:
            raise EOFError("the peer closed after %d of %d bytes" % (len(data), n))
        data += piece
    return data


def _bounded(conn: Any, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("deadline reached")
    conn.settimeout(left)


def serve(transport: str, host: str, port: int, seconds: float) -> None:
    """Answer every MESSAGE-byte request with itself until the client goes
    away or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    listener = _listen(transport, host, port)
    _say("READY %s:%d" % (host, port))
    _bounded(listener, deadline)
    conn, _ = listener.accept()
    if TRANSPORTS[transport] is None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        _bounded(conn, deadline)
        try:
            request = _recv_exactly(conn, MESSAGE)
        except EOFError:
            return
        conn.sendall(request)


def _veth_bytes(dev: str) -> int:
    """Bytes sent plus received by this namespace's end of the veth; the
    receive side counts what the peer transmitted, before our nftables drop."""
    stats = Path("/sys/class/net") / dev / "statistics"
    return sum(int((stats / name).read_text()) for name in ("tx_bytes", "rx_bytes"))


def request_rounds(transport: str, host: str, port: int, rounds: int, seconds: float,
                   dev: str) -> Dict[str, Any]:
    """The client: ``rounds`` request/reply exchanges, one in flight, each
    reply checked; stops early (finished False) when ``seconds`` run out."""
    deadline = time.monotonic() + seconds
    try:
        conn = _connect(transport, host, port, seconds)
    except socket.timeout:  # TCP's SYN lost again and again
        return {"rounds": rounds, "answered": 0, "outcome": "timeout", "seconds": seconds,
                "wire_bytes": 0}
    samples: List[float] = []
    outcome = "finished"
    wire_before = _veth_bytes(dev)
    began = time.monotonic()
    try:
        for _ in range(rounds):
            request = os.urandom(MESSAGE)
            _bounded(conn, deadline)
            t0 = time.perf_counter()
            conn.sendall(request)
            reply = _recv_exactly(conn, MESSAGE)
            samples.append((time.perf_counter() - t0) * 1e3)
            if reply != request:
                raise BenchError("round %d: the reply differs from the request" % len(samples))
    except socket.timeout:
        outcome = "timeout"
    elapsed = time.monotonic() - began
    wire = _veth_bytes(dev) - wire_before
    conn.close()
    result: Dict[str, Any] = {"rounds": rounds, "answered": len(samples), "outcome": outcome,
                              "seconds": elapsed, "wire_bytes": wire}
    if samples:
        ordered = sorted(samples)
        result.update(avg_ms=statistics.fmean(samples), p50_ms=percentile(ordered, 50),
                      p99_ms=percentile(ordered, 99), max_ms=ordered[-1])
    return result


def child_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gkcp.bench.lossy",
                                     description="one end of the lossy-link bench")
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), required=True)
    parser.add_argument("--addr", required=True, help="server host:port")
    parser.add_argument("--seconds", type=float, required=True, help="give up after this long")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--dev", default=CLIENT_DEV, help="client: the veth whose counters to read")
    args = parser.parse_args(argv)
    host, _, port = args.addr.rpartition(":")
    try:
        if args.role == "server":
            serve(args.transport, host, int(port), args.seconds)
        else:
            result = request_rounds(args.transport, host, int(port), args.rounds, args.seconds,
                                    args.dev)
            _say("RESULT " + json.dumps(result))
    except Exception as e:  # reported to the parent, which shows the run as failed
        _say("ERROR %s: %s" % (type(e).__name__, e))
        return 1
    return 0


# ---------------------------------------------------------------- the link

def _run(argv: Sequence[str], stdin: Optional[str] = None) -> str:
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=_SETUP_TIMEOUT)
    except FileNotFoundError as e:
        raise BenchError("%s not found (install iproute2 and nftables)" % argv[0]) from e
    except subprocess.TimeoutExpired as e:
        raise BenchError("%s took over %.0f s" % (" ".join(argv), _SETUP_TIMEOUT)) from e
    if proc.returncode != 0:
        raise BenchError("%s failed: %s" % (" ".join(argv), proc.stderr.strip()))
    return proc.stdout


class LossyLink:
    """Two namespaces joined by a veth pair; ``set_loss(N)`` makes each end
    drop N% of the IPv4 packets it receives.  A context manager: leaving it
    deletes both namespaces (and with them the veth pair)."""

    def __init__(self, delay_ms: float) -> None:
        tag = "gkcp-lossy-%d" % os.getpid()
        self.client_ns, self.server_ns = tag + "-c", tag + "-s"
        self.requested_delay_ms = delay_ms
        self.delay_ms = 0.0
        self.delay_note = "none requested"

    def _ends(self):
        return ((self.client_ns, CLIENT_DEV, CLIENT_ADDR), (self.server_ns, SERVER_DEV, SERVER_ADDR))

    def __enter__(self) -> "LossyLink":
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _create(self) -> None:
        _run(["ip", "netns", "add", self.client_ns])
        _run(["ip", "netns", "add", self.server_ns])
        _run(["ip", "-n", self.client_ns, "link", "add", CLIENT_DEV, "type", "veth",
              "peer", "name", SERVER_DEV, "netns", self.server_ns])
        for ns, dev, addr in self._ends():
            # No IPv6 link-local address, hence no neighbour discovery chatter in the counters.
            _run(["ip", "-n", ns, "link", "set", dev, "addrgenmode", "none"])
            _run(["ip", "-n", ns, "addr", "add", "%s/%d" % (addr, PREFIX), "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=(
                "table ip %s {\n chain loss {\n  type filter hook prerouting priority -300;\n }\n}\n"
                % NFT_TABLE))
        if self.requested_delay_ms > 0:
            self._add_delay()

    def _add_delay(self) -> None:
        try:
            for ns, dev, _ in self._ends():
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay",
                      "%gms" % self.requested_delay_ms])
        except BenchError as e:
            self.delay_note = ("none: `tc qdisc add ... netem delay` failed (%s); this kernel "
                               "cannot add a fixed delay without netem" % e)
            for ns, dev, _ in self._ends():
                subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"],
                               capture_output=True, timeout=_SETUP_TIMEOUT)
            return
        self.delay_ms = self.requested_delay_ms
        self.delay_note = "%g ms each way (tc netem)" % self.delay_ms

    def set_loss(self, percent: int) -> None:
        """Replace each end's drop rule (which also zeroes its counter)."""
        for ns, dev, _ in self._ends():
            rule = ("add rule ip %s loss iifname \"%s\" numgen random mod 100 < %d counter drop\n"
                    % (NFT_TABLE, dev, percent)) if percent else ""
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                 stdin="flush chain ip %s loss\n%s" % (NFT_TABLE, rule))

    def received_and_dropped(self) -> List[int]:
        """[packets received by both ends' veth, packets their rules dropped]."""
        received = dropped = 0
        for ns, dev, _ in self._ends():
            link = json.loads(_run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev]))
            received += link[0]["stats64"]["rx"]["packets"]
            rules = json.loads(_run(["ip", "netns", "exec", ns, "nft", "-j", "list", "chain",
                                     "ip", NFT_TABLE, "loss"]))["nftables"]
            for item in rules:
                for expr in item.get("rule", {}).get("expr", []):
                    dropped += expr.get("counter", {}).get("packets", 0)
        return [received, dropped]

    def tcp_congestion_control(self) -> str:
        return _run(["ip", "netns", "exec", self.client_ns, "cat",
                     "/proc/sys/net/ipv4/tcp_congestion_control"]).strip()

    def exec_argv(self, ns: str, argv: Sequence[str]) -> List[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def close(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=_SETUP_TIMEOUT)


# ---------------------------------------------------------------- one run

def _parse(line: str) -> Optional[dict]:
    kind, _, rest = line.strip().partition(" ")
    if kind == "RESULT":
        return {"kind": kind, **json.loads(rest)}
    return parse_line(line)


def run_once(link: LossyLink, transport: str, loss: int, rounds: int, port: int,
             timeout: float) -> Dict[str, Any]:
    """One transport at one loss rate: server and client processes in their
    namespaces; the client gives up after ``timeout`` seconds."""
    env = child_env()
    me = [sys.executable, "-m", "gkcp.bench.lossy"]
    addr = "--addr=%s:%d" % (SERVER_ADDR, port)
    before = link.received_and_dropped()
    server = PeerProcess(link.exec_argv(link.server_ns, me + [
        "server", "--transport=" + transport, addr, "--seconds=%g" % (timeout + _SETUP_TIMEOUT)]),
        env, parse=_parse)
    client = None
    try:
        server.wait_for("READY", _SETUP_TIMEOUT)
        client = PeerProcess(link.exec_argv(link.client_ns, me + [
            "client", "--transport=" + transport, addr, "--rounds=%d" % rounds,
            "--seconds=%g" % timeout, "--dev=" + CLIENT_DEV]), env, parse=_parse)
        result = dict(client.finish(timeout + _SETUP_TIMEOUT).result("RESULT"))
    finally:
        server.kill()
        if client is not None:
            client.kill()
    del result["kind"]
    received, dropped = (b - a for a, b in zip(before, link.received_and_dropped()))
    useful = result["answered"] * 2 * MESSAGE
    result.update(transport=transport, loss_pct=loss,
                  applied_loss_pct=100.0 * dropped / received if received else 0.0,
                  wire_per_useful=result["wire_bytes"] / useful if useful else None)
    return result


# ---------------------------------------------------------------- the table

COLUMNS = ("loss %", "applied %", "transport", "answered", "avg ms", "p50 ms", "p99 ms",
           "max ms", "wire B/useful B")


def _row(r: Dict[str, Any]) -> List[str]:
    if "error" in r:
        return ["%d" % r["loss_pct"], "-", r["transport"], "ERROR: " + r["error"].splitlines()[0]]
    answered = "%d/%d" % (r["answered"], r["rounds"])
    if r["outcome"] != "finished":
        answered += " (did not finish in %.0f s)" % r["seconds"]
    figures = [("%.3f" % r[k]) if k in r else "-" for k in ("avg_ms", "p50_ms", "p99_ms", "max_ms")]
    ratio = "%.2f" % r["wire_per_useful"] if r["wire_per_useful"] is not None else "-"
    return ["%d" % r["loss_pct"], "%.1f" % r["applied_loss_pct"], r["transport"], answered,
            *figures, ratio]


def format_table(runs: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in runs]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt("signal %d" % signum)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gkcp.bench lossy",
                                description="request/response latency, TCP vs gkcp, on a lossy "
                                            "veth link between two network namespaces (root)")
    p.add_argument("--loss", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(LOSS_RATES), help="loss rates in %%, comma separated (default "
                   "%s)" % ",".join(map(str, LOSS_RATES)))
    p.add_argument("--rounds", type=int, default=None, help="request/reply rounds per run "
                   "(default 2000; 200 with --quick)")
    p.add_argument("--quick", action="store_true", help="200 rounds per run")
    p.add_argument("--transports", type=lambda s: s.split(","), default=list(TRANSPORTS),
                   help="comma separated subset of %s" % ",".join(TRANSPORTS))
    p.add_argument("--delay", type=float, default=10.0, metavar="MS",
                   help="fixed delay each way with tc netem, where the kernel has it (default 10)")
    p.add_argument("--run-timeout", type=float, default=900.0, metavar="S",
                   help="a run still going after S seconds is reported as not finished")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    rounds = args.rounds or (200 if args.quick else 2000)
    for name in args.transports:
        if name not in TRANSPORTS:
            raise SystemExit("--transports: unknown %r (choose from %s)" % (name, ", ".join(TRANSPORTS)))
    if any(not 0 <= x <= 100 for x in args.loss):
        raise SystemExit("--loss: rates must be 0..100")
    if rounds < 1 or args.run_timeout <= 0:
        raise SystemExit("--rounds and --run-timeout must be positive")
    previous = {s: signal.signal(s, _interrupt)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    runs: List[Dict[str, Any]] = []
    try:
        with LossyLink(args.delay) as link:
            settings = {"message_bytes": MESSAGE, "rounds": rounds, "kcp": FAST,
                        "fec": TRANSPORTS["kcp+fec10/3"], "run_timeout_s": args.run_timeout,
                        "kernel": os.uname().release,
                        "tcp_congestion_control": link.tcp_congestion_control(),
                        "delay_ms": link.delay_ms, "delay": link.delay_note}
            print("lossy link: veth %s/%d <-> %s/%d in namespaces %s, %s; added delay: %s"
                  % (CLIENT_ADDR, PREFIX, SERVER_ADDR, PREFIX, link.client_ns, link.server_ns,
                     link.delay_note))
            print("%d rounds of %d B request -> %d B reply; TCP: %s, TCP_NODELAY; KCP: nodelay "
                  "1/10/2/1, windows 1024, MTU 1400" % (rounds, MESSAGE, MESSAGE,
                                                        settings["tcp_congestion_control"]),
                  flush=True)
            for loss in args.loss:
                link.set_loss(loss)
                for transport in args.transports:
                    try:
                        r = run_once(link, transport, loss, rounds, FIRST_PORT + len(runs),
                                     args.run_timeout)
                    except BenchError as e:
                        r = {"transport": transport, "loss_pct": loss, "error": str(e)}
                    runs.append(r)
                    print("  " + " | ".join(_row(r)), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("lossy: interrupted (namespaces deleted)", file=sys.stderr)
        return 130
    except BenchError as e:  # the link could not be set up
        print("lossy: %s" % e, file=sys.stderr)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(format_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(child_main())
