"""evaluate(mapping) -> Report: the independent referee of every mapping, built on cost tables only.

The step: every stage runs m micro-batches through its layers (forward, backward, recomputation
and the tensor-group collectives of each op), pipeline transfers between stages, then gradient
synchronisation across replicas and the Adam update. See docs/cost-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from hw.topology import ZERO
from models.graph import step_flops, stored_tensors
from models.schema import Workload

from . import cost, overlap
from .mapping import Mapping, OpChoice, Report
from .tables import Tables, tables_for


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


def validate(mapping: Mapping, work: Workload, hw: Hardware) -> None:
    """Reject a mapping that does not fit the workload or the machine, naming the field."""
    B, L = work.global_batch, work.model.layers
    if B % (mapping.dp * mapping.micro_batch):
        raise ConfigError(f"global_batch ({B}) must be divisible by dp x micro_batch "
                          f"({mapping.dp} x {mapping.micro_batch})")
    if mapping.pp > L:
        raise ConfigError(f"pp ({mapping.pp}) exceeds the model's layers ({L})")
    m = B // (mapping.dp * mapping.micro_batch)
    if m % mapping.layer_group:
        raise ConfigError(f"layer_group ({mapping.layer_group}) must divide the {m} micro-batches per step "
                          f"(global_batch / (dp x micro_batch))")
    if mapping.devices > hw.num_dies:
        raise ConfigError(f"mapping uses {mapping.devices} dies (pp x dp x tp) but {hw.name} has "
                          f"{hw.num_dies} usable dies")
    if not mapping.groups:
        from .tables import default_groups

        if default_groups(hw, mapping.pp, mapping.dp, mapping.tp_shape) is None:
            raise ConfigError(f"tp_shape {tuple(mapping.tp_shape)}: no placement of pp x dp = "
                              f"{mapping.pp * mapping.dp} groups on the {hw.rows}x{hw.cols} grid "
                              f"({hw.num_dies} usable dies); the grid must hold that many aligned "
                              f"defect-free tiles of the shape, or give groups explicitly")
    if mapping.offload and not hw.dram_ports:
        raise ConfigError(f"offload: {hw.name} has no DRAM ports; offload must be empty (allowed classes "
                          f"weights, grads, optimizer, activations need dram_ports)")
    if mapping.layers_per_stage is not None and sum(mapping.layers_per_stage) != L:
        raise ConfigError(f"layers_per_stage sums to {sum(mapping.layers_per_stage)}, the model has {L} layers")
    if mapping.virtual_stages > 1:
        from .tables import balanced_layers

        lps = mapping.layers_per_stage or balanced_layers(L, mapping.pp)
        if any(x % mapping.virtual_stages for x in lps):
            raise ConfigError(f"virtual_stages ({mapping.virtual_stages}) must divide every stage's layers {lps}")
    seen: set = set()
    for g in mapping.groups:
        for d in mapping.group_dies(g):
            if not (0 <= d[0] < hw.rows and 0 <= d[1] < hw.cols):
                raise ConfigError(f"groups: stage {g.stage} replica {g.replica} uses die {d}, outside the "
                                  f"{hw.rows}x{hw.cols} grid")
            if not hw.usable(d):
                raise ConfigError(f"groups: stage {g.stage} replica {g.replica} uses defective die {d}")
            if d in seen:
                raise ConfigError(f"groups: die {d} is used by two groups")
            seen.add(d)


def check_ops(mapping: Mapping, tables: Tables) -> None:
    names = {o.name for o in tables.graph.block + tables.graph.pre + tables.graph.post}
    norm = normalized_choices(mapping, tables)
    for name, ch in mapping.ops.items():
        if name not in names:
            raise ConfigError(f"ops: unknown operator {name!r}; operators: {', '.join(sorted(names))}")
        allowed = tables.allowed[name]
        if tuple(norm[name].split) not in allowed:
            raise ConfigError(f"ops.{name}.split: {tuple(ch.split)} is not valid on a {tables.shape} group; "
                              f"allowed: {allowed}")
        if ch.recompute and name not in {o.name for o in tables.graph.block}:
            raise ConfigError(f"ops.{name}.recompute: only block operators can be recomputed")
        if ch.overlap not in tables.modes:
            raise ConfigError(f"ops.{name}.overlap: {ch.overlap!r} needs features.fused_collectives = true, "
                              f"which {tables.hw.name} lacks; allowed: {', '.join(tables.modes)}")


def normalized_choices(mapping: Mapping, tables: Tables) -> dict[str, OpChoice]:
    """Every op's choice, with 1D splits on 1×c / r×1 groups written (x, x)."""
    r, c = tables.shape
    out = {}
    for o in tables.graph.block + tables.graph.pre + tables.graph.post:
        ch = mapping.choice(o.name)
        split = tuple(ch.split)
        if r == 1 and c > 1:
            split = (split[1], split[1]) if split[1] is not None else (split[0], split[0])
        elif c == 1 and r > 1:
            split = (split[0], split[0]) if split[0] is not None else (split[1], split[1])
        elif r == 1 and c == 1:
            split = (None, None)
        out[o.name] = OpChoice(split=split, recompute=ch.recompute, overlap=ch.overlap)
    return out


def score_stage(tables: Tables, ch: dict[str, OpChoice], stage: int, layers: int,
                offload: tuple[str, ...] = ()) -> StageScore:
    """One stage's score. The transfers of the pipeline's fill and drain ("bubble" in sync_parts)
    need every stage: finish_stages() adds them."""
    g = tables.graph
    first, last = stage == 0, stage == tables.pp - 1
    opt = {k: v.split for k, v in ch.items()}
    rec = {k for k, v in ch.items() if v.recompute}
    mode = {k: v.overlap for k, v in ch.items()}
    sc, sm = tables.overlap_params.compute_slowdown, tables.overlap_params.comm_slowdown
    compute = recompute = 0.0
    tp = 0.0  # seconds of the tensor-group collectives, each run alone
    hops = 0.0  # byte-hops of every per-micro-batch collective of one tensor group (link energy)
    delta = 0.0  # seconds the overlap modes add to tp (negative: hidden under a GEMM)
    flops = mem = coll = 0.0  # coll: main-memory bytes moved by collectives
    zf = zb = cf = cb = 0.0  # per layer: ZeRO-3 gathers and the compute they are prefetched under
    extra_ops = (g.pre if first else ()) + (g.post if last else ())
    ocs = {o.name: tables.option_cost(o, opt[o.name]) for o in g.block + extra_ops}
    for o in g.block:
        oc = ocs[o.name]
        r = o.name in rec
        compute += layers * (oc.fwd_s + oc.bwd_s)
        tp += layers * oc.stats.time_s * (2 + r)
        hops += layers * (oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops + r * oc.fwd_comm.byte_hops)
        flops += layers * oc.flops * (1 + o.backward_factor + r)
        mem += layers * oc.mem_bytes * (1 + o.backward_factor + r)
        coll += layers * (oc.stats_bytes + oc.gather_bytes) * (2 + r)
        zf += oc.gather.time_s
        zb += oc.gather.time_s * (1 + r)
        cf += oc.fwd_s
        cb += oc.bwd_s + r * oc.fwd_s
        if r:
            recompute += layers * oc.fwd_s
    # ZeRO-3: a layer's weights are gathered beside the previous layer's compute (prefetch)
    zero_raw = layers * (zf + zb)
    if tables.zero3_gather == "per_tensor":  # each op waits for its own gathers
        zero_exposed = zero_raw
    else:
        zero_exposed = layers * (overlap.exposed_time(cf, zf, sc, sm) + overlap.exposed_time(cb, zb, sc, sm))
    uses = {"block": layers, "wrap": layers - 1 if first else layers,  # per micro-batch, by edge group
            "pre": 1 if first else 0, "post": 1 if last else 0}
    for e in tables.edges:
        n = uses[e.where]
        if n == 0:
            continue
        o_p, o_c = opt[e.producer], opt[e.consumer]
        ec = tables.edge_cost(e, o_p, o_c)
        again = tables.saved_by(e)
        # the saved input is converted again for the backward, or for the consumer's recomputation
        k = 2 if (again or e.consumer in rec) else 1
        tp += n * (k * ec.fwd.time_s + ec.grad.time_s)
        hops += n * (k * ec.fwd.byte_hops + ec.grad.byte_hops)
        coll += n * (k * ec.fwd_conv.mem_bytes + ec.grad_conv.mem_bytes)
        mp, mc = mode[e.producer], mode[e.consumer]
        if mp != "sequential" or mc != "sequential":
            # overlap modes: the producer's GEMM with the forward reduction (again after its
            # recomputation, when the consumer's backward needs the input), the consumer's backward
            # with the gradient's
            twice = 1 + (again and e.producer in rec)
            delta += n * (twice * tables.overlap_delta(e, o_p, o_c, "fwd", mp) +
                          tables.overlap_delta(e, o_p, o_c, "bwd", mc))
            coll -= n * (twice * tables.overlap_saving_bytes(e, o_p, o_c, "fwd", mp) +
                         tables.overlap_saving_bytes(e, o_p, o_c, "bwd", mc))
    for o in extra_ops:
        oc = ocs[o.name]
        compute += oc.fwd_s + oc.bwd_s
        tp += 2 * oc.stats.time_s
        hops += oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops
        zero_raw += 2 * oc.gather.time_s  # the embedding's and head's gathers are not prefetched
        zero_exposed += 2 * oc.gather.time_s
        flops += (1 + o.backward_factor) * oc.flops
        mem += (1 + o.backward_factor) * oc.mem_bytes
        coll += 2 * (oc.stats_bytes + oc.gather_bytes)
    neighbours = (not first) + (not last)
    pp = tables.p2p(opt["add2"]).time_s * tables.virtual * neighbours
    if neighbours:
        coll += neighbours * tables.virtual * tables.p2p_bytes(opt["add2"])
    # tp_comm: tensor-group collectives as the overlap modes leave them, and the exposed ZeRO-3 gathers
    parts = {"compute": compute, "recompute": recompute, "tp_comm": tp + delta + zero_exposed}
    raw = {"tp_comm": tp, "zero_comm": zero_raw, "zero_comm_exposed": zero_exposed, "pp_comm": pp}

    # memory of one die of this stage; a class in `offload` lives in DRAM with a working piece on
    # the die (cost.offload_working_bytes; activations: one layer of one micro-batch)
    op_params = {name: oc.params for name, oc in ocs.items()}
    if last:
        op_params["lm_head"] += tables.tied_head_params(opt["lm_head"])
    params = layers * sum(op_params[o.name] for o in g.block) + sum(op_params[o.name] for o in extra_ops)
    working = max(op_params.values())
    state = cost.zero_state_bytes(params, tables.dp, tables.zero_stage, tables.fp32_grads, tables.work.dtype_bytes)
    state_working = cost.offload_working_bytes(working, tables.dp, tables.zero_stage, tables.fp32_grads,
                                               tables.work.dtype_bytes)
    stored = stored_tensors(tables.graph, rec)
    per_layer = sum(tables.tensor_bytes(t, opt) for t in stored)
    act_mb = layers * per_layer  # saved activations of one micro-batch
    if last:
        act_mb += sum(tables.tensor_bytes(t, opt) for o in g.post for t in o.saved)
    act = act_mb * tables.in_flight(stage)
    buffers = sum(tables.recompute_buffer(o, opt[o.name]) for o in g.block if o.name in rec)
    dram = {k: (v if k in offload else 0.0) for k, v in state.items()}
    dram["activations"] = act if "activations" in offload else 0.0
    memory = {k: (state_working[k] if k in offload else v) for k, v in state.items()}
    memory["activations"] = per_layer if "activations" in offload else act
    memory["buffers"] = buffers
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

    wsync = ZERO
    wsync_bytes = 0.0
    for i, o in enumerate(g.block + extra_ops):
        k = layers if i < len(g.block) else 1
        wsync = wsync + ocs[o.name].wsync.scaled(k)
        wsync_bytes += k * ocs[o.name].wsync_bytes
    dp = tables.dp_sync(params)
    # the gradient reduction runs in buckets beside the backward of the last micro-batch
    dp_exposed = overlap.bucketed_exposed(dp.time_s, cb, layers, sc, sm)
    raw["dp_comm"] = dp.time_s + wsync.time_s
    upd = cost.optimizer_update_time(params, tables.dp, tables.zero_stage, tables.hw.die)
    sync_parts = {"dp_comm": dp_exposed + wsync.time_s, "optimizer": upd}
    if step_traffic:
        sync_parts["optimizer_dram"] = step_traffic / bw
    # group collectives are costed per tensor group (dp of them in a stage); dp rings span all stages
    return StageScore(time_s, parts, memory, sum(sync_parts.values()), sync_parts,
                      flops, mem + coll, hops * tables.dp,
                      dp.byte_hops / tables.pp + wsync.byte_hops * tables.dp,
                      dram, mb_traffic, step_traffic, busy + pp, raw,
                      tables.dp_sync_bytes(params) + wsync_bytes)


def finish_stages(stages: list[StageScore], virtual: int) -> list[StageScore]:
    """Add the pipeline's fill and drain to every stage's sync: the first micro-batch crosses the
    stages with its transfers serialized, Σ_s (fill_s − time_s)/v more than the steady-state
    stage times count (cost.pipeline_time). Adding the same amount to every stage keeps
    pipeline_time(times) + max(sync) the step time."""
    x = sum(st.fill_s - st.time_s for st in stages) / virtual
    if x > 0:
        for st in stages:
            st.sync_parts["bubble"] = x  # the stages wait for the transfers of fill and drain
            st.sync_s += x
    return stages


def in_dram_bytes(stages: list[StageScore], tables: Tables) -> float:
    """Bytes all dies keep in DRAM (every stage has dp tensor groups of the same shape)."""
    return sum(sum(st.dram.values()) for st in stages) * tables.dp * tables.shape[0] * tables.shape[1]


def assemble(mapping: Mapping, work: Workload, hw: Hardware, tables: Tables) -> Report:
    ch = normalized_choices(mapping, tables)
    stages = stage_scores(mapping, tables)
    m, v = tables.m, tables.virtual
    times = [st.time_s for st in stages]
    pipe = cost.pipeline_time(times, m, v)
    slow = max(range(len(stages)), key=lambda i: times[i])
    sync = max(range(len(stages)), key=lambda i: stages[i].sync_s)
    step = pipe + stages[sync].sync_s
    breakdown = _breakdown(stages[slow], stages[sync], m, pipe - m * times[slow])
    peak_stage = max(range(len(stages)), key=lambda i: sum(stages[i].memory.values()))
    memory = stages[peak_stage].memory
    peak_mem = sum(memory.values())
    capacity = hw.die.memory_bytes
    devices = mapping.devices
    per_stage_dies = mapping.dp * mapping.tp
    flops = sum(st.flops for st in stages) * m * per_stage_dies
    mem_bytes = sum(st.mem_bytes * m + st.step_mem_bytes for st in stages) * per_stage_dies
    # each boundary carries one activation forward and one gradient back per micro-batch and chunk
    p2p = tables.p2p(ch["add2"].split).byte_hops * 2 * tables.virtual if mapping.pp > 1 else 0.0
    link = (sum(st.byte_hops for st in stages) + p2p) * m + sum(st.sync_byte_hops for st in stages)
    dram_traffic = sum(st.dram_mb_bytes * m + st.dram_step_bytes for st in stages) * per_stage_dies
    dram_stored = in_dram_bytes(stages, tables)
    link += dram_traffic * tables.dram_hops  # DRAM traffic crosses the mesh from the nearest port
    e = hw.energy
    on_hbm = hw.die.hbm_bytes is not None
    parts = cost.energy(flops, 0.0 if on_hbm else mem_bytes, (mem_bytes if on_hbm else 0.0) + dram_traffic,
                        link, step, devices, e)
    model_flops = step_flops(work.model, work.global_batch, work.seq_len)
    rec_flops = sum(o.flops for o in tables.graph.block if ch[o.name].recompute) * work.model.layers * \
        (work.global_batch // mapping.micro_batch)
    peak = hw.peak(work.dtype)
    return Report(
        step_time_s=step,
        tokens_per_s=work.tokens / step,
        mfu=model_flops / (step * devices * peak),
        tflops_per_device=(model_flops + rec_flops) / (step * devices) / 1e12,
        energy_j=sum(parts.values()),
        peak_memory_bytes=peak_mem,
        memory_capacity_bytes=capacity,
        fits=peak_mem <= capacity and dram_stored <= hw.dram_capacity,
        devices=devices,
        memory=memory,
        breakdown=breakdown,
        energy=parts,
        stage_times_s=tuple(times),
        link_bytes=link,
        memory_traffic_bytes=mem_bytes,
        dram_bytes=dram_traffic,
        dram_stored_bytes=dram_stored,
        dram_capacity_bytes=hw.dram_capacity,
        offload=tuple(mapping.offload),
    )


def _breakdown(slow: StageScore, sync: StageScore, m: int, bubble: float) -> dict[str, float]:
    """Where the step goes: the additive parts (compute, recompute, the exposed *_comm_exposed, dram,
    bubble, optimizer, optimizer_dram: they sum to the step time), each communication part's time
    run alone (tp_comm, pp_comm, dp_comm, zero_comm: not additive) and exposed_comm, the sum of the
    exposed parts."""
    p, raw, sp = slow.parts, slow.raw, sync.sync_parts
    out = {"compute": m * p["compute"], "recompute": m * p["recompute"],
           "tp_comm": m * raw["tp_comm"], "tp_comm_exposed": m * (p["tp_comm"] - raw["zero_comm_exposed"]),
           "pp_comm": m * raw["pp_comm"], "pp_comm_exposed": m * p["pp_comm"] + sp.get("bubble", 0.0)}
    if raw["zero_comm"]:
        out["zero_comm"] = m * raw["zero_comm"]
        out["zero_comm_exposed"] = m * raw["zero_comm_exposed"]
    if "dram" in p:
        out["dram"] = m * p["dram"]
    out["bubble"] = bubble
    out["dp_comm"] = sync.raw["dp_comm"]
    out["dp_comm_exposed"] = sp["dp_comm"]
    out["optimizer"] = sp["optimizer"]
    if "optimizer_dram" in sp:
        out["optimizer_dram"] = sp["optimizer_dram"]
    out["exposed_comm"] = sum(v for k, v in out.items() if k.endswith("_comm_exposed"))
    return out


def prepare(mapping: Mapping | str, work: Workload, hardware: Hardware | str) -> tuple[Mapping, Hardware, Tables]:
    """evaluate()'s checks and cost tables, for callers that need more than the Report (exporters)."""
    hw = hw_loader.load(hardware) if isinstance(hardware, str) else hardware
    if not isinstance(mapping, Mapping):
        mapping = Mapping.load(mapping)
    validate(mapping, work, hw)
    try:
        tables = tables_for(mapping, work, hw)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_ops(mapping, tables)
    return mapping, hw, tables


def stage_scores(mapping: Mapping, tables: Tables) -> list[StageScore]:
    """Every pipeline stage's score, as assemble() computes them (index = stage)."""
    ch = normalized_choices(mapping, tables)
    return finish_stages([score_stage(tables, ch, s, L, mapping.offload)
                          for s, L in enumerate(tables.layers_per_stage)], tables.virtual)


def evaluate(mapping: Mapping | str, work: Workload, hardware: Hardware | str) -> Report:
    """Score a mapping: step time, throughput, MFU, memory of the most loaded die, energy."""
    mapping, hw, tables = prepare(mapping, work, hardware)
    return assemble(mapping, work, hw, tables)


__all__ = ["evaluate", "validate", "score_stage", "finish_stages"]
