"""``python -m gkcp tunnel client|server [kcptun flags]`` (and ``gkcp tunnel``)."""
from __future__ import annotations

import sys
from typing import List, Optional

USAGE = """usage: %(prog)s client|server [flags]

  client  TCP on -l/--localaddr, carried over KCP+smux to -r/--remoteaddr
  server  KCP on -l/--listen, each stream a connection to -t/--target

Flags, defaults and -c config.json keys are kcptun 20210922's; see
`%(prog)s client --help` and `%(prog)s server --help`."""


def main(argv: Optional[List[str]] = None, prog: str = "gkcp tunnel") -> int:
    """Run a tunnel end; returns the exit status (argparse exits with 2 on a bad flag)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("client", "server"):
        print(USAGE % {"prog": prog}, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    role, flags = argv[0], argv[1:]
    from .config import parse_args
    config = parse_args(role, flags, prog="%s %s" % (prog, role))
    from .endpoints import TunnelClient, TunnelServer
    from .status import setup_logging
    setup_logging(config.log)
    tunnel = TunnelClient(config) if role == "client" else TunnelServer(config)
    return tunnel.run()


if __name__ == "__main__":
    sys.exit(main())
