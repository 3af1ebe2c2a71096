"""Peer systems as fixed mappings their own heuristics would pick.

  megatron(...)            a given Megatron-LM launch config; megatron_heuristic() picks one as
                           Megatron users do (Narayanan et al., SC21)
  deepspeed(...)           ZeRO data parallelism (Rajbhandari et al., SC20)
  accpar(...)              AccPar's per-layer partition types by dynamic programming (Song et al., HPCA 2020)
  hecaton(...)             Hecaton's 2D weight-stationary method on the whole grid (Huang et al., arXiv 2407.05784)
  heuristic(name, ...)     any of them by name
  with_least_offload(...)  a mapping with the smallest set of tensor classes in DRAM that makes it fit

Each returns an optimizer.Mapping inside the strategy space of the same name (optimizer.search.space);
a mapping that cannot fit is still returned (the most memory-frugal the heuristic knows) and
evaluate() reports fits=False.

The DRAM tier (`offload`): every heuristic takes `offload`, False (nothing in DRAM; the default,
except for Hecaton, whose method relies on its DRAM chiplets), True (the least set of
Mapping.offload classes that makes the mapping fit, with_least_offload) or a tuple of classes
(exactly those in DRAM). True lets a peer use the DRAM behind the machine's ports the way it can:
DeepSpeed has ZeRO-Offload / ZeRO-Infinity (Ren et al., USENIX ATC 2021; Rajbhandari et al., SC21),
Megatron-LM and AccPar could stream weights as a wafer's weight-streaming mode does. A heuristic
whose own choices depend on memory (Megatron-LM's pipeline depth, DeepSpeed's ZeRO stage,
micro-batch and checkpointing, Hecaton's micro-batch) first looks for a choice that fits with
nothing in DRAM and only then uses the DRAM tier (offloading is the peers' last resort: it adds
port traffic); AccPar's choice ignores memory, so the tier is added to the mapping it picks.

Memory accounting: the Megatron-LM baseline uses Megatron's own (fp32 gradient accumulation
buffer: 18 B/param: 2 weights + 4 grads + 12 Adam); the others use ZeRO's 16 B/param.
"""

from __future__ import annotations

import inspect
from itertools import combinations
from typing import Any, Iterable, Literal, Union

from hw.loader import ConfigError
from hw.schema import Hardware
from hw.topology import usable_tiles
from models.graph import BLOCK_LINEARS, RECOMPUTE_POLICIES, SELECTIVE_RECOMPUTE, build_graph, recompute_set
from models.schema import Workload

from .model import cost
from .model.cost import OFFLOAD_CLASSES
from .model.evaluate import evaluate
from .model.mapping import Mapping, OpChoice, StageGroup
from .model.sharding import Option
from .search.space import LINEARS, MEGATRON_SPLITS, MICRO_BATCHES, get_space, layer_groups
from .model.tables import Tables, default_groups, tables_for

HEURISTICS = ("megatron", "deepspeed", "accpar", "hecaton")
Offload = Union[bool, tuple[str, ...]]  # False: nothing in DRAM; True: the least set that fits; or the classes


def squarest(t: int, rows: int, cols: int) -> tuple[int, int] | None:
    """The most square r×c with r·c = t that tiles a rows×cols grid (fewest rows on ties)."""
    best = None
    for r in range(1, t + 1):
        if t % r:
            continue
        c = t // r
        if rows % r or cols % c:
            continue
        if best is None or abs(r - c) < abs(best[0] - best[1]):
            best = (r, c)
    return best


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
             async_tp_comm: bool = False, tp_comm_overlap: bool = False) -> Mapping:
    """The fixed Megatron-LM mapping: TP inside a node, PP across nodes, DP over the rest.
    `distributed_optimizer` (--use-distributed-optimizer): Adam states sharded over the
    data-parallel ranks, gradients reduce-scattered and weights all-gathered (ZeRO stage 1 with
    fp32 gradients: 6 + 12/dp bytes per parameter). `async_tp_comm`
    (--async-tensor-model-parallel-allreduce, default in Megatron-LM since late 2021 and always on in
    Megatron-Core): a column-parallel linear's input-gradient all-reduce (reduce-scatter with sequence
    parallelism) runs beside its weight-gradient GEMM. `tp_comm_overlap` (--tp-comm-overlap,
    Transformer Engine's userbuffers): every TP linear's collectives run chunk by chunk beside its
    GEMM, forward and backward (overlap mode "chunked").
    `offload`: see the module docstring (True: the least set of classes in DRAM that fits)."""
    for name, v in (("tp", tp), ("pp", pp), ("dp", dp), ("micro_batch", micro_batch)):
        if v <= 0:
            raise ConfigError(f"{name} must be > 0, got {v}")
    _check_offload(offload, hw)
    shape = megatron_shape(hw, tp)
    mapping = Mapping(
        pp=pp, dp=dp, tp_shape=shape, micro_batch=micro_batch, zero_stage=1 if distributed_optimizer else 0,
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


# ---- shared helpers ----------------------------------------------------------------------------
def _check_inputs(work: Workload, hw: Hardware) -> None:
    if not isinstance(work, Workload):
        raise ConfigError(f"work must be a models.Workload, got {type(work).__name__}")
    if not isinstance(hw, Hardware):
        raise ConfigError(f"hw must be an hw.Hardware (hw.load(...)), got {type(hw).__name__}")


def _fits(mapping: Mapping, work: Workload, hw: Hardware) -> bool:
    return evaluate(mapping, work, hw).fits


def _check_offload(offload: Any, hw: Hardware) -> None:
    if isinstance(offload, bool):
        return
    if not isinstance(offload, (tuple, list)) or any(c not in OFFLOAD_CLASSES for c in offload) \
            or len(set(offload)) != len(offload):
        raise ConfigError(f"offload must be true, false or a tuple of distinct classes out of "
                          f"{', '.join(OFFLOAD_CLASSES)}; got {offload!r}")
    if offload and not hw.dram_ports:
        raise ConfigError(f"offload: {hw.name} has no DRAM ports (dram_ports), so no tensor class can live in DRAM")


def _named(mapping: Mapping) -> Mapping:
    """The mapping with ' offload=...' in its name matching its offload classes."""
    base = mapping.name.split(" offload=")[0]
    off = mapping.offload
    return mapping.model_copy(update={"name": base + (f" offload={','.join(off)}" if off else "")})


def offload_sets(hw: Hardware, classes: tuple[str, ...] | None = None) -> list[tuple[str, ...]]:
    """Every subset of `classes` (default: every class the machine's DRAM ports can take,
    cost.OFFLOAD_CLASSES, or none without ports), smallest first, then in OFFLOAD_CLASSES order."""
    if classes is None or not hw.dram_ports:
        classes = OFFLOAD_CLASSES if hw.dram_ports else ()
    classes = tuple(c for c in OFFLOAD_CLASSES if c in classes)
    return [sub for k in range(len(classes) + 1) for sub in combinations(classes, k)]


def with_least_offload(mapping: Mapping, work: Workload, hw: Hardware,
                       classes: tuple[str, ...] | None = None) -> Mapping:
    """`mapping` with the smallest set of Mapping.offload classes (out of `classes`, default every
    class the machine's DRAM ports can take) with which evaluate() says it fits; among the sets of
    that size, the one with the least step time (ties: the first in OFFLOAD_CLASSES order). The
    mapping's own offload is replaced, its name gets ' offload=...'. If no set fits, every class
    goes to DRAM (the least on-die memory; evaluate() says fits=False). Nothing else changes."""
    _check_inputs(work, hw)
    sets = offload_sets(hw, classes)
    every = _named(mapping.model_copy(update={"offload": sets[-1]}))
    frugal = evaluate(every, work, hw)
    # each class in DRAM leaves at most its working piece on the die, so if even every class in
    # DRAM overflows the die, no subset fits (DRAM capacity can only make fewer sets fit)
    if frugal.peak_memory_bytes > frugal.memory_capacity_bytes:
        return every
    best: tuple[int, float, Mapping] | None = None
    for off in sets:
        if best is not None and len(off) > best[0]:
            break
        cand = every if off == sets[-1] else _named(mapping.model_copy(update={"offload": off}))
        rep = frugal if cand is every else evaluate(cand, work, hw)
        if rep.fits and (best is None or rep.step_time_s < best[1]):
            best = (len(off), rep.step_time_s, cand)
    return best[2] if best is not None else every


def _fewest_classes(candidates: Iterable[Mapping], work: Workload, hw: Hardware,
                    classes: tuple[str, ...] | None = None) -> Mapping | None:
    """Of `candidates`, in the heuristic's order of preference, each with its least fitting set of
    classes in DRAM (with_least_offload), the first that needs the fewest classes -- the DRAM tier is
    the last resort, its port traffic slows the step; None if none fits."""
    best: Mapping | None = None
    for cand in candidates:
        m = with_least_offload(cand, work, hw, classes)
        if _fits(m, work, hw) and (best is None or len(m.offload) < len(best.offload)):
            best = m
            if not best.offload:
                break
    return best


def _block_ops(work: Workload) -> list[str]:
    return [o.name for o in build_graph(work.model, 1, work.seq_len, flash_attention=work.flash_attention).block]


def best_options(tb: Tables, allowed: dict[str, list[Option]]) -> dict[str, Option]:
    """Per operator, the options (out of `allowed`) that minimise the step time at the outer point
    of `tb` (one pipeline stage, no recompute, nothing in DRAM), by dynamic programming.

    The cost of a choice is what evaluate() charges: per micro-batch the op's compute and
    collectives and the resharding of every edge into it (x layers inside the block, once for the
    head and loss), per step the gradient all-reduce a data-like split leaves and the
    data-parallel sync and optimizer update of the weights the option keeps on a die. The block
    is a DAG, not a chain (residuals, y1 read by both projections, kv by qk and av): ops are taken
    in graph order and a state is the options of the ops whose outputs are still to be read; the
    option of add2 (the layout of the next layer's input) is fixed in an outer loop. Exact for the
    block and the head; the embedding, whose costs are paid once per step, not per layer, is then
    fitted to the block's input layouts.
    """
    if tb.pp != 1:
        raise ValueError("best_options: one pipeline stage only")
    g, L, m = tb.graph, tb.layers_per_stage[0], tb.m
    slope, _ = tb.dp_sync_rate()
    per_param = slope.time_s + cost.optimizer_update_time(1.0, tb.dp, tb.zero_stage, tb.hw.die)
    order = list(g.block + g.post)
    pos = {o.name: i for i, o in enumerate(order)}
    weight = {"block": L, "wrap": L - 1, "pre": 1, "post": 1}
    edges = list(enumerate(tb.edges))
    into = {o.name: [(i, e.producer) for i, e in edges if e.consumer == o.name and e.where != "pre"]
            for o in g.block + g.pre + g.post}
    pre = [(i, e.consumer) for i, e in edges if e.where == "pre"]
    last: dict[str, int] = {}
    for _, e in edges:
        if e.where != "pre":
            last[e.producer] = max(last.get(e.producer, -1), pos[e.consumer])
    live = [tuple(p for p in last if p != "add2" and pos[p] <= i < last[p]) for i in range(len(order))]

    def op_cost(o, opt: Option) -> float:
        c = tb.option_cost(o, opt)
        return (L if o in g.block else 1) * (m * (c.fwd_s + c.bwd_s + c.fwd_comm.time_s + c.bwd_comm.time_s)
                                             + c.wsync.time_s + c.params * per_param)

    op_s = {o.name: {opt: op_cost(o, opt) for opt in allowed[o.name]} for o in g.block + g.pre + g.post}
    edge_s: dict[tuple, float] = {}

    def edge_cost(i: int, src: Option, dst: Option) -> float:
        if (i, src, dst) not in edge_s:
            e = tb.edges[i]
            ec = tb.edge_cost(e, src, dst)
            edge_s[(i, src, dst)] = m * weight[e.where] * (ec.fwd.time_s * (2 if tb.saved_by(e) else 1)
                                                            + ec.grad.time_s)
        return edge_s[(i, src, dst)]

    best: tuple[float, dict[str, Option]] | None = None
    for a2 in allowed["add2"]:
        states: dict[tuple, float] = {(): 0.0}
        back: list[dict[tuple, tuple[tuple, Option]]] = []
        for i, o in enumerate(order):
            before, step = (live[i - 1] if i else ()), {}
            for key, c0 in states.items():
                known = dict(zip(before, key), add2=a2)
                for opt in ([a2] if o.name == "add2" else allowed[o.name]):
                    c = c0 + op_s[o.name][opt] + sum(edge_cost(j, known[p], opt) for j, p in into[o.name])
                    known[o.name] = opt
                    nk = tuple(known[p] for p in live[i])
                    if nk not in step or c < step[nk][0]:
                        step[nk] = (c, key, opt)
            states = {k: v[0] for k, v in step.items()}
            back.append({k: v[1:] for k, v in step.items()})
        key, total, choice = (), states[()], {}  # nothing is live after the loss
        for i in range(len(order) - 1, -1, -1):
            key, choice[order[i].name] = back[i][key]
        for o in g.pre:  # the embedding, given the layouts its consumers chose
            c, choice[o.name] = min(((op_s[o.name][x] + sum(edge_cost(j, x, choice[cn]) for j, cn in pre), x)
                                     for x in allowed[o.name]), key=lambda t: t[0])
            total += c
        if best is None or total < best[0]:
            best = (total, choice)
    assert best is not None
    return best[1]


def _fixed_point(work: Workload, hw: Hardware, dp: int, shape: tuple[int, int], micro_batch: int,
                 space: str) -> tuple[Mapping, Tables, dict[str, list[Option]]] | None:
    """A one-stage mapping skeleton at (dp, shape, micro-batch), its tables and the space's options."""
    groups = default_groups(hw, 1, dp, shape)
    if groups is None or work.global_batch % (dp * micro_batch):
        return None
    skel = Mapping(dp=dp, tp_shape=shape, micro_batch=micro_batch, groups=groups)
    tb = tables_for(skel, work, hw)
    return skel, tb, get_space(space).allowed_options(tb.graph, shape)


def _ops(choice: dict[str, Option]) -> dict[str, OpChoice]:
    return {k: OpChoice(split=v) for k, v in choice.items()}


# ---- Megatron-LM -----------------------------------------------------------------------------
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


# ---- DeepSpeed ZeRO --------------------------------------------------------------------------
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


# ---- AccPar ----------------------------------------------------------------------------------
def accpar(work: Workload, hw: Hardware, offload: Offload = False) -> Mapping:
    """AccPar (Song et al., "AccPar: Tensor Partitioning for Heterogeneous Deep Learning
    Accelerators", HPCA 2020): the devices are bisected recursively and, at each level, a
    layer-wise dynamic program gives every layer one of three partition types — I (batch),
    II (the reduced dim: partial sums) or III (the output dim) — minimising the communication of
    the partition plus the resharding between consecutive layers (its cost model counts
    computation too). No pipeline, no recomputation, no memory limit in the search.

    Here, on identical dies:
    - all usable dies are used; the top bisection levels, where every layer takes type I, are
      data-parallel replicas (dp); the levels below them form one tensor group of the remaining
      dies (the squarest tile shape of that size the space allows);
    - inside the group an op keeps one type on every level (a Mapping gives an op one split over
      its group, and space "accpar" admits only such 1D splits), so the per-level costs add up to
      the cost of the whole-group collective, which the cost tables compute on the real topology;
    - the dynamic program (best_options) chooses the types of all linears and, among the splits
      the space allows (batch, heads, ffn, vocab), the layouts of the ops between them, minimising
      evaluate()'s step time at each (dp, group, micro-batch); every split of the levels between
      replicas and group, and every micro-batch of MICRO_BATCHES dividing a replica's batch (AccPar
      runs it whole), is tried and the least step time kept.
    AccPar's search has no memory limit, so `offload` does not change its choice: True adds the
    least set of classes in DRAM that makes the chosen mapping fit (with_least_offload; every class
    if none does), a tuple exactly those classes.
    """
    _check_inputs(work, hw)
    _check_offload(offload, hw)
    sp = get_space("accpar")
    by_size: dict[int, tuple[int, int]] = {}
    for r, c in sp.shapes(hw):  # the squarest shape of every group size
        cur = by_size.get(r * c)
        if cur is None or (abs(r - c), r) < (abs(cur[0] - cur[1]), cur[0]):
            by_size[r * c] = (r, c)
    points = [(dp, shape) for t, shape in sorted(by_size.items()) for dp in range(1, hw.num_dies // t + 1)
              if default_groups(hw, 1, dp, shape) is not None]
    most = max(dp * s[0] * s[1] for dp, s in points)
    best: tuple[float, Mapping] | None = None
    for dp, shape in points:
        if dp * shape[0] * shape[1] != most:
            continue
        for mb in sorted(MICRO_BATCHES, reverse=True):  # ties: the larger micro-batch
            pt = _fixed_point(work, hw, dp, shape, mb, "accpar")
            if pt is None:
                continue
            skel, tb, allowed = pt
            mapping = skel.model_copy(update={
                "ops": _ops(best_options(tb, allowed)),
                "name": f"accpar dp={dp} group={shape[0]}x{shape[1]} mb={mb}"})
            t = evaluate(mapping, work, hw).step_time_s
            if best is None or t < best[0]:
                best = (t, mapping)
    if best is None:
        raise ConfigError(f"global_batch ({work.global_batch}): no data-parallel degree of AccPar's "
                          f"bisection of {most} dies on {hw.name} divides it")
    if offload is True:
        return with_least_offload(best[1], work, hw)
    return _named(best[1].model_copy(update={"offload": tuple(offload or ())}))


# ---- Hecaton ---------------------------------------------------------------------------------
def hecaton(work: Workload, hw: Hardware, offload: Offload = True, recompute: str | None = None) -> Mapping:
    """Hecaton (Huang et al., "Hecaton", arXiv 2407.05784): one r×c tensor group spanning every
    die of the grid, every linear (and the embedding) partitioned 2D and weight-stationary (its
    weight split on both grid axes, each die keeping one block; activations move along rows and
    columns, so per-die network traffic falls as the grid grows), every activation spread over
    both axes (never replicated along one); no pipeline, no data parallelism. Which weight dim goes
    on which axis, and which dims the activations between the linears are split on, are chosen to
    minimise the step time (best_options). The DRAM tier is used as Hecaton does (offload=True,
    the default): the tensor classes that do not fit on die live in DRAM — the smallest set of
    Mapping.offload classes with which evaluate() says the mapping fits (with_least_offload, at
    each micro-batch) — and the micro-batch is the largest with that smallest set. If none fits,
    everything goes to DRAM at micro-batch 1 and evaluate() says fits=False. offload=False or a
    tuple: nothing / exactly those classes in DRAM, the largest micro-batch that fits (else
    micro-batch 1). With weights or gradients in DRAM it runs Hecaton's DRAM-saving layer-wise
    schedule (_layerwise).

    recompute: one of Megatron's policies (none, selective, full; models.graph.recompute_set).
    The paper's recomputation setting was not available here (assumption): by default each policy
    is tried and the mapping kept that fits, then has the fewest classes in DRAM, then the least
    step time -- so with ample memory nothing is recomputed, and where the layer-wise schedule's
    group is capped by the activations it holds, recomputing lets the group (and the weight
    traffic it saves) grow.
    """
    _check_inputs(work, hw)
    _check_offload(offload, hw)
    if hw.defects:
        raise ConfigError(f"defects: Hecaton's group spans the whole grid, which needs every die; {hw.name} has "
                          f"defective dies {list(hw.defects)} (allowed: none)")
    if hw.rows < 2 or hw.cols < 2:
        raise ConfigError(f"rows x cols: Hecaton's 2D method needs a grid of at least 2 x 2, {hw.name} is "
                          f"{hw.rows} x {hw.cols}")
    if recompute is not None and recompute not in RECOMPUTE_POLICIES:
        raise ConfigError(f"recompute: {recompute!r} is not a policy; allowed: {', '.join(RECOMPUTE_POLICIES)}")
    cands = [_hecaton(work, hw, offload, pol) for pol in ((recompute,) if recompute else RECOMPUTE_POLICIES)]
    reports = [evaluate(c, work, hw) for c in cands]
    best = min(range(len(cands)), key=lambda i: (not reports[i].fits, len(cands[i].offload), reports[i].step_time_s))
    return cands[best]


def _hecaton(work: Workload, hw: Hardware, offload: Offload, recompute: str) -> Mapping:
    """hecaton() with one recomputation policy."""
    shape = (hw.rows, hw.cols)
    classes = get_space("hecaton").offload_classes(hw)
    mbs = [b for b in sorted(MICRO_BATCHES, reverse=True) if work.global_batch % b == 0]
    skeletons: dict[int, Mapping] = {}
    label = f"hecaton {shape[0]}x{shape[1]}" + (f" recompute={recompute}" if recompute != "none" else "")

    def skeleton(mb: int) -> Mapping:
        if mb not in skeletons:
            skel, tb, allowed = _fixed_point(work, hw, 1, shape, mb, "hecaton")
            for name, opts in allowed.items():
                w = tb.graph.op(name).weight if name in LINEARS + ("embedding",) else None
                keep = [o for o in opts if None not in o and (w is None or (o[0] in w and o[1] in w))]
                allowed[name] = keep or opts
            rec = recompute_set(tb.graph, recompute)
            ops = {k: OpChoice(split=v, recompute=k in rec) for k, v in best_options(tb, allowed).items()}
            skeletons[mb] = skel.model_copy(update={"ops": ops})
        return skeletons[mb]

    def build(mb: int, off: tuple[str, ...]) -> Mapping:
        return _named(skeleton(mb).model_copy(update={"offload": off, "name": f"{label} mb={mb}"}))

    if offload is not True:
        off = tuple(offload or ())
        for mb in mbs:
            mapping = _layerwise(build(mb, off), work, hw, extend=False)
            if _fits(mapping, work, hw):
                return mapping
        return _layerwise(build(mbs[-1], off), work, hw, extend=False)
    # the largest micro-batch first: a smaller one wins only with fewer classes in DRAM
    best = _fewest_classes((build(mb, ()) for mb in mbs), work, hw, classes)
    return _layerwise(best if best is not None else build(mbs[-1], offload_sets(hw, classes)[-1]), work, hw)


def _layerwise(mapping: Mapping, work: Workload, hw: Hardware, extend: bool = True) -> Mapping:
    """Hecaton's DRAM-saving order for a one-stage mapping whose weights or gradients live in DRAM:
    the layer-wise schedule, each layer running a group of micro-batches in turn so its weights and
    gradient move once per group -- the largest group (space.layer_groups) with which the mapping
    still fits. A group holds the activations of all its micro-batches, so with `extend` the
    activations join the DRAM classes when they must. If nothing fits, the largest group whose
    state DRAM holds (the mapping still does not fit on the dies); else unchanged."""
    m = work.global_batch // (mapping.dp * mapping.micro_batch)
    if mapping.pp != 1 or m == 1 or not {"weights", "grads"} & set(mapping.offload):
        return mapping
    sets = [mapping.offload]
    if extend and "activations" not in mapping.offload:
        sets.append(tuple(c for c in OFFLOAD_CLASSES if c in mapping.offload or c == "activations"))
    fallback = None if _fits(mapping, work, hw) else mapping  # a mapping that does not fit anyway
    for off in sets:
        for k in reversed(layer_groups(m)):
            name = f"{mapping.name.split(' offload=')[0]} layerwise k={k}"
            cand = _named(mapping.model_copy(update={"schedule": "layerwise", "layer_group": k, "offload": off,
                                                     "name": name}))
            rep = evaluate(cand, work, hw)
            if rep.fits:
                return cand
            if fallback is mapping and off == sets[-1] and rep.dram_stored_bytes <= rep.dram_capacity_bytes:
                fallback = cand  # the largest group whose activations DRAM still holds
    return fallback or mapping


# ---- by name ---------------------------------------------------------------------------------
def heuristic(name: str, work: Workload, hw: Hardware, **kw: Any) -> Mapping:
    """The fixed mapping peer `name` (one of HEURISTICS) would pick. Keywords go to that function;
    "megatron" without keywords (or with `offload` only) is megatron_heuristic(), with others
    megatron(...). `offload` (every peer): see the module docstring."""
    funcs = {"megatron": megatron, "deepspeed": deepspeed, "accpar": accpar, "hecaton": hecaton}
    if name not in funcs:
        raise ConfigError(f"unknown heuristic {name!r}; allowed: {', '.join(HEURISTICS)}")
    if name == "megatron" and set(kw) <= {"offload"}:
        return megatron_heuristic(work, hw, **kw)
    # `offload` is every peer's (module docstring); the message lists each peer's own options
    allowed = [p for p in inspect.signature(funcs[name]).parameters if p not in ("work", "hw", "offload")]
    for key in kw:
        if key not in allowed and key != "offload":
            raise ConfigError(f"{name}: unknown option {key!r}; allowed: {', '.join(allowed) or 'none'}")
    return funcs[name](work, hw, **kw)
