#!/usr/bin/env python
"""Benchmark the zoo's quantizers against vector-quantize-pytorch, in the same run.

For each quantizer and each (N, K, D, dtype) of the grid, times (eval, no grad):

- ``ours``: the zoo quantizer's forward (dispatching to the fused Triton kernel on CUDA, the
  chunked PyTorch path elsewhere; includes the input checks and usage statistics);
- ``lookup`` (VQ only): the bare ``zoo.kernels.nearest_code`` call;
- ``library``: vector-quantize-pytorch's forward of the same module (same codebook);
- ``naive`` (VQ only): ``x @ codebook.T`` + argmin + gather, the N x K matrix materialized;
- ``matmul`` (VQ only): a bare ``x @ codebook.T`` in the same dtype, the compute floor;

and prints one JSON line per case with the times (min over ``--reps``), the ratios
(``speedup`` = library / ours, ``vs_matmul`` = lookup / matmul), peak extra memory of each path
(CUDA: ``max_memory_allocated``; CPU: peak resident set, every allocation >= 64 KiB mmapped) and whether the ids equal the
library's. A Markdown table of the same numbers goes to stderr.

    python scripts/bench_quantize.py                   # default grid for the device
    python scripts/bench_quantize.py --quick           # small sizes (smoke test)
    python scripts/bench_quantize.py --cases vq-euclidean:16384:4096:32:float32
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from zoo.kernels import nearest_code, resolve_backend  # noqa: E402
from zoo.quantize import make_quantizer  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Case:
    quantizer: str   # vq-euclidean | vq-cosine | fsq | lfq | rvq | rfsq
    n: int
    k: int           # codebook size (fsq/rfsq: from the levels; lfq: 2**bits)
    d: int
    dtype: str
    levels: int = 1  # residual levels

    @classmethod
    def parse(cls, text: str) -> "Case":
        parts = text.split(":")
        try:
            q, n, k, d, dt = parts[:5]
            return cls(q, int(n), int(k), int(d), dt, int(parts[5]) if len(parts) > 5 else 1)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad case {text!r}: expected quantizer:N:K:D:dtype[:levels], "
                "e.g. vq-euclidean:16384:4096:32:float32") from None


def default_cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return [Case("vq-euclidean", 2048, 512, 32, "float32"), Case("vq-cosine", 2048, 512, 12, "float32"),
                Case("fsq", 4096, 64000, 6, "float32"), Case("lfq", 4096, 2 ** 12, 12, "float32"),
                Case("rvq", 2048, 256, 32, "float32", 4), Case("rfsq", 4096, 1000, 3, "float32", 4)]
    if device == "cuda":
        vq = [Case(m, n, k, 32, dt) for m in ("vq-euclidean", "vq-cosine") for dt in ("bfloat16", "float16", "float32")
              for n, k in ((65_536, 16_384), (16_384, 4096), (4096, 16_384))]
        vq += [Case("vq-cosine", 65_536, 4096, 12, "bfloat16"), Case("vq-euclidean", 65_536, 16_384, 128, "bfloat16")]
        rest = [Case("fsq", 262_144, 64_000, 6, "float32"), Case("lfq", 262_144, 2 ** 16, 16, "float32"),
                Case("rvq", 65_536, 1024, 128, "float32", 8), Case("rfsq", 262_144, 1000, 3, "float32", 4)]
        return vq + rest
    vq = [Case("vq-euclidean", 16_384, 4096, 32, "float32"), Case("vq-cosine", 16_384, 4096, 32, "float32"),
          Case("vq-euclidean", 4096, 1024, 32, "float32"), Case("vq-cosine", 16_384, 4096, 12, "float32"),
          Case("vq-euclidean", 16_384, 4096, 32, "bfloat16")]
    rest = [Case("fsq", 65_536, 64_000, 6, "float32"), Case("lfq", 65_536, 2 ** 14, 14, "float32"),
            Case("rvq", 16_384, 1024, 32, "float32", 8), Case("rfsq", 65_536, 1000, 3, "float32", 4)]
    return vq + rest


# -- measuring ----------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


#: "wall": elapsed time; "process": CPU time of this process (with one thread, robust on a busy machine)
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
_clock = CLOCKS["wall"]


def time_ms(fn, device: str, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = _clock()
        fn()
        sync(device)
        best = min(best, _clock() - t0)
    return best * 1000


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _fixed_mmap_threshold() -> None:
    """Serve every allocation >= 64 KiB by mmap and give it back on free (glibc), so that the peak
    resident set of a call measures what the call allocated, not what an earlier call left behind."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)   # M_MMAP_THRESHOLD (also turns off its dynamic growth)
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except Exception:  # pragma: no cover - not glibc
        pass


def peak_mib(fn, device: str) -> float | None:
    """Peak extra memory of one call of ``fn`` in MiB (CUDA allocator peak, or peak RSS on a CPU)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    try:
        with open("/proc/self/clear_refs", "w") as f:  # reset this process's peak-RSS mark
            f.write("5")
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    fn()
    return max(0.0, (_rss_kib("VmHWM") - base) / 1024)


# -- cases ----------------------------------------------------------------------------------------------
def build(case: Case, device: str):
    """(ours: module, library: callable x -> (quantized, ids), D of the input)."""
    dt = DTYPES[case.dtype]
    q = case.quantizer
    if q.startswith("vq"):
        ours = make_quantizer("vq", dim=case.d, codebook_size=case.k, use_cosine=q == "vq-cosine")
        lib = ours.vq
        call = lambda x: lib(x)[:2]  # noqa: E731
    elif q == "fsq":
        levels = _fsq_levels(case.k)
        ours = make_quantizer("fsq", levels=levels, dim=case.d)
        lib = ours.fsq
        call = lambda x: lib(x)  # noqa: E731
    elif q == "lfq":
        ours = make_quantizer("lfq", dim=case.d, codebook_size=case.k)
        lib = ours.lfq
        call = lambda x: lib(x)[:2]  # noqa: E731
    elif q == "rvq":
        ours = make_quantizer("rvq", dim=case.d, codebook_size=case.k, num_levels=case.levels)
        lib = ours.rvq
        call = lambda x: lib(x)[:2]  # noqa: E731
    elif q == "rfsq":
        levels = _fsq_levels(case.k)
        ours = make_quantizer("rfsq", dim=case.d, levels=levels, num_levels=case.levels)
        lib = ours.rfsq
        call = lambda x: lib(x)  # noqa: E731
    else:
        raise SystemExit(f"unknown quantizer {q!r}")
    ours = ours.to(device).eval()
    if dt != torch.float32 and q.startswith("vq"):
        ours = ours.to(dt)  # the library module is the same object, so it holds the same codes
    return ours, call


def _fsq_levels(k: int) -> list[int]:
    known = {64_000: [8, 8, 8, 5, 5, 5], 1000: [10, 10, 10], 15_360: [8, 6, 5, 8, 8]}
    if k in known:
        return known[k]
    raise SystemExit(f"no FSQ levels known for K={k}; use one of {sorted(known)}")


@torch.no_grad()
def run_case(case: Case, device: str, reps: int) -> dict:
    torch.manual_seed(0)
    dt = DTYPES[case.dtype]
    ours, lib_call = build(case, device)
    x = torch.randn(1, case.n, case.d, device=device).to(dt if case.quantizer.startswith("vq") else torch.float32)
    rec: dict = dict(quantizer=case.quantizer, N=case.n, K=case.k, D=case.d, dtype=case.dtype,
                     levels=case.levels, device=device_name(device),
                     rerank=int(os.environ.get("ZOO_QUANTIZE_RERANK", "0") or 0), clock=_clock.__name__,
                     backend=resolve_backend("auto", torch.device(device)), threads=torch.get_num_threads())

    out = ours(x)
    lib_q, lib_ids = lib_call(x)
    rec["ids_equal"] = bool(torch.equal(out.ids, lib_ids.long()))
    rec["max_abs_diff"] = float((out.quantized.float() - lib_q.float()).abs().max())

    fns = {"ours": lambda: ours(x), "library": lambda: lib_call(x)}
    if case.quantizer.startswith("vq"):
        cosine = case.quantizer == "vq-cosine"
        cb = ours.vq._codebook.embed[0]
        flat = x[0]
        metric = "cosine" if cosine else "euclidean"
        fns["lookup"] = lambda: nearest_code(flat, cb, metric, codebook_normalized=True)

        def naive():
            xf = torch.nn.functional.normalize(flat, dim=-1) if cosine else flat
            scores = xf.float() @ cb.float().T
            if cosine:
                ids = scores.argmax(-1)
            else:  # the same ordering as the library's distances: |c|^2 - 2 x.c
                ids = ((cb.float() ** 2).sum(-1)[None] - 2 * scores).argmin(-1)
            return cb[ids], ids

        fns["naive"] = naive
        fns["matmul"] = lambda: flat @ cb.T
    for name, fn in fns.items():
        rec[f"{name}_ms"] = round(time_ms(fn, device, reps if name != "library" else max(1, reps // 2 + 1)), 3)
    for name in ("ours", "lookup", "library", "naive"):
        if name in fns:
            mem = peak_mib(fns[name], device)
            rec[f"{name}_peak_mib"] = None if mem is None else round(mem, 2)
    rec["speedup"] = round(rec["library_ms"] / rec["ours_ms"], 2)
    if "lookup_ms" in rec:
        rec["lookup_speedup"] = round(rec["library_ms"] / rec["lookup_ms"], 2)
        rec["vs_matmul"] = round(rec["lookup_ms"] / rec["matmul_ms"], 2)
        rec["ours_vs_matmul"] = round(rec["ours_ms"] / rec["matmul_ms"], 2)
        nk_mib = case.n * case.k * 4 / 2 ** 20
        rec["nk_fp32_mib"] = round(nk_mib, 1)
        if rec.get("lookup_peak_mib") is not None:
            rec["mem_vs_naive"] = round(rec["lookup_peak_mib"] / max(rec["naive_peak_mib"] or nk_mib, 1e-9), 4)
    return rec


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def markdown(rows: list[dict]) -> str:
    head = ("| quantizer | N | K | D | L | dtype | ours ms | lookup ms | library ms | speedup | matmul ms "
            "| lookup/matmul | peak MiB ours / library / naive | ids equal |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        mem = " / ".join("-" if r.get(f"{k}_peak_mib") is None else f"{r[f'{k}_peak_mib']:.1f}"
                         for k in ("lookup" if "lookup_ms" in r else "ours", "library", "naive"))
        lines.append(
            f"| {r['quantizer']} | {r['N']} | {r['K']} | {r['D']} | {r['levels']} | {r['dtype']} | {r['ours_ms']:.1f} "
            f"| {r.get('lookup_ms', float('nan')):.1f} | {r['library_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {r.get('matmul_ms', float('nan')):.1f} | {r.get('vs_matmul', float('nan')):.2f} | {mem} "
            f"| {r['ids_equal']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cases", nargs="*", type=Case.parse, help="quantizer:N:K:D:dtype[:levels], e.g. vq-euclidean:16384:4096:32:float32")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (min is reported)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--no-table", action="store_true", help="do not print the Markdown table to stderr")
    ap.add_argument("--rerank", type=int, default=None, metavar="C",
                    help="fp32 VQ lookups: bf16 candidate search + exact re-rank of C codes (sets ZOO_QUANTIZE_RERANK)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; process: CPU time (CPU only; use --threads 1 on a shared machine)")
    args = ap.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    if args.rerank is not None:
        os.environ["ZOO_QUANTIZE_RERANK"] = str(args.rerank)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        _fixed_mmap_threshold()
    cases = args.cases if args.cases else default_cases(args.device, args.quick)
    rows = []
    for case in cases:
        rec = run_case(case, args.device, args.reps)
        rows.append(rec)
        print(json.dumps(rec), flush=True)
    if not args.no_table:
        print("\n" + markdown(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
