"""TMAC's headline comparison on a wafer: the full-space optimum against AccPar, DeepSpeed and Megatron-LM.

Source: Wang et al., "TMAC: Training-Targeted Mapping and Architecture Co-Exploration for Wafer-Scale
Chips", Integrated Circuits and Systems 2025, abstract: 3.1x / 2.9x / 1.6x throughput over AccPar /
DeepSpeed / Megatron-LM, 3.6x / 3.1x less memory than AccPar / DeepSpeed, and about the memory of
Megatron-LM's full recomputation. The full text (its wafer, workloads and batch sizes) was not
available here: every setting below that is not from the abstract is an assumption.

For each model on each wafer preset, three kinds of mapping are scored by optimizer.evaluate:
  (a) full      optimizer.solve(space="full"): the solver's best mapping of the whole space (TMAC's
                role: a search over the operator-level space with recomputation inside it);
  (b) space     optimizer.solve(space=peer) for peer in megatron, deepspeed, accpar: the best mapping
                the peer's own strategy space holds;
  (c) heuristic optimizer.baselines.heuristic(peer, work, hw, offload=True): the mapping the peer's
                own rule picks, made to fit by the peer's own means (DeepSpeed: ZeRO stage, micro-batch,
                activation checkpointing, then ZeRO-Offload/Infinity to the wafer's edge DRAM; Megatron-LM:
                pipeline depth and full recomputation, then offload of its state; AccPar: every point of its
                bisection with its tensors spilled to DRAM at the ports' cost, the fastest that fits). A
                mapping that still does not fit is reported (fits = false, named in the printout) and never
                scored: no ratio is computed from it. Its row also carries "same_degrees": the peer's space
                solved at the heuristic's own degrees (check.same_degrees).

Each claim is a geomean over the models on tmac-wafer of a ratio against the peer, on one basis:
"solver-in-space" when the peer's space solve found a mapping for every model, else "heuristic"; a
model whose peer mapping does not fit has no ratio (the geomean is over the rest; none left: null).
Memory is compared on one basis for every mapping (peer_fit.training_memory_bytes): the peak bytes per
die of the training state plus activations with nothing in DRAM; the on-die peak and the footprint
(on-die peak + the die's share of what lives in DRAM) are reported beside it.
memory_vs_megatron_full_recompute always uses the heuristic: Megatron-LM with full recomputation.

Each claim outside the issue's band (TARGET) prints its sensitivity (claim_sensitivity): for a peer
that does not fit, the SRAM per die (and DRAM capacity, where it binds) at which the peer's own rule
fits and the ratio there; for a speed-up short of the paper's, the link or DRAM-port slowdown at which
it is reached. standing() ranks the peers when a mapping must fit; ordering_sensitivity() scores the
heuristics over a grid of link and DRAM-port bandwidths, at the points where all of them fit.

Assumptions (see docs/reproduction.md, "TMAC"):
  * hardware: the tmac-wafer preset (8 x 8 dies, 256 MB SRAM each, 4 TB/s links, 32 edge DRAM ports
    of 4 TB/s / 144 GB; every figure an assumption of the preset) and the wse2 preset (7 x 12
    regions, 476 MB SRAM, MemoryX behind 12 x 12.5 GB/s ports);
  * workloads: GPT-3 175B at its 2048-token context, Llama2-70B and Llama2-13B at 4096; 512 sequences
    per step (GLOBAL_BATCH); bf16 with mixed-precision Adam (models.Workload defaults);
  * solver: CP-SAT, one thread (deterministic), TIME_LIMIT_S per solve; a solve stopped by the clock
    reports status "timeout" with its bound and gap in the rows.

Run:  python benchmarks/reproduce_tmac.py [--no-wse2] [--no-sensitivity]
      (writes benchmarks/results/tmac.json and benchmarks/results/tmac.png)
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` sits next to this file, whether run or imported
    sys.path.insert(0, str(HERE))

import hw  # noqa: E402
import models  # noqa: E402
import optimizer  # noqa: E402
from common import RESULTS_DIR, claim, save_figure, write_result  # noqa: E402
from peer_fit import bandwidth_to_reach, machine_with, sram_to_fit, statement, training_memory_bytes  # noqa: E402
from hw.loader import build_hardware, raw_preset, strip_sources  # noqa: E402
from optimizer import baselines  # noqa: E402
from optimizer.tools.check import same_degrees  # noqa: E402
from optimizer.search.space import get_space  # noqa: E402

HARDWARE = ("tmac-wafer", "wse2")  # claims from the first; the second is reported beside them
CLAIM_HARDWARE = "tmac-wafer"
MODELS = ("gpt3-175b", "llama2-70b", "llama2-13b")  # TMAC's GPT-3 175B and Llama2-70B; a ~13B model
GLOBAL_BATCH = 512  # assumption: TMAC's batch was not available; 1-2M tokens per step, GPT-3's range
PEERS = ("accpar", "deepspeed", "megatron")
BACKEND = "cpsat"  # DESIGN.md default backend
TIME_LIMIT_S = 90.0  # per solve: four solves stop at it, so reproduce_all stays within 15 minutes on 2 cores
THREADS = 1  # CP-SAT with one thread is deterministic: a rerun gives the same rows (timeouts aside)
REL = 1e-6  # CP-SAT optimizes on an integer time scale: its optimum matches evaluate() to this
OFF_BY = 2.0  # a ratio more than 2x off the paper's, either way, prints the assumption that drives it
# the sensitivity grid of the peers' order (ordering_sensitivity): the preset's 4 TB/s, one 4x step above
# it and three below (to 64x less), for the links and the DRAM ports alike (assumptions: a span, not a claim)
GRID_LINK_BW = (16e12, 4e12, 1e12, 0.25e12, 0.0625e12)
GRID_DRAM_BW = (16e12, 4e12, 1e12, 0.25e12, 0.0625e12)
COMPUTE_BOUND = 0.8  # assumption (a reporting threshold): a step >= 80% compute (+ recompute) is called compute-bound

# TMAC abstract (Wang et al., Integrated Circuits and Systems 2025); memory vs Megatron full
# recomputation: "about equal", written 1.0
PAPER = {
    "speedup_vs_accpar": 3.1,
    "speedup_vs_deepspeed": 2.9,
    "speedup_vs_megatron": 1.6,
    "memory_reduction_vs_accpar": 3.6,
    "memory_reduction_vs_deepspeed": 3.1,
    "memory_vs_megatron_full_recompute": 1.0,
}
CLAIMS = tuple(PAPER)
CLAIM_PEER = {"speedup_vs_accpar": "accpar", "speedup_vs_deepspeed": "deepspeed", "speedup_vs_megatron": "megatron",
              "memory_reduction_vs_accpar": "accpar", "memory_reduction_vs_deepspeed": "deepspeed",
              "memory_vs_megatron_full_recompute": "megatron"}

# the additive parts of Report.breakdown (they sum to the step time) and the assumption each rests on
ADDITIVE = ("compute", "recompute", "tp_comm_exposed", "pp_comm_exposed", "dp_comm_exposed", "zero_comm_exposed",
            "dram", "bubble", "optimizer", "optimizer_dram")
TERM_ASSUMPTION = {
    "compute": "the die's GEMM efficiency (preset die.matmul_efficiency, an assumption) and how the FLOPs are split",
    "recompute": "activation recomputation: full recomputation / checkpointing re-runs every block's forward "
                 "(+1/3 of the compute), where the optimum recomputes only what memory needs",
    "tp_comm_exposed": "die-to-die link bandwidth and latency (preset topology.link, an assumption) "
                       "for tensor-parallel collectives",
    "pp_comm_exposed": "link bandwidth and latency for pipeline transfers (preset topology.link)",
    "dp_comm_exposed": "link bandwidth for the data-parallel gradient reduction (preset topology.link)",
    "zero_comm_exposed": "link bandwidth for ZeRO-3 parameter gathers (preset topology.link)",
    "dram": "DRAM port bandwidth (preset dram_ports[].bandwidth, an assumption): offloaded weights, gradients "
            "and activations cross the ports once per micro-batch",
    "bubble": "the pipeline depth: the 1F1B fill and drain",
    "optimizer": "the optimizer update's memory traffic (preset die.sram_bandwidth)",
    "optimizer_dram": "DRAM port bandwidth for the optimizer state streamed through the update (preset dram_ports)",
}
# every scored mapping, by (hardware, model, kind, method), for the sensitivity of a failed claim
MAPPINGS: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
MEMORY_ASSUMPTION = {
    "weights": "weights kept on the die (no ZeRO sharding, or no weight streaming)",
    "grads": "gradients kept on the die",
    "optimizer": "Adam state kept on the die (ZeRO stage / optimizer offload)",
    "activations": "saved activations (no or little recomputation, micro-batches in flight)",
    "buffers": "the recomputation working set of one layer",
}


# ---- scoring ------------------------------------------------------------------------------------------
def mapping_summary(m: optimizer.Mapping | None) -> dict[str, Any] | None:
    """The degrees of a mapping, compactly (the full mapping is Mapping.model_dump)."""
    if m is None:
        return None
    return {"name": m.name, "pp": m.pp, "dp": m.dp, "tp_shape": list(m.tp_shape), "micro_batch": m.micro_batch,
            "zero_stage": m.zero_stage, "schedule": m.schedule, "virtual_stages": m.virtual_stages,
            "layer_group": m.layer_group, "offload": list(m.offload), "recomputed_ops": sorted(k for k, c in m.ops.items() if c.recompute)}


def report_fields(rep: optimizer.Report | None) -> dict[str, Any]:
    """The numbers of a Report every row carries (None when there is no mapping)."""
    if rep is None:
        return {"step_time_s": None, "tokens_per_s": None, "mfu": None, "energy_j": None, "fits": None,
                "peak_memory_gb": None, "footprint_gb": None, "memory_capacity_gb": None, "dram_bytes": None,
                "dram_stored_gb": None, "dram_capacity_gb": None, "memory_gb": None, "breakdown_s": None, "energy_parts_j": None}
    return {
        "step_time_s": rep.step_time_s, "tokens_per_s": rep.tokens_per_s, "mfu": rep.mfu, "energy_j": rep.energy_j,
        "fits": rep.fits, "peak_memory_gb": rep.peak_memory_bytes / 1e9,
        # on-die peak + this die's share of what all dies keep in DRAM
        "footprint_gb": (rep.peak_memory_bytes + rep.dram_stored_bytes / rep.devices) / 1e9,
        "memory_capacity_gb": rep.memory_capacity_bytes / 1e9, "dram_bytes": rep.dram_bytes,
        "dram_stored_gb": rep.dram_stored_bytes / 1e9, "dram_capacity_gb": rep.dram_capacity_bytes / 1e9,
        "memory_gb": {k: v / 1e9 for k, v in rep.memory.items()},
        "breakdown_s": {k: rep.breakdown.get(k, 0.0) for k in ADDITIVE if rep.breakdown.get(k, 0.0)},
        "energy_parts_j": dict(rep.energy),
    }


def solve_row(work: models.Workload, hardware: hw.Hardware, space: str, time_limit_s: float = TIME_LIMIT_S,
              threads: int = THREADS, backend: str = BACKEND) -> tuple[dict[str, Any], Any]:
    """Solve `space` and return (row, Solution). The row's gap is the solver's (its step time over its
    own proven bound); a timeout keeps its incumbent, bound and gap."""
    t0 = time.perf_counter()
    sol = optimizer.solve(work, hardware, space=space, backend=backend, objective="time",
                          time_limit_s=time_limit_s, threads=threads)
    wall = time.perf_counter() - t0
    row = {"kind": "full" if space == "full" else "space", "method": space, "status": sol.status,
           "bound_s": sol.bound_s, "gap": sol.gap, "explanation": " ".join(sol.explanation.split()),
           "mapping": mapping_summary(sol.mapping), "points_total": sol.points_total,
           "points_solved": sol.points_solved, "solve_wall_s": wall,
           "solver": {"backend": backend, "time_limit_s": time_limit_s, "threads": threads, "objective": "time"}}
    row.update(report_fields(sol.report))
    row["training_memory_gb"] = training_memory_bytes(sol.mapping, work, hardware) / 1e9 if sol.mapping else None
    if sol.mapping is not None:
        MAPPINGS[(hardware.name, work.model.name, row["kind"], space)] = (sol.mapping, work)
    return row, sol


def heuristic_row(name: str, work: models.Workload, hardware: hw.Hardware, bound_s: float | None,
                  offload: bool | tuple = True, time_limit_s: float = TIME_LIMIT_S, threads: int = THREADS,
                  backend: str = BACKEND, with_same_degrees: bool = True,
                  **kw: Any) -> tuple[dict[str, Any], optimizer.Mapping]:
    """The peer's own mapping (baselines.heuristic, with the DRAM tier as `offload` says), scored by
    evaluate(); gap_vs_full_bound = (step time − bound) / bound, check()'s gap against the full
    space's proven bound `bound_s` (from the same solve check() would run); same_degrees (if
    with_same_degrees): the peer's space solved at the mapping's degrees with the solver settings given."""
    t0 = time.perf_counter()
    m = (baselines.megatron_1d(work, hardware, offload=offload) if name == "megatron-1d" else
         baselines.heuristic(name, work, hardware, offload=offload, **kw))
    rep = optimizer.evaluate(m, work, hardware)
    MAPPINGS[(hardware.name, work.model.name, "heuristic", name)] = (m, work)
    row = {"kind": "heuristic", "method": name, "status": "fixed", "mapping": mapping_summary(m),
           "offload_rule": "least" if offload is True else list(offload or ()),
           "gap_vs_full_bound": (rep.step_time_s - bound_s) / bound_s if bound_s else None,
           "heuristic_wall_s": time.perf_counter() - t0}
    row.update(report_fields(rep))
    row["training_memory_gb"] = training_memory_bytes(m, work, hardware) / 1e9
    if not with_same_degrees:
        return row, m
    # the heuristic's own degrees with the inner choices of the peer's space free: can they fit?
    same = optimizer.solve(work, hardware, space=same_degrees(m, get_space(name)), backend=backend,
                           objective="time", time_limit_s=time_limit_s, threads=threads)
    row["same_degrees"] = {"status": same.status,
                           "step_time_s": same.report.step_time_s if same.report is not None else None,
                           "explanation": " ".join(same.explanation.split())}
    return row, m


def run_case(work: models.Workload, hardware: hw.Hardware, peers: Iterable[str] = PEERS,
             time_limit_s: float = TIME_LIMIT_S, threads: int = THREADS, backend: str = BACKEND,
             label: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of one (model, hardware): the full-space optimum, each peer's space optimum and each peer's
    heuristic, each with ratios against the full optimum."""
    label = dict(label or {})
    label.update(model=work.model.name, hardware=hardware.name, dies=hardware.num_dies,
                 params_b=models.parameter_count(work.model) / 1e9, seq_len=work.seq_len,
                 global_batch=work.global_batch, tokens_per_step=work.tokens)
    full, sol = solve_row(work, hardware, "full", time_limit_s, threads, backend)
    rows = [full]
    for peer in peers:
        rows.append(solve_row(work, hardware, peer, time_limit_s, threads, backend)[0])
        rows.append(heuristic_row(peer, work, hardware, sol.bound_s, time_limit_s=time_limit_s, threads=threads,
                                  backend=backend)[0])
    for r in rows:
        r.update(label)
        r.update(ratios(full, r))
        if r["kind"] == "heuristic" and r.get("same_degrees", {}).get("step_time_s") and full.get("step_time_s"):
            r["same_degrees"]["speedup_of_full"] = r["same_degrees"]["step_time_s"] / full["step_time_s"]
    for r in rows:
        if r["kind"] == "space":
            r["full_le_space"] = full_le_space(full, r)
    return rows


def full_le_space(full: dict[str, Any], space: dict[str, Any]) -> bool | None:
    """Whether the full space's optimum is proven no slower than a restricted space's (which it
    contains): True when the full space's mapping is no slower than the restricted space's proven
    bound (its optimum, when solved), or when the restricted space is proven infeasible and the
    full space found a mapping; False when the full space's bound exceeds the restricted space's
    mapping (impossible for a subset: a bug); else None (not proven either way)."""
    f_step, f_bound = full.get("step_time_s"), full.get("bound_s")
    s_step, s_bound = space.get("step_time_s"), space.get("bound_s")
    if space["status"] == "infeasible":
        return True if f_step is not None else None
    if f_step is not None and s_bound is not None and f_step <= s_bound * (1 + REL):
        return True
    if f_bound is not None and s_step is not None and f_bound > s_step * (1 + REL):
        return False
    return None


def ratios(full: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    """The full optimum against a row: its speedup (this row's step time / the optimum's), the same
    at the proven bound (what the speedup is at most), and memory (this row / the optimum's): on the
    claims' basis (memory_ratio: training state + activations per die, training_memory_bytes), the
    on-die peak and the footprint. Only when both mappings fit: one that does not is never scored."""
    out: dict[str, Any] = {"speedup_of_full": None, "speedup_of_full_at_bound": None,
                           "memory_ratio": None, "on_die_ratio": None, "footprint_ratio": None}
    if r.get("step_time_s") and full.get("step_time_s") and r.get("fits") and full.get("fits"):
        out["speedup_of_full"] = r["step_time_s"] / full["step_time_s"]
        if full.get("bound_s"):
            out["speedup_of_full_at_bound"] = r["step_time_s"] / full["bound_s"]
        out["memory_ratio"] = r["training_memory_gb"] / full["training_memory_gb"]
        out["on_die_ratio"] = r["peak_memory_gb"] / full["peak_memory_gb"]
        out["footprint_ratio"] = r["footprint_gb"] / full["footprint_gb"]
    return out


def geomean(xs: Iterable[float | None]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


# ---- claims ---------------------------------------------------------------------------------------------
def pick(rows: list[dict[str, Any]], model: str, kind: str, method: str) -> dict[str, Any] | None:
    for r in rows:
        if r["model"] == model and r["kind"] == kind and r["method"] == method:
            return r
    return None


def basis_for(rows: list[dict[str, Any]], peer: str, models_: list[str], memory_full_recompute: bool = False) -> str:
    """'solver-in-space' if the peer's space solve found a mapping for every model, else 'heuristic'."""
    if memory_full_recompute:
        return "heuristic"
    ok = all((r := pick(rows, m, "space", peer)) is not None and r["step_time_s"] is not None for m in models_)
    return "solver-in-space" if ok else "heuristic"


def misfit(r: dict[str, Any]) -> str:
    """Why a row's mapping does not fit: its on-die peak against the SRAM, its DRAM bytes against the ports'."""
    return (f"{r['peak_memory_gb']:.3g} GB on its most loaded die against {r['memory_capacity_gb']:.3g} GB with "
            f"{','.join(r['mapping']['offload']) or 'nothing'} in DRAM, which holds {r['dram_stored_gb']:.4g} of "
            f"{r['dram_capacity_gb']:.4g} GB")


def drivers(full: dict[str, Any], base: dict[str, Any], memory: bool, ratio: float | None = None,
            paper: float | None = None, ref: str = "the optimum", fits_note: bool = True) -> str:
    """Which assumption drives a ratio: the terms of the step (or the memory classes) that differ most
    between the peer's mapping and the optimum, whether the peer's mapping fits, and, for a speedup far
    below the paper's, how much of each step is compute (which no mapping choice removes)."""
    notes = []
    if fits_note and base.get("fits") is False:
        notes.append(f"{base['method']} ({base['kind']}) does not fit: {misfit(base)}; it is not scored")
    if memory:
        a, b = full.get("memory_gb") or {}, base.get("memory_gb") or {}
        diff = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
        for key in sorted(diff, key=lambda k: (-abs(diff[k]), k))[:2]:
            what = MEMORY_ASSUMPTION.get(key, key)
            if key in base["mapping"]["offload"]:
                what = (f"{key} live in DRAM; what stays on the die is the largest operator's share "
                        f"(cost.offload_working_bytes), large when an operator is replicated on the die")
            notes.append(f"memory term {key}: {b.get(key, 0.0):.3g} GB vs {ref}'s {a.get(key, 0.0):.3g} GB ({what})")
        notes.append(f"in DRAM: {ref} {','.join(full['mapping']['offload']) or 'nothing'}, peer "
                     f"{','.join(base['mapping']['offload']) or 'nothing'}")
        return "; ".join(notes)
    a, b = full.get("breakdown_s") or {}, base.get("breakdown_s") or {}
    diff = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
    for key in sorted(diff, key=lambda k: (-abs(diff[k]), k))[:2]:
        if abs(diff[key]) < 0.01 * base["step_time_s"]:
            continue
        notes.append(f"step term {key}: {b.get(key, 0.0):.4g} s ({100 * b.get(key, 0.0) / base['step_time_s']:.0f}% "
                     f"of the peer's step) vs {ref}'s {a.get(key, 0.0):.4g} s -- {TERM_ASSUMPTION.get(key, key)}")
    cf = (a.get("compute", 0.0) + a.get("recompute", 0.0)) / full["step_time_s"]
    cb = (b.get("compute", 0.0) + b.get("recompute", 0.0)) / base["step_time_s"]
    if ratio is not None and paper is not None and ratio < paper / OFF_BY and min(cf, cb) >= COMPUTE_BOUND:
        notes.append(f"compute is {100 * cf:.0f}% of {ref}'s step and {100 * cb:.0f}% of the peer's: with this "
                     f"preset's die-to-die links and DRAM ports (assumptions) communication and offload cost little, "
                     f"so the peer's mapping cannot lose much more than its extra compute")
    return "; ".join(notes)


def make_claims(rows: list[dict[str, Any]], hardware: str = CLAIM_HARDWARE) -> tuple[list[dict], dict[str, Any]]:
    """The six claims (geomean over the models on `hardware`) and, per claim, its basis, the per-model
    ratios on both bases and, where it is more than 2x off the paper, the assumptions driving it."""
    rows = [r for r in rows if r["hardware"] == hardware]
    models_ = list(dict.fromkeys(r["model"] for r in rows))
    out, info = [], {}
    for name in CLAIMS:
        peer = CLAIM_PEER[name]
        memory = name.startswith("memory")
        field = "memory_ratio" if memory else "speedup_of_full"
        basis = basis_for(rows, peer, models_, name == "memory_vs_megatron_full_recompute")
        per_model, by_basis, why = {}, {}, {}
        for kind, tag in (("space", "solver-in-space"), ("heuristic", "heuristic")):
            vals = {m: (pick(rows, m, kind, peer) or {}).get(field) for m in models_}
            by_basis[tag] = {"geomean": geomean(vals.values()), "per_model": vals}
        per_model = by_basis[basis]["per_model"]
        ours = by_basis[basis]["geomean"]
        paper = PAPER[name]
        kind = "space" if basis == "solver-in-space" else "heuristic"
        for m in models_:
            v, base = per_model.get(m), pick(rows, m, kind, peer) or {}
            if v is not None and (v > OFF_BY * paper or v < paper / OFF_BY):
                why[m] = drivers(pick(rows, m, "full", "full"), base, memory, v, paper)
            elif v is None and base.get("fits") is False:
                why[m] = drivers(pick(rows, m, "full", "full"), base, False).split("; ")[0]
        fits = {m: (pick(rows, m, kind, peer) or {}).get("fits") for m in models_}
        out.append(claim(name, paper, ours, "ratio"))
        foot = None
        if memory:  # the other bases: footprint (on-die peak + the die's DRAM share) and the on-die peak
            fv = {m: (pick(rows, m, kind, peer) or {}).get("footprint_ratio") for m in models_}
            ov = {m: (pick(rows, m, kind, peer) or {}).get("on_die_ratio") for m in models_}
            foot = {"geomean": geomean(fv.values()), "per_model": fv,
                    "on_die_geomean": geomean(ov.values()), "on_die_per_model": ov}
        info[name] = {"basis": basis, "peer": peer, "measure": "training state + activations per die, nothing "
                      "in DRAM (peer_fit.training_memory_bytes)" if memory
                      else "step time (= tokens/s ratio)", "per_model": per_model, "peer_fits": fits,
                      "footprint": foot,
                      "by_basis": by_basis, "off_by_more_than_2x": bool(ours is None or ours > OFF_BY * paper
                                                                        or ours < paper / OFF_BY),
                      "drivers": why}
    return out, info


# the acceptance band per claim: (low, high); a claim outside it prints its sensitivity
TARGET = {"speedup_vs_accpar": (1.2, None), "speedup_vs_deepspeed": (1.2, None), "speedup_vs_megatron": (1.05, None),
          "memory_reduction_vs_accpar": (1.2, 7.2), "memory_reduction_vs_deepspeed": (1.2, 7.2),
          "memory_vs_megatron_full_recompute": (0.5, 2.0)}


def in_band(name: str, v: float | None) -> bool:
    lo, hi = TARGET[name]
    return v is not None and v >= lo and (hi is None or v <= hi)


def claim_sensitivity(rows: list[dict[str, Any]], info: dict[str, Any], hardware: str = CLAIM_HARDWARE) -> dict:
    """Per claim outside its TARGET band, per model: a peer mapping that does not fit -> the SRAM per
    die at which the peer's own rule fits (sram_to_fit) and the ratio there against the optimum's
    mapping held fixed (a speed-up still short of the paper's there: the link or DRAM-port slowdown on
    that machine that reaches it); a speed-up that fits but falls short of the paper's -> the link or
    DRAM-port slowdown (both mappings fixed) that reaches it; a memory ratio -> no bandwidth moves it."""
    out = {}
    for name, i in info.items():
        if in_band(name, i["by_basis"][i["basis"]]["geomean"]):
            continue
        peer, memory, per = i["peer"], name.startswith("memory"), {}
        kind = "space" if i["basis"] == "solver-in-space" else "heuristic"
        for m, v in i["per_model"].items():
            full, base = MAPPINGS.get((hardware, m, "full", "full")), MAPPINGS.get((hardware, m, kind, peer))
            row = pick([r for r in rows if r["hardware"] == hardware], m, kind, peer) or {}
            s: dict[str, Any] = {}
            if base is not None and row.get("fits") is False and kind == "heuristic":
                work = base[1]
                s["who"] = f"{peer} ({kind})"
                s["sram"] = sram_to_fit(lambda h: baselines.heuristic(peer, work, h, offload=True), work, hardware,
                                        row["peak_memory_gb"] * 1e9)
                if s["sram"] and full is not None:  # the optimum's mapping held fixed on the larger machine
                    mach = machine_with(hardware, sram=s["sram"]["sram_bytes"],
                                        dram_capacity=s["sram"]["dram_capacity_factor"])
                    peer_m = baselines.heuristic(peer, work, mach, offload=True)
                    s["ratio_at_sram"] = (training_memory_bytes(peer_m, work, mach) /
                                          training_memory_bytes(full[0], work, mach) if memory else
                                          s["sram"]["step_time_s"] / optimizer.evaluate(full[0], work, mach).step_time_s)
                    if not memory and s["ratio_at_sram"] < PAPER[name]:  # and then the bandwidths
                        s["bandwidth"] = bandwidth_to_reach(full[0], peer_m, work, hardware, PAPER[name],
                                                            sram=s["sram"]["sram_bytes"],
                                                            dram_capacity=s["sram"]["dram_capacity_factor"])
            elif v is not None and not memory and full is not None and base is not None:
                s["bandwidth"] = bandwidth_to_reach(full[0], base[0], base[1], hardware, PAPER[name])
            elif memory and v is not None:
                s["note"] = "memory per die of fixed mappings does not depend on any bandwidth; it is set by the mappings"
            if s:
                per[m] = s
        out[name] = {"per_model": per, "statement": statement(name, PAPER[name], per)}
    return out


def standing(rows: list[dict[str, Any]], hardware: str = CLAIM_HARDWARE) -> dict[str, Any]:
    """How far behind the optimum each peer's strategy space is when its mapping must fit: per peer, the
    models for which its space holds no mapping that fits (proven infeasible: infinitely behind) and
    the geomean speedup of the optimum over its space's best on the others. Peers rank by the first,
    then the second ("further behind" = larger); a space stopped by the clock without a mapping is
    unknown (None)."""
    rows = [r for r in rows if r["hardware"] == hardware]
    models_ = list(dict.fromkeys(r["model"] for r in rows))
    out: dict[str, Any] = {}
    for peer in PEERS:
        space = {m: pick(rows, m, "space", peer) or {} for m in models_}
        unknown = [m for m, r in space.items() if r.get("status") != "infeasible" and r.get("step_time_s") is None]
        no_fit = sorted(m for m, r in space.items() if r.get("status") == "infeasible")
        fits = {m: r["speedup_of_full"] for m, r in space.items() if r.get("speedup_of_full") is not None}
        out[peer] = {"models_without_a_fitting_mapping": no_fit, "speedup_where_it_fits": fits,
                     "geomean_where_it_fits": geomean(fits.values()), "unknown": sorted(unknown)}
    return out


def behind_key(s: dict[str, Any]) -> tuple[int, float]:
    """The rank of a peer in standing(): more models without a fitting mapping, then a larger speedup."""
    return len(s["models_without_a_fitting_mapping"]), s["geomean_where_it_fits"] or 0.0


def accpar_and_deepspeed_behind(st: dict[str, Any]) -> bool | None:
    """Whether standing() puts both AccPar and DeepSpeed further behind than Megatron-LM."""
    if any(st[p]["unknown"] for p in PEERS):
        return None
    return min(behind_key(st["accpar"]), behind_key(st["deepspeed"])) > behind_key(st["megatron"])


def ordering_sensitivity(model_names: Iterable[str] = MODELS, link_bandwidths: Iterable[float] = GRID_LINK_BW,
                         dram_bandwidths: Iterable[float] = GRID_DRAM_BW) -> dict[str, Any]:
    """The peers' order on the as-if-fit basis across the two bandwidths a wafer's communication and
    offload rest on: tmac-wafer with every link at one bandwidth and every DRAM port at another (B/s),
    each peer's heuristic (offload=True) scored by evaluate(). Per model and point: each peer's step
    time over Megatron-LM's (> 1: further behind than Megatron-LM). No solve: the optimum is the same
    denominator for every peer, so the order does not need it."""
    raw = strip_sources(raw_preset(CLAIM_HARDWARE))
    points, holds = [], 0
    for name in model_names:
        work = models.Workload(model=models.load(name), global_batch=GLOBAL_BATCH)
        for link in link_bandwidths:
            for dram in dram_bandwidths:
                data = copy.deepcopy(raw)
                for port in data["dram_ports"]:
                    port["bandwidth"] = dram
                machine = build_hardware(data, link_bandwidth=link)
                reps = {p: optimizer.evaluate(baselines.heuristic(p, work, machine, offload=True), work, machine)
                        for p in PEERS}
                step = {p: r.step_time_s for p, r in reps.items()}
                fit = all(r.fits for r in reps.values())  # a mapping that does not fit is not scored
                rel = {p: step[p] / step["megatron"] if fit else None for p in ("accpar", "deepspeed")}
                ok = min(rel.values()) > 1 if fit else None
                holds += bool(ok)
                points.append({"model": name, "link_bandwidth": link, "dram_port_bandwidth": dram,
                               "accpar_over_megatron": rel["accpar"], "deepspeed_over_megatron": rel["deepspeed"],
                               "paper_order": ok})
    return {"basis": "heuristic, only where every peer's mapping fits", "hardware": CLAIM_HARDWARE,
            "link_bandwidths": list(link_bandwidths), "dram_port_bandwidths": list(dram_bandwidths),
            "points": points, "points_with_paper_order": holds, "points_total": len(points)}


def acceptance(rows: list[dict[str, Any]], info: dict[str, Any], hardware: str = CLAIM_HARDWARE) -> dict[str, Any]:
    """The directions DESIGN.md asks for, measured: the optimum beats each peer (on each claim's basis),
    AccPar and DeepSpeed furthest behind, TMAC-style memory below AccPar's and DeepSpeed's."""
    sp = {p: info[f"speedup_vs_{p}"] for p in PEERS}
    g = {p: sp[p]["by_basis"][sp[p]["basis"]]["geomean"] for p in PEERS}
    def above_1(per_model: dict[str, float | None]) -> bool | None:  # None: no model's peer mapping fits
        vals = [v for v in per_model.values() if v is not None]
        return all(v > 1 for v in vals) if vals else None

    beats = {p: above_1(sp[p]["per_model"]) for p in PEERS}
    mem = {p: info[f"memory_reduction_vs_{p}"] for p in ("accpar", "deepspeed")}
    mem_lower = {p: above_1(mem[p]["per_model"]) for p in mem}
    full_rows = [r for r in rows if r["hardware"] == hardware and r["kind"] == "full"]
    mm = info["memory_vs_megatron_full_recompute"]

    def about_equal(v: float | None) -> bool | None:  # "about equal": within 2x either way
        return None if v is None else 1 / OFF_BY <= v <= OFF_BY

    return {
        "memory_about_megatron_full_recompute": {
            "on_die_peak": about_equal(mm["by_basis"][mm["basis"]]["geomean"]),
            "footprint": about_equal((mm["footprint"] or {}).get("geomean"))},
        "full_beats_megatron": beats["megatron"], "full_beats_deepspeed": beats["deepspeed"],
        "full_beats_accpar": beats["accpar"],
        "accpar_and_deepspeed_furthest_behind": {
            "fits": accpar_and_deepspeed_behind(standing(rows, hardware)),
            "as_if_fit": None if None in g.values() else min(g["accpar"], g["deepspeed"]) > g["megatron"]},
        "memory_below_accpar": mem_lower["accpar"], "memory_below_deepspeed": mem_lower["deepspeed"],
        "full_space_solves": {r["model"]: {"status": r["status"], "gap": r["gap"]} for r in full_rows},
        "space_full_le_space": {f"{r['model']}/{r['method']}": r.get("full_le_space") for r in rows
                                if r["hardware"] == hardware and r["kind"] == "space"},
        "heuristic_gap_ge_0_when_fitting": all(r["gap_vs_full_bound"] >= -REL for r in rows
                                               if r["kind"] == "heuristic" and r["fits"]
                                               and r["gap_vs_full_bound"] is not None),
    }


# ---- output ---------------------------------------------------------------------------------------------
def fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def print_rows(rows: list[dict[str, Any]]) -> None:
    head = f"{'hardware':<11} {'model':<11} {'kind':<9} {'method':<9} {'status':<10} {'fits':<5} {'tokens/s':>9} " \
           f"{'step s':>8} {'bound s':>8} {'gap':>7} {'mem GB':>8} {'foot GB':>8} {'speedup':>8}  mapping"
    print(head)
    for r in rows:
        m = r["mapping"] or {}
        desc = (f"pp={m['pp']} dp={m['dp']} tp={m['tp_shape'][0]}x{m['tp_shape'][1]} mb={m['micro_batch']} "
                f"z={m['zero_stage']} dram={','.join(x[0] for x in m['offload']) or '-'}") if m else r["explanation"][:60]
        gap = r["gap"] if r["kind"] != "heuristic" else r["gap_vs_full_bound"]
        print(f"{r['hardware']:<11} {r['model']:<11} {r['kind']:<9} {r['method']:<9} {r['status']:<10} "
              f"{fmt(r['fits']):<5} {fmt(r['tokens_per_s'], '.4g'):>9} {fmt(r['step_time_s'], '.4g'):>8} "
              f"{fmt(r.get('bound_s'), '.4g'):>8} {fmt(gap, '.2%'):>7} {fmt(r['peak_memory_gb']):>8} "
              f"{fmt(r['footprint_gb']):>8} {fmt(r['speedup_of_full'], '.3f'):>8}  {desc}")
    print("kind: full = solve(space='full'); space = solve(space=peer); heuristic = baselines.heuristic(peer, "
          "offload=True). gap: a solve's own (step - bound)/bound; a heuristic's against the full space's bound. "
          "mem = on-die peak of the most loaded die; foot = mem + the die's share of DRAM; speedup = this step time "
          "/ the full optimum's. dram: w=weights g=grads o=optimizer a=activations.")


def print_claims(claims: list[dict], info: dict[str, Any]) -> None:
    print(f"\nClaims (geomean over the models on {CLAIM_HARDWARE}):")
    for c in claims:
        i = info[c["name"]]
        other = "heuristic" if i["basis"] == "solver-in-space" else "solver-in-space"
        print(f"  {c['name']:<36} paper {c['paper']:>4}x  ours {fmt(c['ours'], '.3g'):>7}x  [{i['basis']}]"
              f"  (other basis: {fmt(i['by_basis'][other]['geomean'], '.3g')}x)")
        if i.get("footprint"):
            print(f"      basis: training state + activations per die; other bases: footprint (on-die + DRAM share) "
                  f"{fmt(i['footprint']['geomean'], '.3g')}x, on-die peak {fmt(i['footprint']['on_die_geomean'], '.3g')}x")
        for m, why in i["drivers"].items():
            v = i["per_model"][m]
            print(f"      {m}: " + (f"{v:.3g}x is more than {OFF_BY:.0f}x off: {why}" if v is not None
                                   else f"NOT SCORED, does not fit: {why}"))


def print_standing(stand: dict[str, dict[str, Any]]) -> None:
    print("\nStanding when the mapping must fit (the best of each peer's space; standing()):")
    for h, st in stand.items():
        for p in PEERS:
            s = st[p]
            print(f"  {h:<11} {p:<10} no fitting mapping for: {', '.join(s['models_without_a_fitting_mapping']) or '-':<34}"
                  f" optimum's speedup where it fits: {fmt(s['geomean_where_it_fits'], '.3g')}x "
                  f"{ {m: round(v, 3) for m, v in s['speedup_where_it_fits'].items()} or ''}")
        print(f"  {h:<11} AccPar and DeepSpeed furthest behind: {accpar_and_deepspeed_behind(st)}")


def print_same_degrees(rows: list[dict[str, Any]]) -> None:
    print("\nEach heuristic's own degrees with its space's inner choices free (can they fit?):")
    for r in rows:
        if r["kind"] == "heuristic":
            sd = r["same_degrees"]
            what = (f"{sd['step_time_s']:.4g} s, {sd['speedup_of_full']:.3g}x the optimum" if sd["step_time_s"]
                    else sd["explanation"][:110])
            print(f"  {r['hardware']:<11} {r['model']:<11} {r['method']:<10} {sd['status']:<10} {what}")


def print_sensitivity(sens: dict[str, Any]) -> None:
    print(f"\nThe peers' order where every heuristic fits, over link x DRAM-port bandwidth on {sens['hardware']} "
          f"(cells: AccPar/Megatron-LM, DeepSpeed/Megatron-LM step time; both > 1 is the paper's order):")
    drams = sens["dram_port_bandwidths"]
    print(f"  {'model':<11} {'link TB/s':>9}  " + "  ".join(f"DRAM {d / 1e12:<7.4g}" for d in drams))
    for name in dict.fromkeys(p["model"] for p in sens["points"]):
        for link in sens["link_bandwidths"]:
            cells = [next(p for p in sens["points"] if p["model"] == name and p["link_bandwidth"] == link
                          and p["dram_port_bandwidth"] == d) for d in drams]
            print(f"  {name:<11} {link / 1e12:>9.4g}  " + "  ".join(
                (f"{c['accpar_over_megatron']:.2f}/{c['deepspeed_over_megatron']:.2f}{'*' if c['paper_order'] else ' '}"
                 if c["paper_order"] is not None else f"{'no fit':<10}")
                for c in cells))
    print(f"  the paper's order at {sens['points_with_paper_order']} of {sens['points_total']} points")


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cases = list(dict.fromkeys((r["hardware"], r["model"]) for r in rows))
    handles = []
    series = [("full", "full", "full-space optimum")] + \
             [(k, p, f"{p} ({'best of space' if k == 'space' else 'heuristic'})") for p in PEERS
              for k in ("space", "heuristic")]
    fig, (ax, axm) = plt.subplots(2, 1, figsize=(max(8, 2.2 * len(cases)), 7.5), sharex=True)
    width = 0.8 / len(series)
    colors = plt.get_cmap("tab10").colors
    for j, (kind, method, label) in enumerate(series):
        xs, tput, mem, hatch = [], [], [], []
        for i, (h, mdl) in enumerate(cases):
            r = next((r for r in rows if (r["hardware"], r["model"], r["kind"], r["method"]) == (h, mdl, kind, method)),
                     None)
            xs.append(i + (j - len(series) / 2 + 0.5) * width)
            tput.append(r["tokens_per_s"] if r and r["tokens_per_s"] else 0.0)
            mem.append(r["peak_memory_gb"] if r and r["peak_memory_gb"] else 0.0)
            hatch.append(r is not None and r["fits"] is False)
        color = colors[0] if kind == "full" else colors[1 + PEERS.index(method)]
        for x, t, mm, h in zip(xs, tput, mem, hatch):
            style = dict(color=color, alpha=1.0 if kind != "heuristic" else 0.55, hatch="//" if h else None,
                         edgecolor="black", linewidth=0.4)
            ax.bar(x, t, width, **style)
            axm.bar(x, mm, width, **style)
        handles.append(Patch(facecolor=color, alpha=1.0 if kind != "heuristic" else 0.55, edgecolor="black",
                             linewidth=0.4, label=label))
    handles.append(Patch(facecolor="white", hatch="//", edgecolor="black", label="does not fit (not scored)"))
    ax.set_ylabel("tokens / s")
    ax.set_yscale("log")
    ax.set_title("TMAC comparison: throughput (a missing bar: no mapping found / infeasible)", fontsize=10)
    ax.legend(handles=handles, fontsize=7, ncol=2)
    axm.set_ylabel("peak on-die memory per die (GB)")
    axm.set_yscale("log")
    for h in dict.fromkeys(c[0] for c in cases):
        cap = next(r["memory_capacity_gb"] for r in rows if r["hardware"] == h and r["memory_capacity_gb"])
        idx = [i for i, c in enumerate(cases) if c[0] == h]
        axm.hlines(cap, min(idx) - 0.45, max(idx) + 0.45, colors="red", linestyles=":", label=f"{h} SRAM per die")
    axm.legend(fontsize=7)
    axm.set_xticks(range(len(cases)), [f"{m}\n{h}" for h, m in cases], fontsize=8)
    for a in (ax, axm):
        a.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def settings(hardware: tuple[str, ...]) -> dict[str, Any]:
    return {"hardware": list(hardware), "claim_hardware": CLAIM_HARDWARE, "models": list(MODELS),
            "global_batch": GLOBAL_BATCH, "seq_len": "each model's training context (models presets)",
            "peers": list(PEERS), "heuristic_offload": "least (baselines.heuristic(..., offload=True))",
            "objective": "time"}


def run(hardware: tuple[str, ...] = HARDWARE, model_names: tuple[str, ...] = MODELS,
        time_limit_s: float = TIME_LIMIT_S, threads: int = THREADS) -> list[dict[str, Any]]:
    rows = []
    for h in hardware:
        machine = hw.load(h)
        for name in model_names:
            work = models.Workload(model=models.load(name), global_batch=GLOBAL_BATCH)
            print(f"... {name} on {h}", flush=True)
            rows += run_case(work, machine, time_limit_s=time_limit_s, threads=threads)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-wse2", action="store_true", help="tmac-wafer only")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds per solve")
    ap.add_argument("--no-sensitivity", action="store_true", help="skip the grid of link and DRAM bandwidths")
    args = ap.parse_args(argv)
    hardware = tuple(h for h in HARDWARE if not (args.no_wse2 and h == "wse2"))
    t0 = time.perf_counter()
    rows = run(hardware, time_limit_s=args.time_limit)
    print_rows(rows)
    claims, info = make_claims(rows)
    print_claims(claims, info)
    acc = acceptance(rows, info)
    acc["in_target_band"] = {n: in_band(n, info[n]["by_basis"][info[n]["basis"]]["geomean"]) for n in CLAIMS}
    sens_claims = claim_sensitivity(rows, info)
    print("\nSensitivity of each claim outside its target band (which hardware figure, by how much):")
    for v in sens_claims.values():
        print(f"  {v['statement']}")
    wse2 = None
    if "wse2" in hardware:  # the same six ratios on wse2, beside the claims
        c2, i2 = make_claims(rows, "wse2")
        wse2 = {c["name"]: {"ours": c["ours"], "basis": i2[c["name"]]["basis"],
                            "per_model": i2[c["name"]]["per_model"], "drivers": i2[c["name"]]["drivers"]} for c in c2}
        print("\nThe same ratios on wse2 (not claims):")
        for c in c2:
            print(f"  {c['name']:<36} paper {c['paper']:>4}x  ours {fmt(c['ours'], '.3g'):>7}x  "
                  f"[{i2[c['name']]['basis']}]")
    print("\nAcceptance (measured, see docs/reproduction.md):")
    for k, v in acc.items():
        print(f"  {k}: {v}")
    stand = {h: standing(rows, h) for h in hardware}
    print_standing(stand)
    print_same_degrees(rows)
    sens = ordering_sensitivity() if not args.no_sensitivity else None
    if sens:
        print_sensitivity(sens)
    path = write_result("tmac", rows, claims, extra={
        "source": "Wang et al., 'TMAC: Training-Targeted Mapping and Architecture Co-Exploration for Wafer-Scale "
                  "Chips', Integrated Circuits and Systems 2025, abstract: 3.1x / 2.9x / 1.6x throughput vs AccPar / "
                  "DeepSpeed / Megatron; 3.6x / 3.1x less memory vs AccPar / DeepSpeed, about Megatron's full "
                  "recomputation (paper 1.0 = 'about equal').",
        "solver": {"backend": BACKEND, "time_limit_s": args.time_limit, "threads": THREADS, "objective": "time"},
        "settings": settings(hardware),
        "claim_basis": {k: {kk: v[kk] for kk in ("basis", "peer", "measure", "per_model", "peer_fits",
                                                  "by_basis", "footprint", "off_by_more_than_2x", "drivers")}
                        for k, v in info.items()},
        "acceptance": acc,
        "claim_sensitivity": sens_claims,
        "standing_when_fitting": stand,
        "ordering_sensitivity": sens,
        "wse2": wse2,
        "wall_s": time.perf_counter() - t0,
    })
    png = plot(rows, RESULTS_DIR / "tmac.png")
    print(f"wrote {path.relative_to(HERE.parent)} and {png.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
