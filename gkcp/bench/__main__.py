"""Dispatch ``python -m gkcp.bench <command>`` to the command's module."""
import importlib
import sys
from typing import List, Optional

from . import COMMANDS, DEFAULT_COMMAND
from .gobuild import GoBuildError


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        argv = [DEFAULT_COMMAND] + argv
    if argv[0] not in COMMANDS:
        print("usage: python -m gkcp.bench [{%s}] [options]  (default: %s)"
              % (",".join(sorted(COMMANDS)), DEFAULT_COMMAND))
        return 2
    module = importlib.import_module("." + COMMANDS[argv[0]], __package__)
    try:
        return module.main(argv[1:])
    except GoBuildError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
