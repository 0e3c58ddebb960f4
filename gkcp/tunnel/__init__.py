"""kcptun-compatible TCP tunnel over KCP + smux: ``gkcp tunnel client|server``.

    compress.py    kcptun's snappy framing over a KCP session (golang/snappy's format)
    config.py      kcptun 20210922's flags, defaults, -c JSON keys and modes
    endpoints.py   TunnelClient / TunnelServer: sessions, round robin, autoexpire, run loop
    relay.py       TCP <-> smux stream copy with half-close
    status.py      logging as kcptun, the terminal status line, --snmplog
    cli.py         the command line entry point
"""
