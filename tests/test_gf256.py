"""GF(2^8) arithmetic and the region kernels: every SIMD path the CPU offers
must agree with the portable table path, byte for byte, for every constant,
odd lengths, unaligned regions, and must not touch bytes outside them."""
import os
import random
import subprocess
import sys

import pytest

from gkcp._core import ffi, lib
from helpers import cbuf

KERNELS = ["portable", "avx2", "gfni", "gfni512"]


def py_mul(a, b):
    """Reference multiplication in GF(2^8) mod x^8+x^4+x^3+x^2+1."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return r


@pytest.fixture
def kernel_restored():
    before = ffi.string(lib.gk_gf_kernel_name())
    yield
    assert lib.gk_gf_set_kernel(before) == 0


def use(name):
    if not lib.gk_gf_kernel_supported(name.encode()):
        assert lib.gk_gf_set_kernel(name.encode()) == -1
        pytest.skip("CPU lacks %s" % name)
    assert lib.gk_gf_set_kernel(name.encode()) == 0
    assert ffi.string(lib.gk_gf_kernel_name()).decode() == name


def test_scalar_field():
    rng = random.Random(1)
    for _ in range(3000):
        a, b = rng.randrange(256), rng.randrange(256)
        assert lib.gk_gf_mul(a, b) == py_mul(a, b)
    for a in range(1, 256):
        inv = lib.gk_gf_inv(a)
        assert py_mul(a, inv) == 1
        for b in (1, 2, 29, 255):
            assert lib.gk_gf_mul(lib.gk_gf_div(b, a), a) == b
    assert lib.gk_gf_exp(0, 0) == 1 and lib.gk_gf_exp(0, 3) == 0
    assert lib.gk_gf_exp(2, 8) == 0x1D
    x = 1
    for n in range(600):
        assert lib.gk_gf_exp(3, n) == x
        x = py_mul(x, 3)


def test_portable_matches_reference(kernel_restored):
    use("portable")
    src = bytes(range(256))
    out = ffi.new("uint8_t[]", 256)
    for c in range(256):
        lib.gk_gf_mul_region(out, src, c, 256)
        assert bytes(out) == bytes(py_mul(c, x) for x in range(256))


def test_unknown_kernel_refused(kernel_restored):
    assert lib.gk_gf_set_kernel(b"sse9") == -1
    assert lib.gk_gf_set_kernel(b"portable") == 0


def region_results(kernel, cases):
    """Runs every case on one kernel; each case returns bytes (whole buffers,
    guard bytes included, so writes outside the region show up)."""
    use(kernel)
    return [case() for case in cases]


def make_cases(seed):
    rng = random.Random(seed)
    lengths = [0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 127, 129, 1400, 1408]
    lengths += [rng.randrange(1, 300) for _ in range(8)]
    cases = []

    def single(c, n, soff, doff, accumulate):
        src = cbuf(rng.randbytes(n + soff + 64))
        init = rng.randbytes(n + doff + 64)

        def run():
            dst = cbuf(init)
            fn = lib.gk_gf_muladd_region if accumulate else lib.gk_gf_mul_region
            fn(dst + doff, src + soff, c, n)
            return bytes(dst)
        return run

    for c in range(256):
        n = lengths[c % len(lengths)]
        cases.append(single(c, n, c % 7, (c * 5) % 11, c & 1))
        cases.append(single(c, n + 3, 1, 0, 1 - (c & 1)))

    def matrix(nsrc, ndst, n, accumulate):
        coef = cbuf(rng.randbytes(nsrc * ndst))
        srcs = [cbuf(rng.randbytes(n + 70)) for _ in range(nsrc)]
        offs = [rng.randrange(0, 63) for _ in range(nsrc)]
        inits = [rng.randbytes(n + 70) for _ in range(ndst)]
        doffs = [rng.randrange(0, 5) for _ in range(ndst)]

        def run():
            dsts = [cbuf(b) for b in inits]
            sp = ffi.new("uint8_t *[]", [s + o for s, o in zip(srcs, offs)])
            dp = ffi.new("uint8_t *[]", [d + o for d, o in zip(dsts, doffs)])
            lib.gk_gf_mul_matrix(coef, nsrc, ndst, ffi.cast("const uint8_t *const *", sp), dp, n, accumulate)
            return b"".join(bytes(d) for d in dsts)
        return run

    for nsrc in (1, 2, 3, 10, 20):
        for ndst in range(1, 11):
            for n in (rng.randrange(1, 40), 1400, 1408, rng.randrange(100, 700)):
                cases.append(matrix(nsrc, ndst, n, rng.randrange(2)))
    return cases


@pytest.mark.parametrize("kernel", KERNELS[1:])
def test_kernel_matches_portable(kernel, kernel_restored):
    cases = make_cases(7)
    want = region_results("portable", cases)
    got = region_results(kernel, cases)
    for i, (a, b) in enumerate(zip(want, got)):
        assert a == b, "case %d differs" % i


@pytest.mark.parametrize("kernel", KERNELS)
def test_env_override(kernel):
    code = "from gkcp._core import ffi, lib; print(ffi.string(lib.gk_gf_kernel_name()).decode())"
    env = dict(os.environ, GKCP_GF_KERNEL=kernel)
    name = subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip()
    if lib.gk_gf_kernel_supported(kernel.encode()):
        assert name == kernel
    else:
        assert name != kernel


def test_default_is_best_supported():
    code = "from gkcp._core import ffi, lib; print(ffi.string(lib.gk_gf_kernel_name()).decode())"
    env = {k: v for k, v in os.environ.items() if k != "GKCP_GF_KERNEL"}
    name = subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip()
    best = next(k for k in reversed(KERNELS) if lib.gk_gf_kernel_supported(k.encode()))
    assert name == best
