"""``python -m gkcp.tunnel client|server``: the same as ``gkcp tunnel``."""
import sys

from .cli import main

sys.exit(main(prog="python -m gkcp.tunnel"))
