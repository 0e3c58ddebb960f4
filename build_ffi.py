"""cffi out-of-line API build of the C core (csrc/) into ``gkcp._core``.

The cdef is read from the public headers themselves, so a declaration lives in
exactly one place.  Public headers therefore hold only what cffi can parse:
declarations, typedefs, structs and ``#define NAME <integer>`` constants.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")

# Public headers in dependency order; every declaration in them is exposed.
HEADERS = ["common.h", "snmp.h", "kcp.h", "gf256.h", "rs.h", "fec.h", "crypt.h", "replay.h", "sess.h"]

HEADER_ONLY = {"common.h"}

_CONSTANT = re.compile(r"^#define\s+\w+\s+(0x[0-9A-Fa-f]+|\d+)\b")


def header_cdef(text: str) -> str:
    """Strip what cffi cannot parse: preprocessor lines other than integer constants."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            match = _CONSTANT.match(stripped)
            lines.append(match.group(0) if match else "")
        else:
            lines.append(line)
    return "\n".join(lines)


def public_headers():
    """HEADERS, after checking each one and the .c file implementing it are
    there: a missing file stops the build naming it (an sdist that left one
    out must not build a module lacking its declarations)."""
    missing = []
    for h in HEADERS:
        needed = [h] if h in HEADER_ONLY else [h, h[:-2] + ".c"]
        missing += [f for f in needed if not os.path.exists(os.path.join(CSRC, f))]
    if missing:
        raise FileNotFoundError("gkcp C core incomplete: %s missing from %s"
                                % (", ".join(missing), CSRC))
    return HEADERS


def sources(absolute: bool):
    base = CSRC if absolute else "csrc"
    return sorted(os.path.join(base, f) for f in os.listdir(CSRC) if f.endswith(".c"))


def make_ffi(absolute_paths: bool = False) -> FFI:
    ffi = FFI()
    cdef = []
    for name in public_headers():
        with open(os.path.join(CSRC, name)) as f:
            cdef.append(header_cdef(f.read()))
    ffi.cdef("\n".join(cdef))
    extra = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    extra += os.environ.get("GKCP_CFLAGS", "").split()
    ffi.set_source(
        "gkcp._core",
        "\n".join('#include "%s"' % h for h in public_headers()),
        sources=sources(absolute_paths),
        include_dirs=[CSRC],
        extra_compile_args=extra,
        extra_link_args=os.environ.get("GKCP_LDFLAGS", "").split(),
    )
    return ffi


ffibuilder = make_ffi()

def build_in_place() -> str:
    """Compile into a private temporary folder, then move the module into gkcp/
    with one rename, so concurrent builds and running interpreters never see a
    half-written file.

    The module is named gkcp/_core.abi3.so, as ``pip install`` (-e) names it:
    cffi compiles for the limited API either way.  Any other build of it in
    gkcp/ goes, since Python would prefer a stale _core.cpython-3xx-*.so."""
    import glob
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="gkcp-build-")
    try:
        built = make_ffi(absolute_paths=True).compile(tmpdir=tmp)
        target = os.path.join(HERE, "gkcp", "_core.abi3.so")
        staged = target + ".%d.tmp" % os.getpid()
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, target)
        for other in glob.glob(os.path.join(HERE, "gkcp", "_core.*.so")):
            if other != target:
                os.unlink(other)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(build_in_place())
