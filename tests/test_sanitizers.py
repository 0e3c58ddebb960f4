"""The whole C core under AddressSanitizer, LeakSanitizer and UBSan: an
end-to-end transfer over loopback through a lossy, duplicating, reordering,
tampering relay (tests/c/e2e_sanitize.c), built with gcc (Debian's gcc brings
libasan and libubsan).  Any sanitizer report, leak, corrupted byte or session
left behind fails the test; a missing compiler or sanitizer runtime fails too.
"""
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
DRIVER = REPO / "tests" / "c" / "e2e_sanitize.c"

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:strict_string_checks=1",
       "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


@pytest.fixture(scope="module")
def e2e_binary(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("gcc is required for the sanitizer build")
    out = tmp_path_factory.mktemp("sanbuild")
    flags = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", *SANITIZE, "-I", str(CSRC)]

    def compile_one(src):
        obj = out / (src.stem + ".o")
        r = subprocess.run([cc, "-c", *flags, str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, "%s failed:\n%s" % (src.name, r.stderr)
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objs = list(pool.map(compile_one, sorted(CSRC.glob("*.c")) + [DRIVER]))
    exe = out / "e2e_sanitize"
    r = subprocess.run([cc, *SANITIZE, *objs, "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, "linking with the sanitizer runtimes (libasan, libubsan) failed:\n" + r.stderr
    return exe


@pytest.mark.parametrize("seed", [1, 2])
def test_end_to_end_under_sanitizers(e2e_binary, seed):
    r = subprocess.run([str(e2e_binary), str(seed), "2048"], env=dict(os.environ, **ENV),
                       capture_output=True, text=True, timeout=300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-8000:]
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-8000:]
    assert "scenarios: 8 ok, 0 failed" in r.stdout


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_end_to_end_under_sanitizers_soak(e2e_binary):
    for seed in range(100, 110):
        r = subprocess.run([str(e2e_binary), str(seed), "16384"], env=dict(os.environ, **ENV),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, "seed %d:\n%s%s" % (seed, r.stdout, r.stderr[-8000:])
