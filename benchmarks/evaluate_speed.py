"""How fast the referee is: optimizer.evaluate() per call where users lean on it.

Rows: every SC21 Table 1 row and every Korthikanti et al. 2022 Table 5 row as it ran
(benchmarks/data/, built the way benchmarks/validate.py scores them), and GPT-3 175B on a
16,384-GPU DGX H100 cluster (2,048 nodes: tp 8, pp 16, dp 128). Each is evaluated REPEATS times
after one warm-up call; a row's figure is its median. The growth row pair is the 1T GPT of SC21
Table 1 on its 3,072 GPUs at pp 64 (dp 6) and at pp 1 (dp 384): the same dies and groups, 64
stages against one.

Claims: evaluate_median_ms (the median over the rows; target 5 ms on 2 cores) and
evaluate_growth_pp64_vs_pp1 (target 2). Timings are of this machine, in one run.

Run:  python benchmarks/evaluate_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import hw  # noqa: E402
import models  # noqa: E402
import optimizer  # noqa: E402
from common import claim, write_result  # noqa: E402
from validate import _base_hardware, load_tables, row_mapping, row_model  # noqa: E402

REPEATS = 15
TABLES = ("megatron_sc21_table1", "korthikanti_table5")
TARGET_MEDIAN_MS, TARGET_GROWTH = 5.0, 2.0


def per_call_ms(mapping: optimizer.Mapping, work: models.Workload, hardware: hw.Hardware, repeats: int) -> float:
    """Median milliseconds of one evaluate() call (after a warm-up call)."""
    optimizer.evaluate(mapping, work, hardware)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        optimizer.evaluate(mapping, work, hardware)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def published_rows() -> list[tuple[str, optimizer.Mapping, models.Workload, hw.Hardware]]:
    """(label, mapping, workload, hardware) of every row of TABLES, as validate.py scores it."""
    tables = load_tables()
    out = []
    for name in TABLES:
        for row in tables[name]["rows"]:
            work = models.Workload(model=row_model(row), global_batch=row["global_batch"], seq_len=row["seq_len"],
                                   flash_attention=row["flash_attention"])
            hardware = _base_hardware(row["hardware"], max(1, -(-row["gpus"] // 8)))
            out.append((f"{name}:{row['id']}", row_mapping(row, work, hardware), work, hardware))
    return out


def big_cluster() -> tuple[str, optimizer.Mapping, models.Workload, hw.Hardware]:
    work = models.Workload(model=models.load("gpt3-175b"), global_batch=2048)
    hardware = hw.load("dgx-h100", nodes=2048)
    mapping = optimizer.baselines.megatron(work, hardware, tp=8, pp=16, dp=128, micro_batch=1)
    return "gpt3-175b on 16,384 H100 (tp 8, pp 16, dp 128)", mapping, work, hardware


def growth_pair(repeats: int) -> tuple[float, float]:
    """(ms at pp 64, ms at pp 1) for the 1T GPT on 3,072 A100 GPUs."""
    work = models.Workload(model=models.load("megatron-1t"), global_batch=3072)
    hardware = hw.load("dgx-a100", nodes=384)
    deep = optimizer.baselines.megatron(work, hardware, tp=8, pp=64, dp=6, micro_batch=1)
    flat = optimizer.baselines.megatron(work, hardware, tp=8, pp=1, dp=384, micro_batch=1)
    return per_call_ms(deep, work, hardware, repeats), per_call_ms(flat, work, hardware, repeats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per row (default %(default)s)")
    args = ap.parse_args(argv)
    rows = []
    for label, mapping, work, hardware in published_rows() + [big_cluster()]:
        ms = per_call_ms(mapping, work, hardware, args.repeats)
        rows.append({"row": label, "gpus": hardware.num_dies, "pp": mapping.pp, "ms_per_call": ms})
        print(f"{label:60s} {hardware.num_dies:6d} GPUs pp {mapping.pp:3d}  {ms:7.2f} ms")
    deep, flat = growth_pair(args.repeats)
    rows += [{"row": "megatron-1t pp 64 (growth pair)", "gpus": 3072, "pp": 64, "ms_per_call": deep},
             {"row": "megatron-1t pp 1 (growth pair)", "gpus": 3072, "pp": 1, "ms_per_call": flat}]
    median = statistics.median(r["ms_per_call"] for r in rows[:-2])
    growth = deep / flat
    print(f"median {median:.2f} ms per call (target ≤ {TARGET_MEDIAN_MS}); "
          f"pp 64 / pp 1: {deep:.2f} / {flat:.2f} ms = {growth:.2f}× (target ≤ {TARGET_GROWTH})")
    claims = [claim("evaluate_median_ms", TARGET_MEDIAN_MS, median, "ms"),
              claim("evaluate_growth_pp64_vs_pp1", TARGET_GROWTH, growth, "ratio")]
    path = write_result("evaluate_speed", rows, claims, {"repeats": args.repeats})
    print(f"wrote {path.relative_to(HERE.parent)}")
    return 0 if median <= TARGET_MEDIAN_MS and growth <= TARGET_GROWTH else 1


if __name__ == "__main__":
    sys.exit(main())
