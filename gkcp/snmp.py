"""Process-wide counters with kcp-go's SNMP names (plus gkcp's own)."""
from __future__ import annotations

from typing import Dict

from ._core import ffi, lib

__all__ = ["snmp"]

_FIELDS = tuple(name for name, _ in ffi.typeof("gk_snmp").fields)


def snmp() -> Dict[str, int]:
    """A snapshot of every counter, by name."""
    stats = lib.gk_stats
    return {name: getattr(stats, name) for name in _FIELDS}
