"""gkcp: KCP reliable UDP for gevent, wire-compatible with kcp-go and kcptun.

    import gkcp
    with gkcp.listen(("127.0.0.1", 0)) as listener: ...
    session = gkcp.dial(("127.0.0.1", port), nodelay=1, interval=10, resend=2, nc=1)
"""
# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

import importlib as _importlib

try:
    _importlib.import_module(__name__ + "._core")  # the C core every module below needs
except ImportError as e:
    raise ImportError(
        "gkcp's C core (gkcp._core) cannot be loaded from %s (%s): in a source checkout "
        "build it with `python build_ffi.py`; if gkcp is installed, the current "
        "directory's gkcp/ shadows it (run from another directory)" % (__path__[0], e)) from e

from . import _log  # noqa: E402,F401 -- installs the "gkcp" logger's NullHandler
from .listener import Listener, listen  # noqa: E402
from .options import Options  # noqa: E402
from .session import Session, create_connection, dial  # noqa: E402
from .snmp import snmp  # noqa: E402

__all__ = ["dial", "create_connection", "listen", "Session", "Listener", "Options", "snmp",
           "__version__"]
