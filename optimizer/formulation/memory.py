"""On-die memory of the inner model: the activations a layer keeps (Checkmate: KEEP where only a
recomputed consumer needs a tensor), the recompute buffers, and per stage kind the memory row,
each tensor class on the die or, where it may live in DRAM, split between the tiers (SRAM, DRAM);
the DRAM's capacity."""

from __future__ import annotations

from ..model import cost
from ..model.tables import Tables
from .build import GB, KB_PER_GB, Build
from .model import LinearModel, add_expr
from .stages import Stage


def zero_state_per_param(tb: Tables) -> dict[str, float]:
    """Bytes per parameter on a die of each ZeRO state class (cost.zero_state_bytes)."""
    return cost.zero_state_bytes(1.0, tb.dp, tb.zero_stage, tb.fp32_grads, tb.work.dtype_bytes)


def kept_activations(build: Build) -> dict[int, float]:
    """Activations kept per layer (Checkmate): tensor memory expressions (GB of one micro-batch)."""
    tb, g = build.tb, build.tb.graph
    need = {t for o in g.block for t in o.saved}
    act_layer: dict[int, float] = {}
    for opt, ex in build.sel["add2"].items():  # the block input, always kept (in the block output's layout)
        add_expr(act_layer, ex, tb.option_cost(g.op("add2"), opt).out_bytes[g.block_output] / GB)
    consumers_of: dict[str, list] = {}
    for o in g.block:
        for x in o.inputs:
            consumers_of.setdefault(x.tensor, []).append(o)
    for t, p in _block_producers(g).items():
        if t == g.block_output:
            continue
        kept: dict[int, float] = {}
        for opt in tb.options(p):
            if (p.name, opt, 0) in build.Y:
                kept[build.Y[(p.name, opt, 0)]] = tb.option_cost(p, opt).out_bytes[t] / GB
        if t in need:
            add_expr(act_layer, kept)
            continue
        recs = [c for c in consumers_of.get(t, []) if build.may_recompute(c.name)]
        if not recs:
            continue
        k_var = _add_keep(build, t, kept, recs)
        if k_var is not None:
            act_layer[k_var] = act_layer.get(k_var, 0.0) + 1.0
    return act_layer


def _add_keep(build: Build, t: str, kept: dict[int, float], recs: list) -> int | None:
    """KEEP[t] ≥ the bytes of tensor t (kept unless its producer is recomputed) wherever one of its
    consumers `recs` is recomputed; None where t has no bytes."""
    lm = build.lm
    big = max(kept.values(), default=0.0)
    if big <= 0:
        return None
    k_var = lm.continuous(f"KEEP[{t}]", big, scale=GB)
    for c in recs:
        row = {k_var: 1.0}
        add_expr(row, kept, -1.0)
        add_expr(row, build.recomputed(c.name), -big)
        lm.add(row, ">=", -big, scale=GB)
    return k_var


def post_saved_activations(build: Build) -> dict[int, float]:
    """The tensors the post ops save, in their producers' layouts (GB of one micro-batch)."""
    tb, g = build.tb, build.tb.graph
    producers = _block_producers(g)
    post_saved: dict[int, float] = {}
    for o in g.post:
        for t in o.saved:
            src = producers.get(t) if t != g.block_output else g.op("add2")
            if src is None:
                src = next(q for q in g.post if any(x.tensor == t for x in q.outputs))
            for opt, ex in build.sel[src.name].items():
                add_expr(post_saved, ex, tb.option_cost(src, opt).out_bytes[t] / GB)
    return post_saved


def _block_producers(g) -> dict:
    """Tensor -> the block op that produces it."""
    return {x.tensor: o for o in g.block for x in o.outputs}


def recompute_buffers(build: Build) -> dict[int, float]:
    """The buffer (GB) each recomputed (op, option) needs (Tables.recompute_buffer)."""
    g = build.tb.graph
    return {i: build.tb.recompute_buffer(g.op(name), opt) / GB for (name, opt, r), i in build.Y.items() if r}


def add_stage_memory(build: Build, stage: Stage, act_layer: dict[int, float], buffers: dict[int, float],
                     capacity: float) -> None:
    """The memory row of a stage kind: its parameters' ZeRO state, the activations of its
    micro-batches in flight and the recompute buffers on one die ≤ capacity (bytes); a class
    that may live in DRAM counts its on-die part, its DRAM variable goes into stage.dram."""
    lm, H = build.lm, build.H
    working_per_param = cost.offload_working_bytes(1.0, build.tb.dp, build.tb.zero_stage, build.tb.fp32_grads,
                                                   build.tb.work.dtype_bytes)
    mem: dict[int, float] = {}
    for c, coef in zero_state_per_param(build.tb).items():
        if c not in H:
            add_expr(mem, stage.params, coef / GB)
            continue
        pieces = [{i: working_per_param[c] * v / GB for i, v in w.items()} for w in stage.working
                  if working_per_param[c]]
        on_die, off_die = _split_by_tier(lm, H[c], {i: coef * v / GB for i, v in stage.params.items()}, pieces,
                                         build.upper, f"{c},{stage.key}")
        mem[on_die] = 1.0
        stage.dram[c] = off_die
    act_all = {i: v * stage.in_flight for i, v in stage.act.items()}
    if "activations" in H:
        on_die, off_die = _split_by_tier(lm, H["activations"], act_all, [act_layer], build.upper,
                                         f"activations,{stage.key}")
        mem[on_die] = 1.0
        stage.dram["activations"] = off_die
    else:
        add_expr(mem, act_all)
    add_expr(mem, buffers)
    lm.add(mem, "<=", capacity / GB, scale=GB, name=f"memory{stage.key}")


def _split_by_tier(lm: LinearModel, h: int, total: dict[int, float], working: list[dict[int, float]],
                   upper, label: str) -> tuple[int, int]:
    """Bytes (GB) of one tensor class on the die and in DRAM, given its binary tier variable h:
    on die = total if h = 0, else its largest working piece; in DRAM = total if h = 1, else 0
    (big-M rows with M = an upper bound of the total)."""
    big = upper(total)
    on_die = lm.continuous(f"SRAM[{label}]", big, scale=KB_PER_GB)
    off_die = lm.continuous(f"DRAM[{label}]", big, scale=KB_PER_GB)
    row = {on_die: 1.0, h: big}
    add_expr(row, total, -1.0)
    lm.add(row, ">=", 0.0, scale=GB)
    for w in working:
        row = {on_die: 1.0}
        add_expr(row, w, -1.0)
        lm.add(row, ">=", 0.0, scale=GB)
    row = {off_die: 1.0, h: -big}
    add_expr(row, total, -1.0)
    lm.add(row, ">=", -big, scale=GB)
    return on_die, off_die


def add_dram_capacity(build: Build, stages: list[Stage]) -> None:
    """The DRAM variables of every die of every stage ≤ the DRAM's capacity (GB)."""
    tb = build.tb
    dram_total: dict[int, float] = {}
    for stage in stages:
        for off_die in stage.dram.values():
            dram_total[off_die] = dram_total.get(off_die, 0.0) + stage.count * tb.dp * tb.shape[0] * tb.shape[1]
    if dram_total:
        build.lm.add(dram_total, "<=", tb.hw.dram_capacity / GB, scale=GB, name="dram capacity")
