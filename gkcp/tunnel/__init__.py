"""kcptun-compatible TCP tunnel over KCP + smux (``python -m gkcp tunnel``)."""
