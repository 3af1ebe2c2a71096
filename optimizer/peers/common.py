"""Helpers the peers' heuristics share: argument checks, the DRAM tier (offload_sets,
with_least_offload), the squarest tile shape, and the per-operator layouts that minimise the step
time of a one-stage mapping (best_options)."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Iterable, Union

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ..model import cost
from ..model.cost import OFFLOAD_CLASSES
from ..model.evaluate import evaluate
from ..model.mapping import Mapping
from ..model.sharding import Option
from ..model.tables import Tables, default_groups, tables_for
from ..search.space import get_space


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
