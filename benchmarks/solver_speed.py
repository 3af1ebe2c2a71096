"""Solver speed: space size, solve time and brute-force time, and growth with grid and depth.

Brute force is measured on the small instances; on the large ones it is extrapolated from a
measured sample of mappings (labelled "extrapolated"). Every solve has a time limit; an
instance that does not finish is recorded with its status, bound and gap, not hidden.

    python benchmarks/solver_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hw  # noqa: E402
import models  # noqa: E402
import optimizer  # noqa: E402
from common import write_result  # noqa: E402
from optimizer.search.bruteforce import brute_force  # noqa: E402
from optimizer.search.space import Space, get_space  # noqa: E402

SAMPLE = 2000  # mappings scored to time brute force per mapping


def run_one(label: str, work, hardware, space, time_limit: float, exact_brute: bool) -> dict:
    t0 = time.perf_counter()
    sol = optimizer.solve(work, hardware, space=space, time_limit_s=time_limit)
    solve_s = time.perf_counter() - t0
    bf = brute_force(work, hardware, space, limit=None if exact_brute else SAMPLE)
    per = bf.seconds / max(bf.evaluated, 1)
    brute_s = bf.seconds if exact_brute else per * bf.space_size
    row = {
        "instance": label, "dies": hardware.num_dies, "layers": work.model.layers,
        "space_size": bf.space_size, "status": sol.status, "objective_s": sol.objective_s,
        "bound_s": sol.bound_s, "gap": sol.gap, "solve_s": solve_s, "points_total": sol.points_total,
        "points_solved": sol.points_solved, "brute_force_s": brute_s,
        "brute_force": "measured" if exact_brute else f"extrapolated from {bf.evaluated} mappings",
        "speedup_vs_brute_force": brute_s / solve_s if solve_s > 0 else None,
    }
    if exact_brute and sol.objective_s is not None and bf.best_s is not None:
        row["brute_force_optimum_s"] = bf.best_s
    print(f"{label:38s} dies={row['dies']:5d} size={row['space_size']:.3g} status={sol.status:9s} "
          f"solve={solve_s:7.2f}s brute={brute_s:.3g}s ({row['brute_force']}) gap={sol.gap}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="only the small instances")
    ap.add_argument("--time-limit", type=float, default=120.0)
    args = ap.parse_args()
    rows = []
    small = Space("full", zero_stages=(0, 1), virtual=(1,), free_ops=frozenset({"fc1", "act", "fc2"}))
    w17 = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512)
    rows.append(run_one("gpt-1.7b, 2 dies, 3 free ops (measured)", w17,
                        hw.load("tmac-wafer", rows=1, cols=2, sram_bytes=40e9), small, args.time_limit, True))
    # growth with the grid: GPT 1.7B, full space, on n×n grids of tmac-wafer dies with ample SRAM
    full = get_space("full")
    sides = (2, 4) if args.quick else (2, 4, 8)
    for n in sides:
        w = models.Workload(model=models.load("megatron-1.7b"), global_batch=64, seq_len=1024)
        rows.append(run_one(f"gpt-1.7b full space, {n}x{n} grid", w,
                            hw.load("tmac-wafer", rows=n, cols=n, sram_bytes=40e9), full, args.time_limit, False))
    # growth with depth at fixed grid: layers must not multiply the model size
    for layers in ((6, 24) if args.quick else (6, 24, 96)):
        m = models.ModelConfig(name=f"gpt-{layers}L", layers=layers, hidden=2048, heads=16, vocab=51200)
        w = models.Workload(model=m, global_batch=64, seq_len=1024)
        rows.append(run_one(f"gpt h=2048, {layers} layers, 2x2 grid", w,
                            hw.load("tmac-wafer", rows=2, cols=2, sram_bytes=40e9), full, args.time_limit, False))
    if not args.quick:
        # the headline instances: full space, each machine's preset as shipped
        for name, hw_name, seq in (("llama2-70b", "hecaton-chiplet", 4096), ("gpt3-175b", "tmac-wafer", 2048)):
            w = models.Workload(model=models.load(name), global_batch=1024, seq_len=seq)
            rows.append(run_one(f"{name} full space, {hw_name}", w, hw.load(hw_name), full, args.time_limit, False))
        # growth with the grid up to 1,024 dies: GPT-3 175B on n×n tmac-wafer dies
        for n in (4, 16, 32):
            w = models.Workload(model=models.load("gpt3-175b"), global_batch=1024, seq_len=2048)
            rows.append(run_one(f"gpt3-175b full space, tmac-wafer {n}x{n}", w,
                                hw.load("tmac-wafer", rows=n, cols=n), full, args.time_limit, False))
    write_result("solver_speed", rows, claims=[], extra={
        "settings": {"backend": "cpsat", "time_limit_s": args.time_limit, "brute_force_sample": SAMPLE}})


if __name__ == "__main__":
    main()
