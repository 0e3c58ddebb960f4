"""``python -m gkcp.bench fec``: Reed-Solomon encode and reconstruct cost per
group, for every GF kernel this CPU offers, next to klauspost/reedsolomon
(the Debian build kcp-go links) timed in the same run by the Go program in gkcp/bench/goref/fecvec.

Each C figure is one foreign call that loops inside C (gk_rs_bench), timed
as a whole, so cffi's per-call cost does not count.
"""
import argparse
import json
import os
import subprocess
import time

from gkcp._core import ffi, lib

from .gobuild import build_go_program

CASES = [(10, 3, 1400), (10, 3, 1408), (10, 3, 65536), (3, 2, 1400), (20, 10, 1400)]
KERNELS = ["portable", "avx2", "gfni", "gfni512"]


def lost_count(ps):
    return min(ps, 3)


def time_c(rs, op, shards, present, size, budget_s):
    """ns per group: grow the iteration count until one call lasts long
    enough, then keep the best of several calls."""
    iters = 16
    while True:
        t0 = time.perf_counter_ns()
        lib.gk_rs_bench(rs, op, shards, present, size, iters)
        dt = time.perf_counter_ns() - t0
        if dt > budget_s * 1e9 / 5 or iters > 1 << 26:
            break
        iters *= 4
    best = dt / iters
    for _ in range(4):
        t0 = time.perf_counter_ns()
        lib.gk_rs_bench(rs, op, shards, present, size, iters)
        best = min(best, (time.perf_counter_ns() - t0) / iters)
    return best


def measure_c(kernels, budget_s):
    out = {}
    for kernel in kernels:
        assert lib.gk_gf_set_kernel(kernel.encode()) == 0
        for ds, ps, size in CASES:
            n = ds + ps
            rs = lib.gk_rs_new(ds, ps)
            # 64-byte aligned shards, as the FEC layer keeps them
            raw = [ffi.new("uint8_t[]", size + 64) for _ in range(n)]
            bufs = [r + (-int(ffi.cast("uintptr_t", r)) % 64) for r in raw]
            for b in bufs[:ds]:
                ffi.memmove(b, os.urandom(size), size)
            shards = ffi.new("uint8_t *[]", bufs)
            lib.gk_rs_encode(rs, shards, size)
            present = ffi.new("uint8_t[]", [0] * lost_count(ps) + [1] * (n - lost_count(ps)))
            enc = time_c(rs, 0, shards, present, size, budget_s)
            rec = time_c(rs, 1, shards, present, size, budget_s)
            lib.gk_rs_free(rs)
            out[(kernel, ds, ps, size)] = (enc, rec)
    return out


def measure_go(budget_s):
    fecvec = build_go_program("fecvec")
    ms = max(1, int(budget_s * 1000))
    rows = json.loads(subprocess.check_output([fecvec, "bench", str(ms)]))
    return {(r["ds"], r["ps"], r["size"]): (r["encode_ns"], r["reconstruct_ns"]) for r in rows}


def main(argv):
    ap = argparse.ArgumentParser(prog="python -m gkcp.bench fec", description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=0.2, help="seconds per measurement (default 0.2)")
    ap.add_argument("--no-go", action="store_true", help="skip the klauspost comparison")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    before = ffi.string(lib.gk_gf_kernel_name())
    kernels = [k for k in KERNELS if lib.gk_gf_kernel_supported(k.encode())]
    try:
        c = measure_c(kernels, args.time)
    finally:
        lib.gk_gf_set_kernel(before)
    go = {} if args.no_go else measure_go(args.time)

    if args.json:
        rows = []
        for (kernel, ds, ps, size), (enc, rec) in c.items():
            ref = go.get((ds, ps, size))
            rows.append({"kernel": kernel, "ds": ds, "ps": ps, "size": size, "lost": lost_count(ps),
                         "encode_ns": enc, "reconstruct_ns": rec,
                         "klauspost_encode_ns": ref and ref[0], "klauspost_reconstruct_ns": ref and ref[1]})
        print(json.dumps(rows, indent=1))
        return 0

    print("Reed-Solomon ns per group (reconstruct: min(ps,3) data shards lost); "
          "ratio = klauspost 1.9.13 / gkcp")
    print("%-9s %-6s %6s | %9s %9s %6s | %9s %9s %6s" % (
        "kernel", "shape", "shard", "encode", "klauspost", "ratio", "recon", "klauspost", "ratio"))
    for ds, ps, size in CASES:
        ref = go.get((ds, ps, size))
        for kernel in kernels:
            enc, rec = c[(kernel, ds, ps, size)]
            if ref:
                print("%-9s %-6s %6d | %9.0f %9.0f %6.2f | %9.0f %9.0f %6.2f" % (
                    kernel, "%d/%d" % (ds, ps), size, enc, ref[0], ref[0] / enc, rec, ref[1], ref[1] / rec))
            else:
                print("%-9s %-6s %6d | %9.0f %9s %6s | %9.0f %9s %6s" % (
                    kernel, "%d/%d" % (ds, ps), size, enc, "-", "-", rec, "-", "-"))
    return 0
