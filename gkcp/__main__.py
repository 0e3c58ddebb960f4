"""Command line: ``gkcp <command> [options]``, also ``python -m gkcp <command>``.

A command is one entry of COMMANDS: its name, the module that implements it
and a one-line summary.  The module is imported only when its command runs
and provides ``main(argv: list[str], prog: str) -> int``: it parses argv
itself (argparse with ``prog=prog``, so its usage reads ``gkcp demo ...``;
nested commands such as ``tunnel client`` are its own subparsers) and returns
the exit status.  Adding a command is adding a line to COMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Dict, List, Optional, Tuple

from . import __version__

PROG = "gkcp"

#: command -> (module implementing it, one-line summary for --help)
COMMANDS: Dict[str, Tuple[str, str]] = {
    "demo": ("gkcp.demo", "move a payload over KCP on 127.0.0.1, report MB/s, RTT and SNMP counters"),
    "tunnel": ("gkcp.tunnel.cli", "kcptun-compatible TCP tunnel over KCP + smux: tunnel client|server [kcptun flags]"),
    "run": ("gkcp.run", "run a Python program unmodified, its TCP connections to --route HOST:PORT=URL over KCP"),
}


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join("  %-*s  %s" % (width, name, summary) for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="gkcp %s: KCP reliable UDP for gevent, wire-compatible with kcp-go and kcptun."
        % __version__,
        epilog="commands:\n%s\n\n'%s <command> --help' describes a command's options; "
        "benchmarks: python -m gkcp.bench --help" % (listing, PROG))
    parser.add_argument("--version", action="version", version="gkcp %s" % __version__)
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command",
                        help="one of: %s" % ", ".join(COMMANDS))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # Only the command name is parsed here: everything after it belongs to the
    # command, including its --help.
    head = argv[:1] if argv and not argv[0].startswith("-") else argv
    parser.parse_args(head)  # exits on --help, --version, a missing or unknown command
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(argv[1:], prog="%s %s" % (PROG, name)))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `gkcp demo | head`: the reader left, nothing to report
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
