"""A GEMM beside the reduction of the partial results it produces (OpChoice.overlap "chunked" or
"fused"), replayed chunk by chunk: the GEMM runs in k chunks on the compute stream, each chunk's
reduce-scatter on the links right after it; two buffers, so GEMM chunk j + 1 waits for the
reduction of chunk j − 1 (docs/cost-model.md, "Overlap of a collective with its producer GEMM").
"""

from __future__ import annotations

from functools import lru_cache

from ..overlap import OverlapParams
from .engine import Task, replay


@lru_cache(maxsize=4096)
def overlapped_gemm(mode: str, gemm_s: float, reduce_s: float, ring: int, p: OverlapParams) -> tuple[float, tuple]:
    """(seconds, parts) of a GEMM of gemm_s seconds and the reduction of reduce_s seconds it feeds on
    a ring of `ring` dies under `mode`: chunked in overlap.chunks (0: ring) chunks with the
    software contention factors and chunk overhead, fused in one chunk per ring member with the
    fused factors (OverlapParams.fused_slowdowns); one after the other when there is nothing to
    overlap (sequential, ring < 2, no compute or no reduction). parts: (name, start_s, end_s)."""
    p.check(mode)
    if mode == "sequential" or ring < 2 or gemm_s <= 0 or reduce_s <= 0:
        return gemm_s + reduce_s, (("gemm", 0.0, gemm_s), ("reduce", gemm_s, gemm_s + reduce_s))
    if mode == "ideal":
        return max(gemm_s, reduce_s), (("gemm", 0.0, gemm_s), ("reduce", 0.0, reduce_s))
    if mode == "chunked":
        k, overhead, factors = p.chunks or ring, p.chunk_overhead_s, (p.compute_slowdown, p.comm_slowdown)
    else:
        k, overhead, factors = ring, 0.0, p.fused_slowdowns()
    gemms = [Task(f"gemm[{j}]", 0, "main", gemm_s / k + overhead) for j in range(k)]
    reds = [Task(f"reduce[{j}]", 0, "pp", reduce_s / k + overhead, deps=[gemms[j]]) for j in range(k)]
    for j in range(2, k):
        gemms[j].deps.append(reds[j - 2])  # two buffers: chunk j reuses the buffer of chunk j - 2
    replay([{"main": gemms, "pp": reds, "gather": [], "grad": []}], factors)
    parts = tuple((t.name, t.start, t.end) for t in gemms + reds)
    return reds[-1].end, parts
