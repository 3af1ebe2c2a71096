"""AccPar's per-layer partition types, chosen by dynamic programming, as a fixed mapping."""

from __future__ import annotations

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ..model.evaluate import evaluate
from ..model.mapping import Mapping, OpChoice
from ..model.sharding import Option
from ..model.tables import default_groups
from ..search.space import MICRO_BATCHES, get_space
from .common import Offload, _check_inputs, _check_offload, _fixed_point, _named, best_options, with_least_offload


def _ops(choice: dict[str, Option]) -> dict[str, OpChoice]:
    return {k: OpChoice(split=v) for k, v in choice.items()}


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
    AccPar's search has no memory limit; offload=True runs it as its users would on a machine whose
    dies cannot hold its choice: every (dp, group, micro-batch) point's mapping gets its tensors
    spilled to DRAM, the least set of classes that makes it fit (with_least_offload, the ports'
    traffic charged by evaluate()), and the fastest point that then fits is kept; if none fits,
    the fastest point with every class in DRAM (evaluate() says fits=False). A tuple: exactly
    those classes in DRAM at the fastest point.
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
    fitting: tuple[float, Mapping] | None = None  # offload=True: the fastest that fits with its tensors spilled
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
            if offload is True:
                spilled = with_least_offload(mapping, work, hw)
                rep = evaluate(spilled, work, hw)
                if rep.fits and (fitting is None or rep.step_time_s < fitting[0]):
                    fitting = (rep.step_time_s, spilled)
    if best is None:
        raise ConfigError(f"global_batch ({work.global_batch}): no data-parallel degree of AccPar's "
                          f"bisection of {most} dies on {hw.name} divides it")
    if offload is True:
        return fitting[1] if fitting is not None else with_least_offload(best[1], work, hw)
    return _named(best[1].model_copy(update={"offload": tuple(offload or ())}))
