"""Benchmarks: ``python -m gkcp.bench <command> [options]``.

Each command is a module of this package with ``main(argv) -> int``.
"""

#: subcommand -> module name (relative to this package)
COMMANDS = {
    "bridge": "bridge",
    "crypto": "crypto",
    "fec": "fec",
    "lossy": "lossy",
    "replay": "replay",
    "rtt-load": "rtt_load",
    "scale": "scale",
    "transfer": "transfer",
    "tunnel": "tunnel",
}

#: what ``python -m gkcp.bench`` runs without a command (or with only options)
DEFAULT_COMMAND = "transfer"
