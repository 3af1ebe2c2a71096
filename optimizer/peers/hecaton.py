"""Hecaton's 2D weight-stationary method on the whole grid as a fixed mapping, with its DRAM tier
and its DRAM-saving layer-wise schedule."""

from __future__ import annotations

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import RECOMPUTE_POLICIES, recompute_set
from models.schema import Workload

from ..model.cost import OFFLOAD_CLASSES
from ..model.evaluate import evaluate
from ..model.mapping import Mapping, OpChoice
from ..search.space import LINEARS, MICRO_BATCHES, get_space, layer_groups
from .common import (Offload, _check_inputs, _check_offload, _fewest_classes, _fits, _fixed_point, _named,
                     best_options, offload_sets)


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
