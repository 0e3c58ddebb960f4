"""Small helpers several test modules share (import them from here).

- free_udp_port(): a 127.0.0.1 UDP port nobody is bound to right now.
- cbuf(data), core_stat(name): C buffers and gk_stats counters of gkcp._core.
- assert_intact(transfer): every digest of a pyroles.Transfer agrees.
- build_sanitized(exe, sources), run_sanitized(exe, *args): C test programs
  built with ASan + UBSan against csrc/ and run with leak checks on.  A
  missing compiler or sanitizer runtime fails the test, never skips it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from gkcp._core import ffi, lib

TESTS = Path(__file__).resolve().parent
CSRC = TESTS.parent / "csrc"
C_TESTS = TESTS / "c"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ C core

def cbuf(data: bytes) -> Any:
    """A C copy of data (ffi.new would append a NUL to bytes)."""
    b = ffi.new("uint8_t[]", len(data))
    ffi.memmove(b, data, len(data))
    return b


def core_stat(name: str) -> int:
    """One counter of the C core's gk_stats."""
    return getattr(lib.gk_stats, name)


# --------------------------------------------------------------- transfers

def assert_intact(transfer: Any) -> None:
    """Every SHA-256 a transfer reported (sent, received, echoed) is the same."""
    assert len(set(transfer.digests)) == 1, transfer.digests


# -------------------------------------------------------------- sanitizers

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:strict_string_checks=1",
                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def build_sanitized(exe: Path, sources: Sequence[Path]) -> Path:
    """Compile sources (in parallel, -Werror) with csrc/ on the include path
    and link them under ASan + UBSan into exe."""
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "gcc is required for the sanitizer builds"
    flags = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *SANITIZE, "-I", str(CSRC)]
    objdir = exe.parent / (exe.name + ".o.d")
    objdir.mkdir(parents=True, exist_ok=True)

    def compile_one(src: Path) -> str:
        obj = objdir / (src.stem + ".o")
        r = subprocess.run([cc, "-c", *flags, str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, "compiling %s failed:\n%s" % (src.name, r.stderr)
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objs = list(pool.map(compile_one, sources))
    r = subprocess.run([cc, *SANITIZE, *objs, "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, "linking with the sanitizer runtimes (libasan, libubsan) failed:\n" + r.stderr
    return exe


def run_sanitized(exe: Path, *args: str, timeout: float = 120,
                  unset: Sequence[str] = ()) -> "subprocess.CompletedProcess[str]":
    """Run a sanitized program with leak checks and halting UBSan, in this
    environment minus LD_PRELOAD (ASan must come first) and the unset names."""
    drop = {"LD_PRELOAD", *unset}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run([str(exe), *args], env={**env, **SANITIZER_ENV},
                          capture_output=True, text=True, timeout=timeout)
