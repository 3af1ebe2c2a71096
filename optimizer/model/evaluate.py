"""evaluate(mapping) -> Report: the independent referee of every mapping, built on cost tables only.

The step: every stage runs m micro-batches through its layers (forward, backward, recomputation
and the tensor-group collectives of each op), pipeline transfers between stages, then gradient
synchronisation across replicas and the Adam update. See docs/cost-model.md.
"""

from __future__ import annotations

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from models.counts import step_flops
from models.schema import Workload

from . import cost
from .mapping import Mapping, OpChoice, Report
from .stage import StageScore, score_stage, score_stages
from .layout import balanced_layers
from .tables import Tables, tables_for


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
    if mapping.layers_per_chunk is not None and sum(mapping.layers_per_chunk) != L:
        raise ConfigError(f"layers_per_chunk sums to {sum(mapping.layers_per_chunk)}, the model has {L} layers")
    if mapping.virtual_stages > 1 and mapping.layers_per_chunk is None:
        lps = mapping.layers_per_stage or balanced_layers(L, mapping.pp)
        if min(lps) < mapping.virtual_stages:
            raise ConfigError(f"virtual_stages ({mapping.virtual_stages}) exceeds the layers of a stage {lps}: "
                              f"every model chunk needs a layer (or give layers_per_chunk)")
    _check_groups(mapping, hw)


def _check_groups(mapping: Mapping, hw: Hardware) -> None:
    """Every group's dies inside the grid, none defective, none in two groups."""
    (r, c), rows, cols = mapping.tp_shape, hw.rows, hw.cols
    defects = set(hw.defects)
    seen: set = set()
    for g in mapping.groups:
        r0, c0 = g.origin
        inside = 0 <= r0 and r0 + r <= rows and 0 <= c0 and c0 + c <= cols  # the rectangle's corners
        dies = mapping.group_dies(g)
        if not inside or defects:
            for d in dies:
                if not (0 <= d[0] < rows and 0 <= d[1] < cols):
                    raise ConfigError(f"groups: stage {g.stage} replica {g.replica} uses die {d}, outside the "
                                      f"{hw.rows}x{hw.cols} grid")
                if d in defects:
                    raise ConfigError(f"groups: stage {g.stage} replica {g.replica} uses defective die {d}")
        n = len(seen)
        seen.update(dies)
        if len(seen) < n + len(dies):
            d = next(x for x in dies if sum(x in mapping.group_dies(o) for o in mapping.groups) > 1)
            raise ConfigError(f"groups: die {d} is used by two groups")


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
    return finish_stages(score_stages(tables, ch, mapping.offload), tables.virtual)


def evaluate(mapping: Mapping | str, work: Workload, hardware: Hardware | str) -> Report:
    """Score a mapping: step time, throughput, MFU, memory of the most loaded die, energy."""
    mapping, hw, tables = prepare(mapping, work, hardware)
    return assemble(mapping, work, hw, tables)


__all__ = ["evaluate", "validate", "score_stage", "finish_stages"]
