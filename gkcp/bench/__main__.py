"""Dispatch ``python -m gkcp.bench <command>`` to the command's module."""
import importlib
import sys

from . import COMMANDS


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m gkcp.bench {%s} [options]" % ",".join(sorted(COMMANDS)))
        return 2
    module = importlib.import_module("." + COMMANDS[argv[0]], __package__)
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
