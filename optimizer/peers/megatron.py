"""Megatron-LM as a fixed mapping: a given launch config (megatron), the one Megatron users pick
(megatron_heuristic) or 1D tensor parallelism over the whole package, Hecaton's baseline (megatron_1d),
with Megatron's tensor-parallel splits, tile shape and rank order."""

from __future__ import annotations

from typing import Literal

from hw.loader import ConfigError
from hw.schema import Hardware
from hw.topology import usable_tiles
from models.graph import BLOCK_LINEARS, RECOMPUTE_POLICIES, SELECTIVE_RECOMPUTE, build_graph
from models.schema import Workload

from ..model.evaluate import evaluate
from ..model.layout import light_ends_layers
from ..model.mapping import Mapping, OpChoice, StageGroup
from ..model.tables import tables_for
from ..search.space import MEGATRON_SPLITS, MICRO_BATCHES
from .common import (Offload, _check_inputs, _check_offload, _fewest_classes, _fits, _named, squarest,
                     with_least_offload)


def megatron_shape(hw: Hardware, tp: int) -> tuple[int, int]:
    """Megatron keeps tensor parallelism inside a node (a row of the grid) when it can."""
    if hw.cols % tp == 0:
        return (1, tp)
    shape = squarest(tp, hw.rows, hw.cols)
    if shape is None:
        raise ConfigError(f"tp ({tp}) does not tile the {hw.rows}x{hw.cols} grid")
    return shape


# Column-parallel linears: their input gradient is a partial sum all-reduced (reduce-scattered with
# sequence parallelism) in backward, which Megatron-LM runs beside the weight-gradient GEMM
ASYNC_TP_OPS = ("q_proj", "kv_proj", "fc1", "lm_head")


def megatron_ops(work: Workload, tp: int, recompute: str, sequence_parallel: bool,
                 async_tp_comm: bool = False, tp_comm_overlap: bool = False) -> dict[str, OpChoice]:
    """Megatron-LM's 1D tensor parallelism: heads for attention, column/row pairs for the linears,
    vocab-parallel embedding, head and loss; norms, dropouts and residuals replicated or, with
    sequence parallelism, split on the sequence. `async_tp_comm`: the column-parallel linears
    overlap their input-gradient collective with their backward (overlap mode "chunked");
    `tp_comm_overlap`: every TP linear overlaps its collectives with its GEMM, forward and backward."""
    if recompute not in RECOMPUTE_POLICIES:
        raise ConfigError(f"recompute must be one of none, selective, full; got {recompute!r}")
    model = work.model
    t = tp > 1
    seq = ("s", "s") if (sequence_parallel and t) else (None, None)

    def one(dim: str) -> tuple[str | None, str | None]:
        return (dim, dim) if t else (None, None)

    kv = one("g") if model.n_kv_heads % tp == 0 else (None, None)
    # Megatron-LM pads the vocabulary to a multiple of 128·tp; the graph keeps the true size, so a
    # vocabulary tp does not divide stays replicated
    voc = one("v") if model.vocab % tp == 0 else (None, None)
    fixed = {"kv_proj": kv, "embedding": voc, "lm_head": voc, "loss": voc}
    graph = build_graph(model, 1, work.seq_len, flash_attention=work.flash_attention)
    split = {o.name: fixed.get(o.name, one(MEGATRON_SPLITS[o.name]) if o.name in MEGATRON_SPLITS else seq)
             for o in graph.block + graph.pre + graph.post}  # norms, dropouts, residuals: SP or replicated
    block = {o.name for o in graph.block}
    rec = set() if recompute == "none" else (set(SELECTIVE_RECOMPUTE) & block if recompute == "selective" else block)
    overlapped = (set(ASYNC_TP_OPS) if async_tp_comm else set()) | (set(BLOCK_LINEARS) if tp_comm_overlap else set())
    overlapped = overlapped if t else set()
    return {k: OpChoice(split=v, recompute=k in rec, overlap="chunked" if k in overlapped else "sequential")
            for k, v in split.items()}


def megatron_groups(hw: Hardware, pp: int, dp: int, shape: tuple[int, int]) -> tuple[StageGroup, ...]:
    """Megatron's rank order (tensor fastest, then data, then pipeline) on row-major tiles."""
    r, c = shape
    tiles = [(i * r, j * c) for i in range(hw.rows // r) for j in range(hw.cols // c)]
    tiles = [t for t in tiles if all(hw.usable((t[0] + a, t[1] + b)) for a in range(r) for b in range(c))]
    if len(tiles) < pp * dp:
        raise ConfigError(f"pp x dp x tp = {pp * dp * r * c} dies do not fit on {hw.name} "
                          f"({hw.num_dies} usable dies)")
    return tuple(StageGroup(stage=s, replica=d, origin=tiles[s * dp + d]) for s in range(pp) for d in range(dp))


def megatron(work: Workload, hw: Hardware, tp: int = 1, pp: int = 1, dp: int = 1, micro_batch: int = 1,
             recompute: Literal["none", "selective", "full"] = "full", sequence_parallel: bool = False,
             virtual_stages: int = 1, offload: Offload = False, distributed_optimizer: bool = False,
             async_tp_comm: bool = False, tp_comm_overlap: bool = False,
             layers_per_chunk: tuple[int, ...] | None = None) -> Mapping:
    """The fixed Megatron-LM mapping: TP inside a node, PP across nodes, DP over the rest.
    `distributed_optimizer` (--use-distributed-optimizer): Adam states sharded over the
    data-parallel ranks, gradients reduce-scattered and weights all-gathered (ZeRO stage 1 with
    fp32 gradients: 6 + 12/dp bytes per parameter). `async_tp_comm`
    (--async-tensor-model-parallel-allreduce, default in Megatron-LM since late 2021 and always on in
    Megatron-Core): a column-parallel linear's input-gradient all-reduce (reduce-scatter with sequence
    parallelism) runs beside its weight-gradient GEMM. `tp_comm_overlap` (--tp-comm-overlap,
    Transformer Engine's userbuffers): every TP linear's collectives run chunk by chunk beside its
    GEMM, forward and backward (overlap mode "chunked").
    `layers_per_chunk` (--pipeline-model-parallel-layout): the layers of each of the pp x
    virtual_stages model chunks; by default even chunks where pp x virtual_stages divides the layers,
    else the first and last chunk a layer lighter (layout.light_ends_layers: how Llama 3 405B ran 126
    layers on 16 stages) or, if that leaves a chunk empty, the balanced stages split evenly.
    `offload`: see optimizer.baselines (True: the least set of classes in DRAM that fits)."""
    for name, v in (("tp", tp), ("pp", pp), ("dp", dp), ("micro_batch", micro_batch)):
        if v <= 0:
            raise ConfigError(f"{name} must be > 0, got {v}")
    _check_offload(offload, hw)
    shape = megatron_shape(hw, tp)
    L = work.model.layers
    if layers_per_chunk is None and virtual_stages > 1 and L % (pp * virtual_stages):
        layers_per_chunk = light_ends_layers(L, pp * virtual_stages)
    mapping = Mapping(
        pp=pp, dp=dp, layers_per_chunk=layers_per_chunk, tp_shape=shape, micro_batch=micro_batch, zero_stage=1 if distributed_optimizer else 0,
        schedule="interleaved" if virtual_stages > 1 else "1f1b", virtual_stages=virtual_stages,
        ops=megatron_ops(work, tp, recompute, sequence_parallel, async_tp_comm, tp_comm_overlap),
        groups=megatron_groups(hw, pp, dp, shape), fp32_grad_accumulation=True,
        name=f"megatron tp={tp} pp={pp} dp={dp} mb={micro_batch} recompute={recompute}"
             f"{' sp' if sequence_parallel else ''}{' distopt' if distributed_optimizer else ''}",
    )
    if offload is False:
        return mapping
    if offload is True:
        return with_least_offload(mapping, work, hw)
    return _named(mapping.model_copy(update={"offload": tuple(offload)}))


def megatron_heuristic(work: Workload, hw: Hardware, offload: Offload = False) -> Mapping:
    """Megatron-LM's usual launch rule (Narayanan et al., "Efficient Large-Scale Language Model
    Training on GPU Clusters Using Megatron-LM", SC21, Sections 3.3 and 5.4): tensor parallelism
    as wide as a node (here a row of the grid), at most 8, dividing the heads and the ffn; the
    fewest pipeline stages (dividing the layers) with which the model fits; data parallelism over
    the remaining tiles (the largest degree dividing the batch); micro-batch 1 and full activation
    recomputation. If no depth fits, the deepest pipeline is returned (evaluate() says fits=False).
    offload=True: if no depth fits with nothing in DRAM, the depth that fits with the fewest classes
    in DRAM (with_least_offload; ties: the fewest stages); if none, the deepest pipeline with every
    class in DRAM. A tuple: exactly those classes in DRAM at every depth.
    """
    _check_inputs(work, hw)
    _check_offload(offload, hw)
    m = work.model
    tps = [t for t in range(1, min(8, hw.cols) + 1) if hw.cols % t == 0 and m.heads % t == 0 and m.ffn_size % t == 0]
    tp = max(tps)
    shape = megatron_shape(hw, tp)
    tiles = len(usable_tiles(hw, shape))
    fixed = offload if isinstance(offload, (tuple, list)) else False
    configs = []
    for pp in (p for p in range(1, min(m.layers, tiles) + 1) if m.layers % p == 0):
        dp = max(d for d in range(1, tiles // pp + 1) if work.global_batch % d == 0)
        mapping = megatron(work, hw, tp=tp, pp=pp, dp=dp, micro_batch=1, recompute="full", offload=fixed)
        if _fits(mapping, work, hw):
            return mapping
        configs.append(mapping)
    assert configs
    if offload is True:
        best = _fewest_classes(configs, work, hw)
        return best if best is not None else with_least_offload(configs[-1], work, hw)
    return configs[-1]


def megatron_1d(work: Workload, hw: Hardware, offload: Offload = True) -> Mapping:
    """Hecaton's Megatron baseline (Huang et al., arXiv 2407.05784: "the tensor parallelism in
    Megatron"): Megatron-LM's 1D tensor parallelism with one tensor group spanning the whole
    package (tp = rows x cols on the rows x cols tile; no pipeline, no data parallelism) and the
    1F1B order, so weights and gradients kept in DRAM cross the ports once per micro-batch (no
    layer-wise reuse). A key/value projection or vocabulary the tensor degree does not divide
    stays replicated (megatron_ops); an attention op whose heads the key/value groups cannot split
    that far keeps its per-die share by splitting the query sequence on the columns (_valid_1d).
    Among Megatron's recomputation policies and the micro-batches of MICRO_BATCHES dividing the
    batch, the mapping kept fits, then needs the fewest classes in DRAM (offload=True:
    with_least_offload), then has the least step time (if none fits: the least on-die memory;
    evaluate() says fits=False). offload=False or a tuple: nothing / exactly those classes in DRAM."""
    _check_inputs(work, hw)
    _check_offload(offload, hw)
    tp = hw.rows * hw.cols
    if hw.defects:
        raise ConfigError(f"defects: a 1D tensor group over the whole package needs every die; {hw.name} has "
                          f"defective dies {list(hw.defects)} (allowed: none)")
    mbs = [b for b in sorted(MICRO_BATCHES, reverse=True) if work.global_batch % b == 0] or [1]
    best: tuple[tuple, Mapping] | None = None
    for rec in RECOMPUTE_POLICIES:
        for mb in mbs:
            base = _valid_1d(megatron(work, hw, tp=tp, micro_batch=mb, recompute=rec,
                                      offload=offload if isinstance(offload, (tuple, list)) else False), work, hw)
            cand = with_least_offload(base, work, hw) if offload is True and not _fits(base, work, hw) else base
            rep = evaluate(cand, work, hw)
            # one that cannot fit: the least on-die memory (it is not scored)
            key = (not rep.fits, len(cand.offload), rep.step_time_s if rep.fits else rep.peak_memory_bytes)
            if best is None or key < best[0]:
                best = (key, cand.model_copy(update={"name": cand.name.replace("megatron ", "megatron-1d ", 1)}))
    assert best is not None
    return best[1]


def _valid_1d(mapping: Mapping, work: Workload, hw: Hardware) -> Mapping:
    """`mapping` with every op whose 1D split over the whole group is invalid (the attention core of
    a model with fewer key/value heads than dies: its key/value tensor cannot split that far) split
    on the same dim along the rows and the sequence along the columns -- the same 1/(rows x cols)
    of its work per die, the key/value group replicated along a row (assumption: Megatron-LM itself
    requires the key/value groups to divide by the tensor degree)."""
    tb = tables_for(mapping.model_copy(update={"ops": {}}), work, hw)
    ops = dict(mapping.ops)
    for name, ch in mapping.ops.items():
        split = tuple(ch.split)
        if split not in tb.allowed[name] and split[0] is not None and (split[0], "s") in tb.allowed[name]:
            ops[name] = ch.model_copy(update={"split": (split[0], "s")})
    return mapping.model_copy(update={"ops": ops})
