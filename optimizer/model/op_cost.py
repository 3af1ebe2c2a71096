"""One operator under one partition option on one die of a tensor group: its compute, the
collectives inside it (split reductions, ZeRO-3 weight gathers), the weight-gradient sync a
data-like split leaves, its weights and the bytes of its outputs. Tables caches these per (op, option).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

from hw.topology import ZERO, CommCost
from models.graph import BLOCK_LINEARS, Op

from . import cost, overlap
from .sharding import Option, layout_divisor, output_layout, reduced_split_axes, split_factors, weight_partial_axes

if TYPE_CHECKING:
    from .tables import Tables

STATS_BYTES = 4  # fp32 row statistics of a split norm/softmax/loss


@dataclass(frozen=True)
class OptionCost:
    """One op under one option, per layer and micro-batch on one die (seconds, bytes)."""

    fwd_s: float  # compute forward
    bwd_s: float  # compute backward
    fwd_comm: CommCost  # collectives inside the op (split reductions, ZeRO-3 gathers) = stats + gather
    bwd_comm: CommCost
    flops: float  # forward FLOPs on one die
    mem_bytes: float  # forward bytes through memory on one die (compute: inputs and outputs)
    params: float  # weights on one die
    wsync: CommCost  # per step: all-reduce of a weight gradient left partial by a data-like split
    out_bytes: dict[str, float]  # per output tensor: bytes on one die
    stats: CommCost = ZERO  # the split-reduction all-reduces of one pass (part of fwd_comm/bwd_comm)
    gather: CommCost = ZERO  # ZeRO-3 weight all-gather of one pass (part of fwd_comm/bwd_comm), prefetched
    stats_bytes: float = 0.0  # main-memory bytes one die moves in `stats` (overlap.collective_bytes)
    gather_bytes: float = 0.0  # ... in `gather`
    wsync_bytes: float = 0.0  # ... in `wsync`


def cost_of_option(tables: Tables, op: Op, opt: Option) -> OptionCost:
    """`op` under `opt` on one die of the tables' tensor group."""
    g, hw, shape = tables.graph, tables.hw, tables.shape
    die = hw.die
    dtype = tables.work.dtype
    peak = hw.peak("bf16" if dtype == "fp8" and op.name not in BLOCK_LINEARS else dtype)
    fac = split_factors(opt, shape)
    work_split = 1
    for v in fac.values():
        work_split *= v
    flops = op.flops / work_split
    io = sum(g.tensors[x.tensor].nbytes(g.sizes) for x in op.inputs + op.outputs) / work_split
    wsplit = 1
    for d, k in fac.items():
        if d in op.weight:
            wsplit *= k
    params = op.params / wsplit
    wbytes = params * tables.work.dtype_bytes
    if op.kind in ("matmul", "attention"):
        # result elements on this die: a split of a contracted dim leaves each die the whole
        # (partial) result, so only the output's own dims divide it
        out = sum(g.tensors[x.tensor].numel(g.sizes) / prod(fac.get(d, 1) for d in x.loop) for x in op.outputs)
        fwd = cost.matmul_time(flops, die, peak, out, io + wbytes)
    else:
        fwd = cost.memory_time(io, die)
    bwd = op.backward_factor * fwd
    stats, stats_bytes = _split_reductions(tables, op, opt, fac)
    wsync, wsync_bytes = _weight_gradient_sync(tables, op, opt, wbytes)
    gather, gather_bytes = _zero3_gather(tables, op, params, wbytes)
    fwd_comm = stats + gather
    bwd_comm = fwd_comm
    outs = {}
    for x in op.outputs:
        lay = output_layout(op, opt, x, g.tensors)
        outs[x.tensor] = g.tensors[x.tensor].nbytes(g.sizes) / layout_divisor(lay, shape)
    return OptionCost(fwd, bwd, fwd_comm, bwd_comm, flops, io, params, wsync, outs, stats, gather,
                      stats_bytes, gather_bytes, wsync_bytes)


def _split_reductions(tables: Tables, op: Op, opt: Option, fac: dict[str, int]) -> tuple[CommCost, float]:
    """The all-reduces of the row statistics of one pass over the split reduced dims, and the
    main-memory bytes one die moves in them."""
    g = tables.graph
    stats = ZERO
    stats_bytes = 0.0
    for axis, _k in reduced_split_axes(op, opt, tables.shape):
        rows = 1  # statistics rows this die holds: the non-reduced dims, after their own splits
        for d in op.loop:
            if d not in op.reduced:
                rows *= g.sizes[d] / fac.get(d, 1)
        stats = stats + tables.group_collective(axis, "all_reduce", rows * op.stats * STATS_BYTES)
        stats_bytes += tables.group_traffic(axis, "all_reduce", rows * op.stats * STATS_BYTES)
    return stats, stats_bytes


def _weight_gradient_sync(tables: Tables, op: Op, opt: Option, wbytes: float) -> tuple[CommCost, float]:
    """Per step: the all-reduces of the weight gradient the option leaves partial (wbytes: the
    die's weights), and the main-memory bytes one die moves in them."""
    wsync = ZERO
    wsync_bytes = 0.0
    for axis, _k in weight_partial_axes(op, opt, tables.shape):
        wsync = wsync + tables.group_collective(axis, "all_reduce", wbytes)
        wsync_bytes += tables.group_traffic(axis, "all_reduce", wbytes)
    return wsync, wsync_bytes


def _zero3_gather(tables: Tables, op: Op, params: float, wbytes: float) -> tuple[CommCost, float]:
    """ZeRO-3's all-gather of the die's weights (params, wbytes bytes) for one pass, and the
    main-memory bytes one die moves in it."""
    gather, gather_bytes = ZERO, 0.0
    if tables.zero_stage == 3 and tables.dp > 1 and params:
        if tables.zero3_gather == "per_tensor":  # one all-gather of each parameter tensor
            gather = tables.dp_collective("all_gather", wbytes / op.param_tensors).scaled(op.param_tensors)
        else:
            gather = tables.dp_collective("all_gather", wbytes)  # assembles this die's weight shard
        gather_bytes = overlap.collective_bytes("all_gather", tables.dp, wbytes)
    return gather, gather_bytes
