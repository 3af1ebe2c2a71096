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

from . import cost
from .mapping import Mapping, OpChoice, Report
from .tables import Tables, tables_for


@dataclass
class StageScore:
    time_s: float
    parts: dict[str, float]  # seconds per micro-batch: compute, recompute, tp_comm, pp_comm
    memory: dict[str, float]
    sync_s: float  # per step after the pipeline: dp_comm + optimizer
    sync_parts: dict[str, float]
    flops: float  # per die per micro-batch (executed)
    mem_bytes: float
    byte_hops: float  # per micro-batch, whole stage (all replicas)
    sync_byte_hops: float
    dram: dict[str, float]  # bytes one die keeps in DRAM, per tensor class
    dram_mb_bytes: float  # DRAM traffic of one die per micro-batch
    dram_step_bytes: float  # DRAM traffic of one die in the optimizer update


def validate(mapping: Mapping, work: Workload, hw: Hardware) -> None:
    """Reject a mapping that does not fit the workload or the machine, naming the field."""
    B, L = work.global_batch, work.model.layers
    if B % (mapping.dp * mapping.micro_batch):
        raise ConfigError(f"global_batch ({B}) must be divisible by dp x micro_batch "
                          f"({mapping.dp} x {mapping.micro_batch})")
    if mapping.pp > L:
        raise ConfigError(f"pp ({mapping.pp}) exceeds the model's layers ({L})")
    if mapping.devices > hw.num_dies:
        raise ConfigError(f"mapping uses {mapping.devices} dies (pp x dp x tp) but {hw.name} has "
                          f"{hw.num_dies} usable dies")
    if not mapping.groups:
        from .tables import default_groups

        if default_groups(hw, mapping.pp, mapping.dp, mapping.tp_shape) is None:
            raise ConfigError(f"tp_shape {tuple(mapping.tp_shape)}: no placement of pp x dp = "
                              f"{mapping.pp * mapping.dp} groups on the {hw.rows}x{hw.cols} grid "
                              f"({hw.num_dies} usable dies); the shape must tile the grid with enough "
                              f"defect-free tiles, or give groups explicitly")
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
        out[o.name] = OpChoice(split=split, recompute=ch.recompute)
    return out


def score_stage(tables: Tables, ch: dict[str, OpChoice], stage: int, layers: int,
                offload: tuple[str, ...] = ()) -> StageScore:
    g = tables.graph
    first, last = stage == 0, stage == tables.pp - 1
    opt = {k: v.split for k, v in ch.items()}
    rec = {k for k, v in ch.items() if v.recompute}
    compute = recompute = 0.0
    tp = ZERO
    flops = mem = 0.0
    for o in g.block:
        oc = tables.option_cost(o, opt[o.name])
        compute += layers * (oc.fwd_s + oc.bwd_s)
        tp = tp + (oc.fwd_comm + oc.bwd_comm).scaled(layers)
        r = o.name in rec
        flops += layers * oc.flops * (3 + r)
        mem += layers * oc.mem_bytes * (3 + r)
        if r:
            recompute += layers * oc.fwd_s
            tp = tp + oc.fwd_comm.scaled(layers)
    for e in tables.edges:
        if e.where == "post" and not last:
            continue
        if e.where == "pre" and not first:
            continue
        n = {"block": layers, "wrap": layers - 1 if first else layers, "pre": 1, "post": 1}[e.where]
        if n == 0:
            continue
        ec = tables.edge_cost(e, opt[e.producer], opt[e.consumer])
        c = ec.fwd + ec.grad
        if tables.saved_by(e):
            c = c + ec.fwd  # the saved input is converted again for the backward
        elif e.consumer in rec:
            c = c + ec.fwd  # recomputation converts its input again
        tp = tp + c.scaled(n)
    extra_ops = (g.pre if first else ()) + (g.post if last else ())
    for o in extra_ops:
        oc = tables.option_cost(o, opt[o.name])
        compute += oc.fwd_s + oc.bwd_s
        tp = tp + oc.fwd_comm + oc.bwd_comm
        flops += 3 * oc.flops
        mem += 3 * oc.mem_bytes
    pp = ZERO
    p2p = tables.p2p(opt["add2"]).scaled(tables.virtual)
    if not first:
        pp = pp + p2p
    if not last:
        pp = pp + p2p
    parts = {"compute": compute, "recompute": recompute, "tp_comm": tp.time_s, "pp_comm": pp.time_s}
    time_s = sum(parts.values())

    # memory of one die of this stage; a class in `offload` lives in DRAM with a working piece on
    # the die (cost.offload_working_bytes; activations: one layer of one micro-batch)
    op_params = {o.name: tables.option_cost(o, opt[o.name]).params for o in g.block + extra_ops}
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
                                                   act_mb if "activations" in offload else 0.0)
    step_traffic = cost.dram_traffic_per_step(dram["weights"], dram["grads"], dram["optimizer"])
    if mb_traffic or step_traffic:
        parts["dram"] = mb_traffic / bw
        time_s += parts["dram"]

    wsync = ZERO
    for o in g.block:
        wsync = wsync + tables.option_cost(o, opt[o.name]).wsync.scaled(layers)
    for o in extra_ops:
        wsync = wsync + tables.option_cost(o, opt[o.name]).wsync
    dp = tables.dp_sync(params) + wsync
    upd = cost.optimizer_update_time(params, tables.dp, tables.zero_stage, tables.hw.die)
    sync_parts = {"dp_comm": dp.time_s, "optimizer": upd}
    if step_traffic:
        sync_parts["optimizer_dram"] = step_traffic / bw
    # group collectives are costed per tensor group (dp of them in a stage); dp rings span all stages
    return StageScore(time_s, parts, memory, sum(sync_parts.values()), sync_parts,
                      flops, mem, tp.byte_hops * tables.dp,
                      (dp.byte_hops - wsync.byte_hops) / tables.pp + wsync.byte_hops * tables.dp,
                      dram, mb_traffic, step_traffic)


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
    breakdown = {k: m * val for k, val in stages[slow].parts.items()}
    breakdown["bubble"] = pipe - m * times[slow]
    breakdown.update(stages[sync].sync_parts)
    breakdown["exposed_comm"] = breakdown["tp_comm"] + breakdown["pp_comm"] + breakdown["dp_comm"]
    peak_stage = max(range(len(stages)), key=lambda i: sum(stages[i].memory.values()))
    memory = stages[peak_stage].memory
    peak_mem = sum(memory.values())
    capacity = hw.die.memory_bytes
    devices = mapping.devices
    per_stage_dies = mapping.dp * mapping.tp
    flops = sum(st.flops for st in stages) * m * per_stage_dies
    mem_bytes = sum(st.mem_bytes for st in stages) * m * per_stage_dies
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
        dram_bytes=dram_traffic,
        dram_stored_bytes=dram_stored,
        dram_capacity_bytes=hw.dram_capacity,
        offload=tuple(mapping.offload),
    )


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
    return [score_stage(tables, ch, s, L, mapping.offload) for s, L in enumerate(tables.layers_per_stage)]


def evaluate(mapping: Mapping | str, work: Workload, hardware: Hardware | str) -> Report:
    """Score a mapping: step time, throughput, MFU, memory of the most loaded die, energy."""
    mapping, hw, tables = prepare(mapping, work, hardware)
    return assemble(mapping, work, hw, tables)


__all__ = ["evaluate", "validate"]
