"""What a running tunnel end tells: logging as kcptun does (Go's log format,
``--log`` file, ``--quiet``), a one-line status on a terminal, and
kcptun's ``--snmplog`` CSV file."""
from __future__ import annotations

import csv
import logging
import os
import sys
import time
from typing import Any, Callable, Iterable, List, Optional, TextIO

import gevent

from ..snmp import snmp
from .relay import Traffic

__all__ = ["setup_logging", "StatusLine", "snmp_logger", "go_time_format"]

log = logging.getLogger("gkcp.tunnel")

#: kcp-go's DefaultSnmp.Header() order (the columns kcptun's --snmplog writes)
KCP_GO_SNMP_FIELDS = ("BytesSent", "BytesReceived", "MaxConn", "ActiveOpens", "PassiveOpens", "CurrEstab",
                      "InErrs", "InCsumErrors", "KCPInErrors", "InPkts", "OutPkts", "InSegs", "OutSegs",
                      "InBytes", "OutBytes", "RetransSegs", "FastRetransSegs", "EarlyRetransSegs", "LostSegs",
                      "RepeatSegs", "FECRecovered", "FECErrs", "FECParityShards", "FECShortShards")


class _LineAwareHandler(logging.StreamHandler):
    """A stream handler that first clears a status line drawn on the same
    terminal, so records and the status line never garble each other."""

    status: Optional["StatusLine"] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is not None:
            self.status.clear()
        super().emit(record)


def setup_logging(log_file: str) -> logging.Handler:
    """Records go to stderr, or appended to log_file (kcptun's --log), in
    Go's log format (``2006/01/02 15:04:05 message``)."""
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = _LineAwareHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y/%m/%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def _rate(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return "%.1f %s/s" % (nbytes, unit)
        nbytes /= 1000.0
    raise AssertionError  # unreachable


class StatusLine:
    """Redrawn once a second on a terminal: throughput each way, streams
    open, KCP sessions, their mean smoothed RTT and the share of segments
    retransmitted since the last redraw."""

    def __init__(self, traffic: Traffic, sessions: Callable[[], Iterable[Any]], out: TextIO) -> None:
        self.traffic = traffic
        self.sessions = sessions
        self.out = out
        self._drawn = False

    @staticmethod
    def wanted(out: TextIO) -> bool:
        """Only where a person watches: a terminal (not a pipe, file or dumb terminal)."""
        try:
            return out.isatty() and os.environ.get("TERM") != "dumb"
        except (AttributeError, ValueError):
            return False

    def clear(self) -> None:
        if self._drawn:
            self.out.write("\r\033[K")
            self.out.flush()
            self._drawn = False

    def text(self, up: float, down: float, retrans: float) -> str:
        rtts: List[int] = []
        count = 0
        for session in self.sessions():
            count += 1
            try:
                rtts.append(session.srtt)
            except OSError:  # closed meanwhile
                pass
        rtt = "%d ms" % (sum(rtts) / len(rtts)) if rtts else "-"
        return ("up %s  down %s  streams %d  sessions %d  rtt %s  retrans %.2f%%"
                % (_rate(up), _rate(down), self.traffic.streams, count, rtt, retrans))

    def run(self, period: float = 1.0) -> None:
        traffic = self.traffic
        last = time.monotonic()
        last_up, last_down = traffic.up, traffic.down
        counters = snmp()
        last_out, last_retrans = counters["OutSegs"], counters["RetransSegs"]
        while True:
            gevent.sleep(period)
            now = time.monotonic()
            elapsed = max(now - last, 1e-6)
            counters = snmp()
            out_segs = counters["OutSegs"] - last_out
            retrans = counters["RetransSegs"] - last_retrans
            line = self.text((traffic.up - last_up) / elapsed, (traffic.down - last_down) / elapsed,
                             100.0 * retrans / out_segs if out_segs else 0.0)
            self.out.write("\r\033[K" + line)
            self.out.flush()
            self._drawn = True
            last, last_up, last_down = now, traffic.up, traffic.down
            last_out, last_retrans = counters["OutSegs"], counters["RetransSegs"]


# Go reference-time layout elements -> strftime, longest first (Go matches greedily).
_GO_LAYOUT = (("2006", "%Y"), ("January", "%B"), ("Monday", "%A"), ("Jan", "%b"), ("Mon", "%a"),
              ("MST", "%Z"), ("-0700", "%z"), ("01", "%m"), ("02", "%d"), ("15", "%H"), ("03", "%I"),
              ("04", "%M"), ("05", "%S"), ("06", "%y"), ("PM", "%p"))


def go_time_format(layout: str, when: Optional[float] = None) -> str:
    """Go's time.Format for the layout elements a log file name uses
    (2006 01 02 15 04 05, Jan, Mon, ...); other text stays as it is."""
    out = []
    i = 0
    while i < len(layout):
        for element, directive in _GO_LAYOUT:
            if layout.startswith(element, i):
                out.append(directive)
                i += len(element)
                break
        else:
            out.append(layout[i].replace("%", "%%"))
            i += 1
    return time.strftime("".join(out), time.localtime(when))


def snmp_logger(path: str, period: int) -> None:
    """kcptun's --snmplog: every period seconds append one CSV row (Unix
    time, then kcp-go's counters; a header row first in a new file) to the
    file named by formatting the file part of path as a Go time layout."""
    if not path or period <= 0:
        return
    folder, name = os.path.split(path)
    while True:
        gevent.sleep(period)
        target = os.path.join(folder, go_time_format(name))
        try:
            with open(target, "a", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if f.tell() == 0:
                    writer.writerow(("Unix",) + KCP_GO_SNMP_FIELDS)
                counters = snmp()
                writer.writerow([int(time.time())] + [counters.get(k, 0) for k in KCP_GO_SNMP_FIELDS])
        except OSError as exc:
            log.info("snmplog: %s", exc)  # kcptun logs the error and stops logging
            return
