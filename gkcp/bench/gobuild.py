"""Building the Go programs gkcp is measured and tested against.

Every Go program of the project -- the kcp-go reference peer and the FEC
vector generator that travel with the benchmark (``gkcp/bench/goref/``), the
test-only generators in ``tests/go/`` -- is built by :func:`build_go_program`
against Debian's Go sources (no modules, no network) into one cache,
``$XDG_CACHE_HOME/gkcp/go`` (default ``~/.cache/gkcp/go``).  A binary is named
after its source directory plus a hash of its source files, so an edited or
upgraded source gets a new binary and a stale one is never run.

There is one failure mode: GoBuildError (a RuntimeError) saying what is
missing.  The tests let it fail the test; the benchmark prints it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Sequence, Union

#: Debian's GOPATH (golang-github-xtaci-kcp-dev and its dependencies).
GOPATH = Path("/usr/share/gocode")
KCP_GO_SRC = GOPATH / "src" / "github.com" / "xtaci" / "kcp-go"
#: Go programs shipped inside the package, addressed by their directory name.
GOREF_DIR = Path(__file__).resolve().parent / "goref"

INSTALL_HINT = "Debian: apt-get install golang-go golang-github-xtaci-kcp-dev"
_SOURCE_SUFFIXES = (".go", ".s")
_BUILD_TIMEOUT = 600  # seconds; a cold Go cache compiles kcp-go and its dependencies


class GoBuildError(RuntimeError):
    """Go or Debian's Go sources are missing, or a build failed."""


def cache_dir() -> Path:
    """Where built binaries live: $XDG_CACHE_HOME/gkcp/go, else ~/.cache/gkcp/go
    (a per-user folder in the temporary directory when there is no home)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        base = (os.path.join(home, ".cache") if home != "~"
                else os.path.join(tempfile.gettempdir(), "gkcp-cache-%d" % os.getuid()))
    return Path(base) / "gkcp" / "go"


def go_env(gopath: Sequence[Path] = ()) -> Dict[str, str]:
    """Environment for a GOPATH-mode build: the given folders first, then Debian's."""
    env = dict(os.environ)
    env["GO111MODULE"] = "off"
    env["GOPATH"] = os.pathsep.join([str(p) for p in gopath] + [str(GOPATH)])
    env.setdefault("GOFLAGS", "")
    if "GOCACHE" not in env and not env.get("HOME"):
        env["GOCACHE"] = str(cache_dir() / "gocache")
    return env


def source_dir(program: Union[str, Path]) -> Path:
    """A bare name ("peer", "fecvec") is a program under goref/; anything else is a directory."""
    if isinstance(program, str) and os.sep not in program:
        return GOREF_DIR / program
    return Path(program).resolve()


def source_hash(src_dir: Path, test: bool) -> str:
    """Hash of what the binary is built from: the program's sources, how it is
    built, and the installed kcp-go (a Debian upgrade rebuilds)."""
    files = sorted(p for p in src_dir.iterdir() if p.suffix in _SOURCE_SUFFIXES)
    if not any(p.suffix == ".go" for p in files):
        raise GoBuildError(f"no Go source in {src_dir}")
    h = hashlib.sha256(b"test" if test else b"build")
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    kcp_go = sorted(KCP_GO_SRC.glob("*.go"))
    h.update(repr([(p.name, p.stat().st_mtime_ns) for p in kcp_go]).encode())
    return h.hexdigest()[:16]


def require_go() -> str:
    """The go command's path; GoBuildError unless Go and Debian's kcp-go source are installed."""
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("Go toolchain not found: gkcp's Go reference programs need `go` on PATH ("
                           + INSTALL_HINT + ")")
    if not KCP_GO_SRC.is_dir():
        raise GoBuildError(f"kcp-go source not found at {KCP_GO_SRC} ({INSTALL_HINT})")
    return go


def build_go_program(program: Union[str, Path], *, test: bool = False,
                     gopath: Sequence[Path] = ()) -> str:
    """Build a Go program (``go build``; with test, the package's test binary,
    ``go test -c``) unless the cache already holds it; return the binary's path.

    program: a name under gkcp/bench/goref/ or a source directory.  gopath:
    folders searched before Debian's GOPATH (a package assembled on the fly).
    Raises GoBuildError when Go or Debian's kcp-go source is missing or the
    build fails.
    """
    go = require_go()
    src = source_dir(program)
    if not src.is_dir():
        raise GoBuildError(f"Go program source {src} not found")
    binary = cache_dir() / f"{src.name}-{source_hash(src, test)}"
    if binary.exists():
        return str(binary)
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Build to a private name, then rename: concurrent builders never see a
    # half-written binary.
    staged = binary.with_name(f".{binary.name}.{os.getpid()}.tmp")
    command = [go, "test", "-c"] if test else [go, "build"]
    try:
        proc = subprocess.run(command + ["-o", str(staged), "."], cwd=str(src), env=go_env(gopath),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=_BUILD_TIMEOUT)
        if proc.returncode != 0:
            raise GoBuildError(f"building the Go program in {src} failed:\n"
                               + proc.stdout.decode(errors="replace"))
        os.replace(staged, binary)
    except subprocess.TimeoutExpired:
        raise GoBuildError(f"building the Go program in {src} took over {_BUILD_TIMEOUT} s") from None
    finally:
        if staged.exists():
            staged.unlink()
    remove_stale(binary)
    return str(binary)


def remove_stale(binary: Path) -> None:
    """Delete builds of older sources of the same program, once they are a day
    old (a concurrent run of another checkout may still be using one)."""
    prefix = binary.name[:-16]
    for old in binary.parent.glob(prefix + "*"):
        if (old != binary and len(old.name) == len(binary.name)
                and old.stat().st_mtime < time.time() - 86400):
            old.unlink(missing_ok=True)
