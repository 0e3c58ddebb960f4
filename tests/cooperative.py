"""Waiting that lets greenlets run once gevent is loaded (test helpers are
used both with and without gevent)."""
import sys
import time


def sleep(seconds: float) -> None:
    """time.sleep, or gevent.sleep once gevent is loaded, so that waiting here
    lets greenlets of the process (e.g. gkcp sessions) run."""
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        gevent.sleep(seconds)
    else:
        time.sleep(seconds)
