"""gkcp: KCP reliable UDP for gevent, wire-compatible with kcp-go and kcptun.

    import gkcp
    with gkcp.listen(("127.0.0.1", 0)) as listener: ...
    session = gkcp.dial(("127.0.0.1", port), nodelay=1, interval=10, resend=2, nc=1)
"""
from .listener import Listener, listen
from .options import Options
from .session import Session, create_connection, dial
from .snmp import snmp

__all__ = ["dial", "create_connection", "listen", "Session", "Listener", "Options", "snmp"]
__version__ = "0.1.0"
