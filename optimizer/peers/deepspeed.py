"""DeepSpeed ZeRO data parallelism as the fixed mapping a DeepSpeed user would pick."""

from __future__ import annotations

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import build_graph
from models.schema import Workload

from ..model.mapping import Mapping, OpChoice
from ..model.tables import default_groups
from ..search.space import MICRO_BATCHES
from .common import Offload, _check_inputs, _check_offload, _fewest_classes, _fits, _named, with_least_offload


def _block_ops(work: Workload) -> list[str]:
    return [o.name for o in build_graph(work.model, 1, work.seq_len, flash_attention=work.flash_attention).block]


def deepspeed(work: Workload, hw: Hardware, zero_stage: int | None = None, micro_batch: int | None = None,
              checkpointing: bool | None = None, offload: Offload = False) -> Mapping:
    """DeepSpeed's ZeRO data parallelism (Rajbhandari et al., "ZeRO: Memory Optimizations Toward
    Training Trillion Parameter Models", SC20; DeepSpeed's configuration guide): every usable die
    holds a full replica of the computation (no tensor split, no pipeline); the data-parallel
    degree is the largest number of dies that divides the global batch. The heuristic a DeepSpeed
    user follows: the lowest ZeRO stage (1, 2, 3) and the largest micro-batch (of
    optimizer.search.space.MICRO_BATCHES dividing the per-replica batch) that fit in die memory, turning
    on activation checkpointing (full recompute of every block) only if nothing fits without it.
    A given zero_stage / micro_batch / checkpointing fixes that choice. If nothing fits, the most
    frugal choice (ZeRO-3, micro-batch 1, checkpointing) is returned and evaluate() says fits=False.
    offload=True (ZeRO-Offload / ZeRO-Infinity): if nothing fits with nothing in DRAM, the choice
    that fits with the fewest classes in DRAM (with_least_offload; ties: the order above); if none,
    the most frugal choice with every class in DRAM. A tuple: exactly those classes.
    """
    _check_inputs(work, hw)
    _check_offload(offload, hw)
    if zero_stage is not None and zero_stage not in (1, 2, 3):
        raise ConfigError(f"zero_stage must be one of 1, 2, 3 (or None: the heuristic picks), got {zero_stage!r}")
    if checkpointing is not None and not isinstance(checkpointing, bool):
        raise ConfigError(f"checkpointing must be true, false or None (the heuristic picks), got {checkpointing!r}")
    B = work.global_batch
    dp = max(d for d in range(1, hw.num_dies + 1) if B % d == 0)  # single dies: any d <= usable dies places
    if micro_batch is not None:
        ok = isinstance(micro_batch, int) and not isinstance(micro_batch, bool) and micro_batch > 0
        if not ok or (B // dp) % micro_batch:
            raise ConfigError(f"micro_batch must be a positive integer dividing the per-replica batch "
                              f"{B // dp} (global_batch {B} / dp {dp}), got {micro_batch!r}")
        mbs = [micro_batch]
    else:
        mbs = [b for b in sorted(MICRO_BATCHES, reverse=True) if (B // dp) % b == 0] or [1]
    stages = [zero_stage] if zero_stage is not None else [1, 2, 3]
    ckpts = [checkpointing] if checkpointing is not None else [False, True]
    full = set(_block_ops(work))
    groups = default_groups(hw, 1, dp, (1, 1))

    fixed = tuple(offload) if isinstance(offload, (tuple, list)) else ()

    def build(z: int, mb: int, ck: bool) -> Mapping:
        return _named(Mapping(dp=dp, micro_batch=mb, zero_stage=z, groups=groups, offload=fixed,
                              ops={k: OpChoice(recompute=True) for k in sorted(full)} if ck else {},
                              name=f"deepspeed zero={z} dp={dp} mb={mb}{' checkpointing' if ck else ''}"))

    order = [(ck, z, mb) for ck in ckpts for z in stages for mb in mbs]
    for ck, z, mb in order:
        mapping = build(z, mb, ck)
        if _fits(mapping, work, hw):
            return mapping
    frugal = build(stages[-1], mbs[-1], ckpts[-1])
    if offload is True:
        best = _fewest_classes((build(z, mb, ck) for ck, z, mb in order), work, hw)
        return best if best is not None else with_least_offload(frugal, work, hw)
    return frugal
