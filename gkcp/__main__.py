"""Command line: ``python -m gkcp demo [options]``."""
import sys


def main() -> int:
    commands = ("demo",)
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print("usage: python -m gkcp demo [--help]\n"
              "  (benchmarks: python -m gkcp.bench --help)")
        return 2
    from .demo import run
    return run(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
