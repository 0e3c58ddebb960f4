"""The whole C core under AddressSanitizer, LeakSanitizer and UBSan: an
end-to-end transfer over loopback through a lossy, duplicating, reordering,
tampering relay (tests/c/e2e_sanitize.c), built with gcc (Debian's gcc brings
libasan and libubsan).  Any sanitizer report, leak, corrupted byte or session
left behind fails the test; a missing compiler or sanitizer runtime fails too.
"""
import pytest

from helpers import CSRC, C_TESTS, build_sanitized, run_sanitized


@pytest.fixture(scope="module")
def e2e_binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("sanbuild")
    return build_sanitized(out / "e2e_sanitize", sorted(CSRC.glob("*.c")) + [C_TESTS / "e2e_sanitize.c"])


@pytest.mark.parametrize("seed", [1, 2])
def test_end_to_end_under_sanitizers(e2e_binary, seed):
    r = run_sanitized(e2e_binary, str(seed), "2048", timeout=300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-8000:]
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-8000:]
    assert "scenarios: 8 ok, 0 failed" in r.stdout


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_end_to_end_under_sanitizers_soak(e2e_binary):
    for seed in range(100, 110):
        r = run_sanitized(e2e_binary, str(seed), "16384", timeout=600)
        assert r.returncode == 0, "seed %d:\n%s%s" % (seed, r.stdout, r.stderr[-8000:])
