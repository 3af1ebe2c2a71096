"""One pipeline stage's score: the cost of one micro-batch through its layers in the steady state,
and its share of the step after the pipeline (gradient synchronisation, optimizer update), summed
from the cost tables. See docs/cost-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hw.topology import ZERO, CommCost
from models.graph import Op, stored_tensors

from . import cost, overlap
from .mapping import OpChoice
from .sharding import Option
from .tables import OptionCost, Tables


@dataclass
class StageScore:
    time_s: float  # one micro-batch in the steady state (pipeline transfers overlapped)
    parts: dict[str, float]  # seconds per micro-batch summing to time_s: compute, recompute, and the
    # exposed tp_comm (with the exposed ZeRO-3 gathers), pp_comm, dram
    memory: dict[str, float]
    sync_s: float  # per step after the pipeline: exposed dp_comm + optimizer (+ bubble: transfers of fill/drain)
    sync_parts: dict[str, float]
    flops: float  # per die per micro-batch (executed)
    mem_bytes: float  # main-memory bytes of one die per micro-batch: compute and collectives
    byte_hops: float  # per micro-batch, whole stage (all replicas)
    sync_byte_hops: float
    dram: dict[str, float]  # bytes one die keeps in DRAM, per tensor class
    dram_mb_bytes: float  # DRAM traffic of one die per micro-batch
    dram_step_bytes: float  # DRAM traffic of one die in the optimizer update
    fill_s: float = 0.0  # one micro-batch with its pipeline transfers serialized (fill and drain)
    raw: dict = None  # seconds of each communication part run alone: tp_comm, zero_comm, pp_comm, dp_comm
    step_mem_bytes: float = 0.0  # main-memory bytes of one die per step in collectives after the pipeline
    activations_mb: float = 0.0  # bytes of activations one micro-batch saves on one die of the stage


@dataclass
class _StageSums:
    """Running sums of one stage per micro-batch on one die (tp, hops: of one tensor group), added to in
    the order score_stage() visits the block ops, the ZeRO-3 gathers, the edges, the extra ops and the
    pipeline transfers."""

    compute: float = 0.0
    recompute: float = 0.0
    tp: float = 0.0  # seconds of the tensor-group collectives, each run alone
    hops: float = 0.0  # byte-hops of every per-micro-batch collective of one tensor group (link energy)
    delta: float = 0.0  # seconds the overlap modes add to tp (negative: hidden under a GEMM)
    flops: float = 0.0
    mem: float = 0.0
    coll: float = 0.0  # main-memory bytes moved by collectives
    # per layer: ZeRO-3 gathers and the compute they are prefetched under
    zf: float = 0.0
    zb: float = 0.0
    cf: float = 0.0
    cb: float = 0.0
    zero_raw: float = 0.0  # seconds of the ZeRO-3 gathers run alone
    zero_exposed: float = 0.0  # ... left exposed by their prefetch


def score_stage(tables: Tables, ch: dict[str, OpChoice], stage: int, layers: int,
                offload: tuple[str, ...] = ()) -> StageScore:
    """One stage's score. The transfers of the pipeline's fill and drain ("bubble" in sync_parts)
    need every stage: finish_stages() adds them."""
    g = tables.graph
    first, last = stage == 0, stage == tables.pp - 1
    opt = {k: v.split for k, v in ch.items()}
    rec = {k for k, v in ch.items() if v.recompute}
    sc, sm = tables.overlap_params.compute_slowdown, tables.overlap_params.comm_slowdown
    extra_ops = (g.pre if first else ()) + (g.post if last else ())
    ocs = {o.name: tables.option_cost(o, opt[o.name]) for o in g.block + extra_ops}
    sums = _StageSums()
    _add_block_ops(sums, g.block, ocs, rec, layers)
    _add_zero3_gathers(sums, tables, layers, sc, sm)
    _add_edges(sums, tables, ch, rec, first, last, layers)
    _add_extra_ops(sums, extra_ops, ocs)
    pp = _add_pipeline_transfers(sums, tables, opt["add2"], first, last)
    # tp_comm: tensor-group collectives as the overlap modes leave them, and the exposed ZeRO-3 gathers
    parts = {"compute": sums.compute, "recompute": sums.recompute,
             "tp_comm": sums.tp + sums.delta + sums.zero_exposed}
    raw = {"tp_comm": sums.tp, "zero_comm": sums.zero_raw, "zero_comm_exposed": sums.zero_exposed, "pp_comm": pp}

    params, working = _stage_params(tables, ocs, opt, layers, extra_ops, last)
    memory, dram, act_mb = _stage_memory(tables, opt, rec, stage, layers, params, working, offload)
    bw = tables.dram_bandwidth
    mb_traffic = cost.dram_traffic_per_micro_batch(dram["weights"], dram["grads"],
                                                   act_mb if "activations" in offload else 0.0, tables.layer_group)
    step_traffic = cost.dram_traffic_per_step(dram["weights"], dram["grads"], dram["optimizer"])
    if mb_traffic or step_traffic:
        parts["dram"] = mb_traffic / bw
    # pipeline transfers run beside the rest of the stage's work in the steady state (1F1B); the
    # fill and drain see them whole (finish_stages)
    busy = sum(parts.values())
    parts["pp_comm"] = pp if tables.pp_transfer == "blocking" else overlap.exposed_time(busy, pp, sc, sm)
    time_s = busy + parts["pp_comm"]

    wsync, wsync_bytes = _weight_gradient_syncs(g.block, extra_ops, ocs, layers)
    dp = tables.dp_sync(params)
    # the gradient reduction runs in buckets beside the backward of the last micro-batch
    dp_exposed = overlap.bucketed_exposed(dp.time_s, sums.cb, layers, sc, sm)
    raw["dp_comm"] = dp.time_s + wsync.time_s
    upd = cost.optimizer_update_time(params, tables.dp, tables.zero_stage, tables.hw.die)
    sync_parts = {"dp_comm": dp_exposed + wsync.time_s, "optimizer": upd}
    if step_traffic:
        sync_parts["optimizer_dram"] = step_traffic / bw
    # group collectives are costed per tensor group (dp of them in a stage); dp rings span all stages
    return StageScore(time_s, parts, memory, sum(sync_parts.values()), sync_parts,
                      sums.flops, sums.mem + sums.coll, sums.hops * tables.dp,
                      dp.byte_hops / tables.pp + wsync.byte_hops * tables.dp,
                      dram, mb_traffic, step_traffic, busy + pp, raw,
                      tables.dp_sync_bytes(params) + wsync_bytes, act_mb)


def score_stages(tables: Tables, ch: dict[str, OpChoice], offload: tuple[str, ...] = ()) -> list[StageScore]:
    """Every stage's score (index = stage), each kind of stage (its layers, first?, last?) scored once:
    stages of one kind differ only in the micro-batches in flight whose activations they keep."""
    kinds: dict[tuple, tuple[int, StageScore]] = {}
    out = []
    for s, L in enumerate(tables.layers_per_stage):
        key = (L, s == 0, s == tables.pp - 1)
        if key not in kinds:
            kinds[key] = (s, score_stage(tables, ch, s, L, offload))
        first, score = kinds[key]
        out.append(score if s == first else _in_flight_at(score, tables, s, offload))
    return out


def _in_flight_at(score: StageScore, tables: Tables, stage: int, offload: tuple[str, ...]) -> StageScore:
    """`score` (of a stage of the same kind) for `stage`: its activations those of the micro-batches
    in flight there (as _stage_memory computes them), every dict its own."""
    act = score.activations_mb * tables.in_flight(stage)
    memory, dram = dict(score.memory), dict(score.dram)
    if "activations" in offload:
        dram["activations"] = act
    else:
        memory["activations"] = act
    return replace(score, parts=dict(score.parts), memory=memory, sync_parts=dict(score.sync_parts), dram=dram,
                   raw=dict(score.raw) if score.raw is not None else None)


def _add_block_ops(sums: _StageSums, block: tuple[Op, ...], ocs: dict[str, OptionCost], rec: set[str],
                   layers: int) -> None:
    """The block ops of `layers` layers: forward, backward, recomputation and their collectives."""
    for o in block:
        oc = ocs[o.name]
        r = o.name in rec
        sums.compute += layers * (oc.fwd_s + oc.bwd_s)
        sums.tp += layers * oc.stats.time_s * (2 + r)
        sums.hops += layers * (oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops + r * oc.fwd_comm.byte_hops)
        sums.flops += layers * oc.flops * (1 + o.backward_factor + r)
        sums.mem += layers * oc.mem_bytes * (1 + o.backward_factor + r)
        sums.coll += layers * (oc.stats_bytes + oc.gather_bytes) * (2 + r)
        sums.zf += oc.gather.time_s
        sums.zb += oc.gather.time_s * (1 + r)
        sums.cf += oc.fwd_s
        sums.cb += oc.bwd_s + r * oc.fwd_s
        if r:
            sums.recompute += layers * oc.fwd_s


def _add_zero3_gathers(sums: _StageSums, tables: Tables, layers: int, sc: float, sm: float) -> None:
    """The block's ZeRO-3 weight gathers, run alone and as their prefetch leaves them exposed
    (sc, sm: the overlap's compute and communication slowdowns)."""
    # ZeRO-3: a layer's weights are gathered beside the previous layer's compute (prefetch)
    sums.zero_raw = layers * (sums.zf + sums.zb)
    if tables.zero3_gather == "per_tensor":  # each op waits for its own gathers
        sums.zero_exposed = sums.zero_raw
    else:
        sums.zero_exposed = layers * (overlap.exposed_time(sums.cf, sums.zf, sc, sm) +
                                      overlap.exposed_time(sums.cb, sums.zb, sc, sm))


def _add_edges(sums: _StageSums, tables: Tables, ch: dict[str, OpChoice], rec: set[str], first: bool, last: bool,
               layers: int) -> None:
    """The layout conversions between neighbouring ops, and what the overlap modes change in them."""
    uses = {"block": layers, "wrap": layers - 1 if first else layers,  # per micro-batch, by edge group
            "pre": 1 if first else 0, "post": 1 if last else 0}
    for e in tables.edges:
        n = uses[e.where]
        if n == 0:
            continue
        o_p, o_c = ch[e.producer].split, ch[e.consumer].split
        ec = tables.edge_cost(e, o_p, o_c)
        again = tables.saved_by(e)
        # the saved input is converted again for the backward, or for the consumer's recomputation
        k = 2 if (again or e.consumer in rec) else 1
        sums.tp += n * (k * ec.fwd.time_s + ec.grad.time_s)
        sums.hops += n * (k * ec.fwd.byte_hops + ec.grad.byte_hops)
        sums.coll += n * (k * ec.fwd_conv.mem_bytes + ec.grad_conv.mem_bytes)
        mp, mc = ch[e.producer].overlap, ch[e.consumer].overlap
        if mp != "sequential" or mc != "sequential":
            # overlap modes: the producer's GEMM with the forward reduction (again after its
            # recomputation, when the consumer's backward needs the input), the consumer's backward
            # with the gradient's
            twice = 1 + (again and e.producer in rec)
            sums.delta += n * (twice * tables.overlap_delta(e, o_p, o_c, "fwd", mp) +
                               tables.overlap_delta(e, o_p, o_c, "bwd", mc))
            sums.coll -= n * (twice * tables.overlap_saving_bytes(e, o_p, o_c, "fwd", mp) +
                              tables.overlap_saving_bytes(e, o_p, o_c, "bwd", mc))


def _add_extra_ops(sums: _StageSums, extra_ops: tuple[Op, ...], ocs: dict[str, OptionCost]) -> None:
    """The first stage's embedding and the last stage's head ops, once per micro-batch."""
    for o in extra_ops:
        oc = ocs[o.name]
        sums.compute += oc.fwd_s + oc.bwd_s
        sums.tp += 2 * oc.stats.time_s
        sums.hops += oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops
        sums.zero_raw += 2 * oc.gather.time_s  # the embedding's and head's gathers are not prefetched
        sums.zero_exposed += 2 * oc.gather.time_s
        sums.flops += (1 + o.backward_factor) * oc.flops
        sums.mem += (1 + o.backward_factor) * oc.mem_bytes
        sums.coll += 2 * (oc.stats_bytes + oc.gather_bytes)


def _add_pipeline_transfers(sums: _StageSums, tables: Tables, add2_opt: Option, first: bool, last: bool) -> float:
    """Seconds of the stage's transfers to and from its neighbouring stages, each run alone; their
    main-memory bytes go to sums.coll."""
    neighbours = (not first) + (not last)
    pp = tables.p2p(add2_opt).time_s * tables.virtual * neighbours
    if neighbours:
        sums.coll += neighbours * tables.virtual * tables.p2p_bytes(add2_opt)
    return pp


def _stage_params(tables: Tables, ocs: dict[str, OptionCost], opt: dict[str, Option], layers: int,
                  extra_ops: tuple[Op, ...], last: bool) -> tuple[float, float]:
    """Weights on one die of the stage, and those of its largest op."""
    g = tables.graph
    op_params = {name: oc.params for name, oc in ocs.items()}
    if last:
        op_params["lm_head"] += tables.tied_head_params(opt["lm_head"])
    params = layers * sum(op_params[o.name] for o in g.block) + sum(op_params[o.name] for o in extra_ops)
    return params, max(op_params.values())


def _stage_memory(tables: Tables, opt: dict[str, Option], rec: set[str], stage: int, layers: int, params: float,
                  working: float, offload: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float], float]:
    """Bytes one die of the stage holds and keeps in DRAM, per tensor class, and the bytes of the
    activations one micro-batch saves on it."""
    g = tables.graph
    # memory of one die of this stage; a class in `offload` lives in DRAM with a working piece on
    # the die (cost.offload_working_bytes; activations: one layer of one micro-batch)
    state = cost.zero_state_bytes(params, tables.dp, tables.zero_stage, tables.fp32_grads, tables.work.dtype_bytes)
    state_working = cost.offload_working_bytes(working, tables.dp, tables.zero_stage, tables.fp32_grads,
                                               tables.work.dtype_bytes)
    stored = stored_tensors(tables.graph, rec)
    per_layer = sum(tables.tensor_bytes(t, opt) for t in stored)
    act_mb = layers * per_layer  # saved activations of one micro-batch
    if stage == tables.pp - 1:
        act_mb += sum(tables.tensor_bytes(t, opt) for o in g.post for t in o.saved)
    act = act_mb * tables.in_flight(stage)
    buffers = sum(tables.recompute_buffer(o, opt[o.name]) for o in g.block if o.name in rec)
    dram = {k: (v if k in offload else 0.0) for k, v in state.items()}
    dram["activations"] = act if "activations" in offload else 0.0
    memory = {k: (state_working[k] if k in offload else v) for k, v in state.items()}
    memory["activations"] = per_layer if "activations" in offload else act
    memory["buffers"] = buffers
    return memory, dram, act_mb


def _weight_gradient_syncs(block: tuple[Op, ...], extra_ops: tuple[Op, ...], ocs: dict[str, OptionCost],
                           layers: int) -> tuple[CommCost, float]:
    """Per step: the all-reduces of the weight gradients a data-like split leaves partial, and the
    main-memory bytes one die moves in them."""
    wsync = ZERO
    wsync_bytes = 0.0
    for i, o in enumerate(block + extra_ops):
        k = layers if i < len(block) else 1
        wsync = wsync + ocs[o.name].wsync.scaled(k)
        wsync_bytes += k * ocs[o.name].wsync_bytes
    return wsync, wsync_bytes
