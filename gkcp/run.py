"""``gkcp run``: an unmodified Python program with its TCP connections to
routed addresses carried over KCP.

    gkcp run --route 10.0.0.5:6379=kcptun://vps:29900?key=secret [--route ...] [--] script.py [args]
    gkcp run --route HOST:PORT=URL -m module [args]

gevent's ``monkey.patch_all()`` and :func:`gkcp.monkey.patch` with the
routes are applied first; then the program runs as ``python script.py`` or
``python -m module`` would run it: ``sys.argv``, ``__main__`` and
``sys.path[0]`` set the same way, its exit status (``sys.exit``) kept, an
uncaught exception printed as the interpreter prints it (without gkcp's
frames) with status 1.  Route URLs: see :mod:`gkcp.route`.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Tuple

USAGE = """usage: %(prog)s [--route HOST:PORT=URL]... [--] script.py [args...]
       %(prog)s [--route HOST:PORT=URL]... -m module [args...]

Run a Python program (unmodified) with gevent's monkey patching and gkcp's
routing: every TCP connection it opens to a routed HOST:PORT travels over
KCP, the program holding a real socket; other addresses stay plain TCP.

  --route HOST:PORT=URL   HOST an address or a name (names need not resolve);
                          URL kcptun://SERVER:PORT?crypt=aes&key=...&mode=fast3&...
                          (smux streams to a kcptun server, which forwards to its -t
                          target) or kcp://SERVER:PORT?nodelay=1&... (a KCP session
                          per connection to a server speaking the protocol itself)
  -m module               run a module as `python -m module`
  -h, --help              show this help
"""

#: Exit status of a usage error (as argparse and python)
USAGE_ERROR = 2
#: seconds the program's last writes to routed sockets may take to reach their servers after it ended
DRAIN_TIMEOUT = 10.0


class _UsageError(Exception):
    pass


def parse_command(argv: List[str]) -> Tuple[List[str], Optional[str], List[str]]:
    """(route texts, module or None, program argv: script or module first)."""
    routes: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "--route":
            if i + 1 == len(argv):
                raise _UsageError("--route needs HOST:PORT=URL")
            routes.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--route="):
            routes.append(arg[len("--route="):])
            i += 1
            continue
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if not module:
                raise _UsageError("-m needs a module name")
            rest = argv[i + 1:] if arg[2:] else argv[i + 2:]
            return routes, module, [module] + rest
        if arg.startswith("-") and arg != "-":
            raise _UsageError("unknown option %r" % arg)
        break
    rest = argv[i:]
    if not rest:
        raise _UsageError("no program given: a script path or -m module")
    return routes, None, rest


def _route_table(texts: List[str]) -> Dict[Tuple[str, int], Any]:
    from .route import parse_route_arg
    table: Dict[Tuple[str, int], Any] = {}
    for text in texts:
        key, target = parse_route_arg(text)
        if key in table:
            raise ValueError("--route %s:%d given twice" % key)
        table[key] = target
    return table


def _print_program_error(exc: BaseException) -> None:
    """The traceback the interpreter would print: gkcp's and runpy's frames cut off."""
    import runpy
    skip = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename in skip
                              or os.path.abspath(tb.tb_frame.f_code.co_filename) in skip):
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def main(argv: Optional[List[str]] = None, prog: str = "gkcp run") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE % {"prog": prog}, end="")
        return 0
    try:
        route_texts, module, program_argv = parse_command(argv)
        routes = _route_table(route_texts)
    except (_UsageError, ValueError) as exc:
        print(USAGE % {"prog": prog}, end="", file=sys.stderr)
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        return USAGE_ERROR

    from gevent import monkey
    monkey.patch_all()
    from . import _bridge, monkey as gkcp_monkey
    gkcp_monkey.patch(routes)

    import runpy
    sys.argv = program_argv
    if module is None:
        script = program_argv[0]
        if not os.path.exists(script):
            print("%s: can't open file %r: [Errno 2] No such file or directory" % (sys.executable, script),
                  file=sys.stderr)
            return USAGE_ERROR
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:
        sys.path[0] = os.getcwd()
        import importlib.util
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            print("%s: No module named %s" % (sys.executable, module), file=sys.stderr)
            return 1
    try:
        if module is None:
            runpy.run_path(program_argv[0], run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        _print_program_error(exc)
        return 1
    finally:
        sys.stdout.flush()
        # What the program wrote to routed sockets is still on its way: let it arrive, as TCP would
        _bridge.drain(DRAIN_TIMEOUT)
    return 0
