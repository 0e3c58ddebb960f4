"""kcptun 20210922's command line and JSON configuration.

Flags, defaults and JSON keys are kcptun's (client/main.go, server/main.go,
*/config.go), spelled as Go's flag package takes them: ``-key x``,
``--key x``, ``-key=x`` and ``--key=x`` all work, short aliases too
(``-l``, ``--l``), and bool flags take ``-nocomp`` or ``-nocomp=false``.
``-c file.json`` is applied over the flags, key by key, as kcptun does; then
``--mode`` sets the nodelay parameters (``manual`` keeps the hidden
``--nodelay/--interval/--resend/--nc`` flags).

Where gkcp is stricter than kcptun (a clear error, exit status 2, instead of
a silent fallback or a crash): an unknown ``--mode`` or ``--crypt`` (kcptun
runs "manual" resp. AES-256), values outside what kcp-go/smux accept
(kcptun ignores a bad MTU, divides by zero at ``--conn 0``, exits on a bad
smux setting only when the first session opens), unknown JSON keys and
values of the wrong JSON type, and ``--tcp`` (raw-socket TCP emulation, not
implemented).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..crypt import CIPHERS

__all__ = ["TunnelConfig", "MODES", "parse_args", "make_config", "build_parser", "ConfigError"]

#: --mode -> (nodelay, interval, resend, nc); "manual" uses the flags as given.
MODES = {
    "fast3": (1, 10, 2, 1),
    "fast2": (1, 20, 2, 1),
    "fast": (0, 30, 2, 1),
    "normal": (0, 40, 2, 1),
    "manual": None,
}

#: smux's fixed keepalive timeout; kcptun only sets the interval.
SMUX_KEEPALIVE_TIMEOUT = 30


class ConfigError(ValueError):
    """A flag or JSON value kcptun (or gkcp) cannot run with."""


@dataclasses.dataclass(frozen=True)
class _Flag:
    name: str                 # kcptun's flag name, also its JSON key (except "c")
    kind: type                # str, int or bool
    client: Any               # default for the client, _ABSENT: not a client flag
    server: Any               # default for the server, _ABSENT: not a server flag
    help: Optional[str]       # None: hidden, as in kcptun
    alias: Optional[str] = None
    env: Optional[str] = None


_ABSENT = object()

_FLAGS: Tuple[_Flag, ...] = (
    _Flag("localaddr", str, ":12948", _ABSENT, "local listen address", alias="l"),
    _Flag("remoteaddr", str, "vps:29900", _ABSENT, "kcp server address", alias="r"),
    _Flag("listen", str, _ABSENT, ":29900", "kcp server listen address", alias="l"),
    _Flag("target", str, _ABSENT, "127.0.0.1:12948", "target server address, or path/to/unix_socket",
          alias="t"),
    _Flag("key", str, "it's a secrect", "it's a secrect", "pre-shared secret between client and server",
          env="KCPTUN_KEY"),
    _Flag("crypt", str, "aes", "aes", ", ".join(c for c in CIPHERS)),
    _Flag("mode", str, "fast", "fast", "profiles: fast3, fast2, fast, normal, manual"),
    _Flag("conn", int, 1, _ABSENT, "set num of UDP connections to server"),
    _Flag("autoexpire", int, 0, _ABSENT,
          "set auto expiration time(in seconds) for a single UDP connection, 0 to disable"),
    _Flag("scavengettl", int, 600, _ABSENT, "set how long an expired connection can live (in seconds)"),
    _Flag("mtu", int, 1350, 1350, "set maximum transmission unit for UDP packets"),
    _Flag("sndwnd", int, 128, 1024, "set send window size(num of packets)"),
    _Flag("rcvwnd", int, 512, 1024, "set receive window size(num of packets)"),
    _Flag("datashard", int, 10, 10, "set reed-solomon erasure coding - datashard", alias="ds"),
    _Flag("parityshard", int, 3, 3, "set reed-solomon erasure coding - parityshard", alias="ps"),
    _Flag("dscp", int, 0, 0, "set DSCP(6bit)"),
    _Flag("nocomp", bool, False, False, "disable compression"),
    _Flag("acknodelay", bool, False, False, None),
    _Flag("nodelay", int, 0, 0, None),
    _Flag("interval", int, 50, 50, None),
    _Flag("resend", int, 0, 0, None),
    _Flag("nc", int, 0, 0, None),
    _Flag("sockbuf", int, 4194304, 4194304, "per-socket buffer in bytes"),
    _Flag("smuxver", int, 1, 1, "specify smux version, available 1,2"),
    _Flag("smuxbuf", int, 4194304, 4194304, "the overall de-mux buffer in bytes"),
    _Flag("streambuf", int, 2097152, 2097152, "per stream receive buffer in bytes, smux v2+"),
    _Flag("keepalive", int, 10, 10, "seconds between heartbeats"),
    _Flag("snmplog", str, "", "",
          "collect snmp to file, aware of timeformat in golang, like: ./snmp-20060102.log"),
    _Flag("snmpperiod", int, 60, 60, "snmp collect period, in seconds"),
    _Flag("pprof", bool, _ABSENT, False, "not supported (kcptun's Go profiler): refused"),
    _Flag("log", str, "", "", "specify a log file to output, default goes to stderr"),
    _Flag("quiet", bool, False, False, "to suppress the 'stream open/close' messages"),
    _Flag("tcp", bool, False, False, "to emulate a TCP connection(linux): not supported, refused"),
)

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclasses.dataclass
class TunnelConfig:
    """Everything one ``tunnel client`` or ``tunnel server`` runs with;
    field names are kcptun's JSON keys.  ``nodelay/interval/resend/nc`` are
    already resolved from ``mode``."""

    role: str
    key: str
    crypt: str
    mode: str
    mtu: int
    sndwnd: int
    rcvwnd: int
    datashard: int
    parityshard: int
    dscp: int
    nocomp: bool
    acknodelay: bool
    nodelay: int
    interval: int
    resend: int
    nc: int
    sockbuf: int
    smuxver: int
    smuxbuf: int
    streambuf: int
    keepalive: int
    snmplog: str
    snmpperiod: int
    log: str
    quiet: bool
    tcp: bool
    localaddr: str = ""
    remoteaddr: str = ""
    conn: int = 1
    autoexpire: int = 0
    scavengettl: int = 600
    listen: str = ""
    target: str = ""
    pprof: bool = False

    def kcp_options(self) -> Dict[str, Any]:
        """gkcp session/listener options as kcptun sets its sessions up:
        stream mode, no write delay, the mode's nodelay parameters, windows,
        MTU, ack no-delay, FEC shards, socket buffers.  The cipher is
        :meth:`block`, made once and shared by every session."""
        return dict(stream=True, write_delay=False, nodelay=self.nodelay, interval=self.interval,
                    resend=self.resend, nc=self.nc, sndwnd=self.sndwnd, rcvwnd=self.rcvwnd, mtu=self.mtu,
                    ack_nodelay=self.acknodelay, data_shards=self.datashard, parity_shards=self.parityshard,
                    sockbuf=self.sockbuf)

    def block(self) -> Any:
        """kcptun's BlockCrypt for --crypt/--key (PBKDF2 key, kcptun's key cut)."""
        from ..crypt import kcptun_crypt
        return kcptun_crypt(self.crypt, self.key)

    def smux_config(self) -> Any:
        """smux settings as kcptun derives them (DefaultConfig plus --smuxver,
        --smuxbuf, --streambuf, --keepalive)."""
        from .. import smux
        return smux.Config(version=self.smuxver, max_receive_buffer=self.smuxbuf,
                           max_stream_buffer=self.streambuf, keepalive_interval=float(self.keepalive),
                           keepalive_timeout=float(SMUX_KEEPALIVE_TIMEOUT))


def _flags(role: str) -> List[_Flag]:
    return [f for f in _FLAGS if (f.client if role == "client" else f.server) is not _ABSENT]


def _default(flag: _Flag, role: str) -> Any:
    value = flag.client if role == "client" else flag.server
    if flag.env and os.environ.get(flag.env):
        value = os.environ[flag.env]
    return value


def build_parser(role: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argparse parser of ``tunnel client`` or ``tunnel server``."""
    if role not in ("client", "server"):
        raise ValueError("role must be 'client' or 'server', got %r" % (role,))
    description = ("kcptun-compatible client: TCP on --localaddr, each connection an smux stream over KCP to "
                   "--remoteaddr" if role == "client" else
                   "kcptun-compatible server: KCP on --listen, each smux stream a TCP connection to --target")
    parser = argparse.ArgumentParser(prog=prog or "gkcp tunnel " + role, description=description,
                                     allow_abbrev=False, add_help=False)
    for flag in _flags(role):
        names = ["-" + flag.name, "--" + flag.name]
        if flag.alias:
            names += ["-" + flag.alias, "--" + flag.alias]
        default = _default(flag, role)
        # the built-in default, never a key taken from the environment
        shown = (flag.client if role == "client" else flag.server)
        help_text = (argparse.SUPPRESS if flag.help is None else "%s (default: %r%s)" % (
            flag.help, shown, ", or $%s" % flag.env if flag.env else ""))
        if flag.kind is bool:
            parser.add_argument(*names, dest=flag.name, action="store_true", default=default, help=help_text)
            # -flag=false, rewritten by _go_bools below
            parser.add_argument("--%s=false" % flag.name, dest=flag.name, action="store_false",
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(*names, dest=flag.name, type=flag.kind, default=default, metavar="value",
                                help=help_text)
    parser.add_argument("-c", "--c", dest="c", metavar="value", default="",
                        help="config from json file, which will override the command from shell")
    parser.add_argument("-h", "--help", "-help", action="help", help="show help")
    parser.add_argument("-v", "--version", "-version", action="version", version=_version(), help="print the version")
    return parser


def _version() -> str:
    from .. import __version__
    return "gkcp tunnel %s (kcptun 20210922 compatible)" % __version__


def _go_bools(argv: Sequence[str], role: str) -> List[str]:
    """Go's bool flags take ``-name=value``; argparse's store_true does not.
    ``-nocomp=true`` becomes ``--nocomp``, ``-nocomp=false`` the hidden
    ``--nocomp=false``; a value Go would refuse stays as it is for argparse
    to reject."""
    bools = {f.name for f in _flags(role) if f.kind is bool}
    out = []
    for arg in argv:
        m = re.fullmatch(r"--?([a-z0-9]+)=(.*)", arg, re.S)
        if m and m.group(1) in bools:
            if m.group(2) in _GO_TRUE:
                arg = "--" + m.group(1)
            elif m.group(2) in _GO_FALSE:
                arg = "--%s=false" % m.group(1)
        out.append(arg)
    return out


def _apply_json(values: Dict[str, Any], path: str, role: str) -> None:
    """kcptun's -c: the file's keys override the flags (Go's json.Decode
    into the already filled Config; keys match in any case, as there)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ConfigError("-c %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError("-c %s: not valid JSON: %s" % (path, exc)) from None
    if not isinstance(data, dict):
        raise ConfigError("-c %s: the top level must be a JSON object" % path)
    kinds = {f.name: f.kind for f in _flags(role)}
    for key, value in data.items():
        key = key.lower()  # Go's encoding/json matches field tags case-insensitively
        if key not in kinds:
            raise ConfigError("-c %s: unknown key %r for the %s (known: %s)"
                              % (path, key, role, ", ".join(sorted(kinds))))
        kind = kinds[key]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, int) and not isinstance(value, bool) if kind is int else
              isinstance(value, str))
        if not ok:
            raise ConfigError("-c %s: %r must be a JSON %s, got %r"
                              % (path, key, {bool: "boolean", int: "integer", str: "string"}[kind], value))
        values[key] = value


def _check(config: TunnelConfig) -> None:
    """Refuse what kcp-go, smux or gkcp cannot run, naming the flag."""
    def need(ok: bool, flag: str, message: str) -> None:
        if not ok:
            value = getattr(config, flag)
            raise ConfigError("--%s%s: %s" % (flag, "" if isinstance(value, bool) else " %s" % value, message))

    need(config.mode in MODES, "mode", "unknown mode (expected one of: %s)" % ", ".join(MODES))
    need(config.crypt in CIPHERS, "crypt", "unknown cipher (expected one of: %s)" % ", ".join(CIPHERS))
    need(not config.tcp, "tcp", "raw-socket TCP emulation (tcpraw) is not supported by gkcp; use UDP")
    need(not config.pprof, "pprof", "kcptun's Go profiler has no gkcp equivalent")
    need(config.smuxver in (1, 2), "smuxver", "unsupported smux version (1 or 2)")
    need(config.smuxbuf > 0, "smuxbuf", "must be positive")
    need(0 < config.streambuf <= 0x7FFFFFFF, "streambuf", "must be in 1..2147483647")
    need(config.streambuf <= config.smuxbuf, "streambuf",
         "must not exceed --smuxbuf (smux VerifyConfig)")
    need(0 < config.keepalive <= SMUX_KEEPALIVE_TIMEOUT, "keepalive",
         "must be in 1..%d (smux's keepalive timeout)" % SMUX_KEEPALIVE_TIMEOUT)
    need(0 <= config.dscp <= 63, "dscp", "a DSCP is 6 bits (0..63)")
    need(config.snmpperiod >= 0, "snmpperiod", "must be >= 0")
    if config.role == "client":
        need(1 <= config.conn <= 65535, "conn", "must be in 1..65535")
        need(config.autoexpire >= 0, "autoexpire", "must be >= 0")
        need(config.scavengettl >= 0, "scavengettl", "must be >= 0")
    from ..options import make_options
    try:
        make_options(**config.kcp_options())
    except (TypeError, ValueError) as exc:
        raise ConfigError(_flag_spelling(str(exc))) from None


# gkcp option names in messages -> kcptun's flags
_OPTION_FLAGS = {"data_shards": "datashard", "parity_shards": "parityshard", "ack_nodelay": "acknodelay"}


def _flag_spelling(message: str) -> str:
    for option, flag in _OPTION_FLAGS.items():
        message = message.replace(option, flag)
    return "--" + message


def parse_args(role: str, argv: Sequence[str], prog: Optional[str] = None) -> TunnelConfig:
    """Parse kcptun-style arguments (and ``-c``) into a checked
    TunnelConfig.  Errors print the usage and exit with status 2
    (argparse's SystemExit), as do ``-h`` (status 0) and ``-v``."""
    parser = build_parser(role, prog)
    namespace = parser.parse_args(_go_bools(argv, role))
    values = {f.name: getattr(namespace, f.name) for f in _flags(role)}
    try:
        return _finish(role, values, namespace.c)
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this line only tells type checkers so


def make_config(role: str, settings: Dict[str, str]) -> TunnelConfig:
    """A checked TunnelConfig from flag names (or aliases) and their values
    as text, as they would follow ``-name=`` on the command line (``c``:
    a JSON file, as ``-c``); kcptun's defaults for the rest.  Raises
    ConfigError naming the flag, never exits (gkcp.route reads kcptun://
    URLs with it)."""
    if role not in ("client", "server"):
        raise ValueError("role must be 'client' or 'server', got %r" % (role,))
    flags = {f.name: f for f in _flags(role)}
    flags.update({f.alias: f for f in _flags(role) if f.alias})
    values = {f.name: _default(f, role) for f in _flags(role)}
    json_path = settings.get("c", "")
    for name, text in settings.items():
        if name == "c":
            continue
        flag = flags.get(name)
        if flag is None:
            raise ConfigError("unknown %s flag %r (known: %s)" % (role, name, ", ".join(sorted(flags))))
        if flag.kind is bool:
            if text not in _GO_TRUE | _GO_FALSE:
                raise ConfigError("--%s %s: not a boolean (1, true, 0, false...)" % (flag.name, text))
            values[flag.name] = text in _GO_TRUE
        elif flag.kind is int:
            try:
                values[flag.name] = int(text)
            except ValueError:
                raise ConfigError("--%s %s: not an integer" % (flag.name, text)) from None
        else:
            values[flag.name] = text
    return _finish(role, values, json_path)


def _finish(role: str, values: Dict[str, Any], json_path: str) -> TunnelConfig:
    """-c over the flags, then --mode, then the checks (ConfigError)."""
    if json_path:
        _apply_json(values, json_path, role)
    mode = MODES.get(values["mode"])
    if mode is not None:
        values["nodelay"], values["interval"], values["resend"], values["nc"] = mode
    config = TunnelConfig(role=role, **values)
    _check(config)
    return config
