"""Pure cost functions over plain numbers: compute, memory by ZeRO stage, pipeline, energy.

No solver imports. Formulas and sources are listed in docs/cost-model.md.
"""

from __future__ import annotations

import math

import numpy as np

from hw.schema import Die, Energy

ADAM_STATE_BYTES = 12  # fp32 master weights + two fp32 moments per parameter (ZeRO paper: K = 12)
# Adam update traffic per parameter: read+write fp32 master, m, v (24 B), read grad, write bf16 weight
ADAM_UPDATE_BYTES = 24 + 2 + 2


TILE_SPLITS = (1, 2, 4)  # a GEMM library runs the tile, half or quarter tile that wastes the least


def gemm_efficiency(die: Die, flops_per_die: float, out_elements: float = 0.0) -> float:
    """Fraction of peak a GEMM of `flops_per_die` FLOPs with `out_elements` result elements reaches:
    e · F/(F + F½) · w. The size term rises to e for large GEMMs (0 ≤ F½); w is the wave
    quantization of a GPU: the result is cut into tiles of `gemm_tile_elements` (or a half or a
    quarter of it, whichever wastes least, as a GEMM library picks its kernel), `compute_units` of
    which run at once, so w = tiles / (⌈tiles / units⌉ · units) with tiles = ⌈out / tile⌉ (1 when
    either field is 0 or the shape is not given)."""
    e = die.matmul_efficiency
    if die.gemm_half_size > 0:
        e *= flops_per_die / (flops_per_die + die.gemm_half_size)
    if die.gemm_tile_elements > 0 and die.compute_units > 0 and out_elements > 0:
        e *= max(_wave_share(out_elements, die.gemm_tile_elements // k, die.compute_units) for k in TILE_SPLITS)
    return e


def _wave_share(out_elements: float, tile: int, units: int) -> float:
    """Share of `units` busy over the waves of ⌈out / tile⌉ tiles."""
    tiles = math.ceil(out_elements / tile)
    return tiles / (math.ceil(tiles / units) * units)


def matmul_time(flops_per_die: float, die: Die, peak: float, out_elements: float = 0.0,
                nbytes: float = 0.0) -> float:
    """Seconds for a GEMM of flops_per_die FLOPs on one die with dense peak `peak` FLOP/s, at
    gemm_efficiency; with die.gemm_roofline at least the `nbytes` of its operands and result
    through main memory (memory_time)."""
    if flops_per_die <= 0:
        return 0.0
    t = flops_per_die / (peak * gemm_efficiency(die, flops_per_die, out_elements))
    if die.gemm_roofline and nbytes > 0:
        t = max(t, memory_time(nbytes, die))
    return t


def memory_time(nbytes: float, die: Die) -> float:
    """Seconds to stream nbytes through the die's main memory (memory-bound ops)."""
    return nbytes / die.memory_bandwidth


def zero_state_bytes(params: float, dp: int, stage: int, fp32_grads: bool = False,
                     dtype_bytes: int = 2) -> dict[str, float]:
    """Model-state bytes per device (Rajbhandari et al., ZeRO, SC20, Fig. 1):
    stage 0: (2+2+K)Ψ; 1: 2Ψ + 2Ψ + KΨ/N; 2: 2Ψ + (2+K)Ψ/N; 3: (2+2+K)Ψ/N, K = 12.
    With fp32_grads (Megatron-LM's accounting) gradients take 4 B instead of 2 (18 B/param)."""
    w, g, k = dtype_bytes * params, (4 if fp32_grads else dtype_bytes) * params, ADAM_STATE_BYTES * params
    if stage == 0:
        return {"weights": w, "grads": g, "optimizer": k}
    if stage == 1:
        return {"weights": w, "grads": g, "optimizer": k / dp}
    if stage == 2:
        return {"weights": w, "grads": g / dp, "optimizer": k / dp}
    if stage == 3:
        return {"weights": w / dp, "grads": g / dp, "optimizer": k / dp}
    raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {stage}")


def micro_batches_in_flight(stage, pp: int, m: int, virtual: int = 1, group: int = 1):
    """Micro-batches whose activations stage `stage` holds at its peak under 1F1B: min(pp − stage, m);
    the interleaved schedule holds (1 + (pp − 1)/(pp·v)) times more (Korthikanti et al. 2022); the
    layer-wise schedule (pp = 1) runs the forward of a group of `group` micro-batches before their
    backward, so it holds the whole group. `stage` may be an array of stages (then an array)."""
    if group > 1:
        return float(group)
    base = np.minimum(pp - np.asarray(stage), m) * 1.0
    if virtual > 1:
        base = base * (1 + (pp - 1) / (pp * virtual))
    return float(base) if base.ndim == 0 else base


def pipeline_time(stage_times: list[float], m: int, virtual: int = 1) -> float:
    """Step time of a 1F1B pipeline: the first micro-batch crosses every stage, the other m − 1
    follow at the pace of the slowest: Σ T_s + (m − 1)·max T_s. Interleaving with v chunks per
    stage cuts the fill/drain part v-fold: Σ T_s / v + (m − 1/v)·max T_s."""
    total, slowest = sum(stage_times), max(stage_times)
    return total / virtual + (m - 1 / virtual) * slowest


def optimizer_update_time(params_per_die: float, dp: int, zero_stage: int, die: Die) -> float:
    """Adam update: memory-bound over the parameters this die updates (sharded for ZeRO ≥ 1)."""
    local = params_per_die / dp if zero_stage >= 1 else params_per_die
    return memory_time(local * ADAM_UPDATE_BYTES, die)


OFFLOAD_CLASSES = ("weights", "grads", "optimizer", "activations")


def offload_working_bytes(largest_op_params: float, dp: int, stage: int, fp32_grads: bool = False,
                          dtype_bytes: int = 2) -> dict[str, float]:
    """Bytes per die a model-state class kept in DRAM still needs on the die: weights and gradients
    are streamed op by op (the largest op's share), the Adam state is streamed through the update
    (none). Sharded per ZeRO stage like the state itself."""
    working = zero_state_bytes(largest_op_params, dp, stage, fp32_grads, dtype_bytes)
    working["optimizer"] = 0.0
    return working


def dram_traffic_per_micro_batch(weights: float, grads: float, activations: float, group: int = 1) -> float:
    """DRAM bytes one die moves per micro-batch for the tensor classes it keeps off-die: weights
    are read in forward and again in backward (the recomputation of a layer runs just before its
    backward and shares that read), the gradient accumulator is read and written, and the saved
    activations of the micro-batch are written in forward and read in backward. Under the
    layer-wise schedule (Hecaton's DRAM-saving order, pp = 1) each layer runs a group of `group`
    micro-batches in turn while its weights and gradient sit on the die, so weights and gradients
    move once per group. Arguments: bytes of each class in DRAM (activations: one micro-batch's)."""
    return (2 * weights + 2 * grads) / group + 2 * activations


def dram_traffic_per_step(weights: float, grads: float, optimizer: float) -> float:
    """DRAM bytes one die moves in the optimizer update: the Adam state is read and written, the
    gradients read and the updated weights written back (bytes of each class in DRAM)."""
    return 2 * optimizer + grads + weights


def dram_rates(group: int = 1) -> tuple[dict[str, float], dict[str, float]]:
    """DRAM bytes moved per byte a class keeps in DRAM, per micro-batch and per step, with `group`
    micro-batches per layer-wise group (dram_traffic_* are linear in each class; activations: per
    byte of one micro-batch's saved activations)."""
    per_mb = {"weights": dram_traffic_per_micro_batch(1, 0, 0, group),
              "grads": dram_traffic_per_micro_batch(0, 1, 0, group),
              "optimizer": 0.0,
              "activations": dram_traffic_per_micro_batch(0, 0, 1, group)}
    per_step = {"weights": dram_traffic_per_step(1, 0, 0), "grads": dram_traffic_per_step(0, 1, 0),
                "optimizer": dram_traffic_per_step(0, 0, 1), "activations": 0.0}
    return per_mb, per_step


def energy(flops: float, sram_bytes: float, dram_bytes: float, link_byte_hops: float,
           seconds: float, dies: int, e: Energy) -> dict[str, float]:
    """Joules of one step by source: compute, SRAM/HBM traffic, links, DRAM ports, static power."""
    parts = {
        "compute": flops * e.flop_j,
        "memory": sram_bytes * e.sram_byte_j,
        "links": link_byte_hops * e.link_byte_hop_j,
        "dram": dram_bytes * e.dram_byte_j,
        "static": seconds * dies * e.static_w,
    }
    return parts
