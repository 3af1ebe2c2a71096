"""Why a problem is infeasible: the binding reasons, ranked, from what the outer enumeration learned.

Reasons (Solution.reasons, most binding first):
  dram          a mapping fits on the dies only by keeping more in DRAM than the DRAM holds
  memory        even split perfectly over every usable die, the model state and the activations
                exceed a die (least need vs capacity, per class); in a peer's restricted space,
                the least need of its mappings exceeds it
  divisibility  a perfect split would fit, but the model's dimensions do not divide the degrees
                the grid and the batch allow (named: which dimension, which group size)
  defects       the defect-free grid would fit; its defective dies leave too few usable tiles
  search        every bound fits, but the inner solver proved that no candidate does once
                activations kept or rebuilt for backward are counted (or no degrees exist)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hw.schema import Hardware
from models.schema import Workload

from .space import OuterPoint, Space

GB = 1e9
DIMENSION_NAMES = {"s": "sequence", "h": "hidden", "a": "heads", "g": "kv heads", "d": "head dim", "f": "ffn",
                   "v": "vocab"}  # the operator graph's dimension letters (models.graph) a split can divide


@dataclass
class Evidence:
    """Least on-die bytes per die seen over the outer points (bounds: no mapping needs less)."""

    least: float = math.inf  # bytes, as the degrees the model admits split it
    least_parts: dict[str, float] = field(default_factory=dict)  # its split by tensor class
    least_point: OuterPoint | None = None
    even: float = math.inf  # bytes, had every op split evenly over its tensor group
    even_parts: dict[str, float] = field(default_factory=dict)
    even_point: OuterPoint | None = None
    undivided: dict[str, int] = field(default_factory=dict)  # at even_point: dimension -> size not divisible
    least_spill: float = math.inf  # bytes in DRAM any fitting choice keeps
    clean_least: float | None = None  # least bytes on the defect-free grid (None: no defects)
    solved: int = 0  # inner solves run


def undivided_dimensions(sizes: dict[str, int], shape: tuple[int, int]) -> dict[str, int]:
    """The model's dimensions (DIMENSION_NAMES, sizes: the graph's) that no split factor of an r×c
    group (r, c, r·c) divides."""
    r, c = shape
    factors = {r, c, r * c} - {1}
    return {name: sizes[d] for d, name in DIMENSION_NAMES.items() if factors and all(sizes[d] % f for f in factors)}


def _degrees(pt: OuterPoint) -> str:
    r, c = pt.shape
    return f"pp {pt.pp}, dp {pt.dp}, tensor group {r}x{c}, micro-batch {pt.micro_batch}, ZeRO {pt.zero_stage}"


def _parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v / GB:.3g}" for k, v in parts.items() if v > 0)


def reasons(ev: Evidence, hw: Hardware, work: Workload, space: str) -> list[tuple[str, str]]:
    """(reason, sentence) pairs, the binding one first (see the module docstring)."""
    cap = hw.die.memory_bytes
    dies = f"{hw.num_dies} usable dies"
    if hw.defects:
        dies += f"; {len(hw.defects)} of {hw.rows * hw.cols} dies are defective"
    out: list[tuple[str, str]] = []
    if ev.least_point is None:
        return [("search", f"no outer point of space {space!r} fits {work.model.name} on {hw.name} ({dies}): "
                           f"no degrees divide the batch ({work.global_batch}) or fit the grid's usable dies")]
    if ev.least <= cap and ev.least_spill > hw.dram_capacity:
        out.append(("dram", f"every mapping in space {space!r} must keep at least {ev.least_spill / GB:.3g} GB "
                            f"beyond on-die memory, but {hw.name}'s DRAM holds {hw.dram_capacity / GB:.3g} GB"))
    if ev.even > cap:
        how = "even split perfectly, a die" if space == "full" else f"in space {space!r}, some die"
        out.append(("memory", f"{how} needs at least {ev.even / GB:.3g} GB "
                              f"({_parts(ev.even_parts)} GB at {_degrees(ev.even_point)}), but {hw.name} has "
                              f"{cap / GB:.3g} GB per die ({dies})"))
    elif ev.least > cap:
        r, c = ev.even_point.shape
        factors = " or ".join(str(f) for f in sorted({r, c, r * c} - {1}))
        bad = ", ".join(f"{d} = {n}" for d, n in ev.undivided.items()) or "none"
        out.append(("divisibility", f"a perfect split would need {ev.even / GB:.3g} GB per die at "
                                    f"{_degrees(ev.even_point)}, within {hw.name}'s {cap / GB:.3g} GB, but the "
                                    f"model's dimensions do not divide the {r}x{c} tensor group ({bad} not "
                                    f"divisible by {factors}); as the dimensions divide, the least "
                                    f"need is {ev.least / GB:.3g} GB ({_parts(ev.least_parts)} GB at "
                                    f"{_degrees(ev.least_point)}); data parallelism takes only divisors of the "
                                    f"batch {work.global_batch}"))
    if ev.clean_least is not None and ev.clean_least <= cap < ev.least:
        out.append(("defects", f"{dies}: on the defect-free grid a die would need {ev.clean_least / GB:.3g} GB, "
                               f"within {cap / GB:.3g} GB, but the defects leave too few whole tiles"))
    if not out:
        out.append(("search", f"{hw.name} has {cap / GB:.3g} GB per die; a lower bound on what a mapping in "
                              f"space {space!r} needs is {ev.least / GB:.3g} GB ({_parts(ev.least_parts)} GB), "
                              f"but the solver proved that none of the {ev.solved} remaining candidates fits "
                              f"once activations kept or rebuilt for backward are counted ({dies})"))
    order = ("dram", "defects", "divisibility", "memory", "search")
    return sorted(out, key=lambda x: order.index(x[0]))


def explain(ev: Evidence, hw: Hardware, work: Workload, space: str) -> tuple[tuple[str, ...], str]:
    """(reason names, most binding first; the explanation: 'infeasible: [reason] …', then the others)."""
    found = reasons(ev, hw, work, space)
    text = f"infeasible: [{found[0][0]}] {found[0][1]}"
    if len(found) > 1:
        text += ". Also: " + "; ".join(f"[{k}] {s}" for k, s in found[1:])
    return tuple(k for k, _ in found), text


def with_skipped(sol, sp: Space, work: Workload):
    """sol, its explanation naming the explicit points of `sp` the workload cannot run (skipped)."""
    skipped = sp.skipped_points(work)
    if not skipped:
        return sol
    names = "; ".join(f"pp {p.pp} dp {p.dp} tp {p.shape[0]}x{p.shape[1]} micro-batch {p.micro_batch} "
                      f"v {p.virtual}: {why}" for p, why in skipped)
    text = f"{len(skipped)} explicit outer point(s) skipped ({names})"
    if sol.status == "infeasible" and len(skipped) == len(sp.points):
        return sol.model_copy(update={"explanation": f"infeasible: [divisibility] {text}",
                                      "reasons": ("divisibility",)})
    return sol.model_copy(update={"explanation": f"{sol.explanation} {text}".strip()})
