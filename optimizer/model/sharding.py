"""Partition options of an operator on an r×c tensor group, tensor layouts, and layout conversions.

A tensor group is a rectangle of r×c dies. Axis 0 runs along its rows index (collectives among
the r dies of one grid column), axis 1 along its columns (the c dies of one grid row).

An option assigns to each axis one loop dim of the op (or None: replicate along the axis).
Both axes may carry the same dim: a 1D split over all r·c dies. On a 1×c (or r×1) group the
size-1 axis mirrors the other, so a 1D option is always written (x, x).

A tensor layout is the same pair in the tensor's own dims: a dim name (split), None
(replicated) or "P" (partial sums pending a reduction over that axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from models.graph import Op, Operand

Layout = tuple[str | None, str | None]
Option = tuple[str | None, str | None]
PARTIAL = "P"


@dataclass(frozen=True)
class Step:
    """One collective of a layout conversion: on `axis` ("group", 0 or 1), moving a tensor of `nbytes`."""

    axis: str | int
    kind: str  # all_gather | reduce_scatter | all_reduce | all_to_all
    nbytes: float  # size of the whole tensor the collective assembles on one ring (bytes)


def options(op: Op, sizes: dict[str, int], shape: tuple[int, int], tensors: dict | None = None,
            allowed: set[str] | None = None) -> list[Option]:
    """Every valid partition option of `op` on a group of `shape` (divisibility checked)."""
    r, c = shape
    dims = [d for d in op.splittable if allowed is None or d in allowed]
    cand: list[Option]
    if r == 1 and c == 1:
        cand = [(None, None)]
    elif r == 1 or c == 1:
        cand = [(None, None)] + [(x, x) for x in dims]
    else:
        cand = [(a0, a1) for a0 in [None, *dims] for a1 in [None, *dims]]
    out = []
    for opt in cand:
        if _divides(op, opt, sizes, shape, tensors):
            out.append(opt)
    return out


def split_factors(opt: Option, shape: tuple[int, int]) -> dict[str, int]:
    """How many ways each loop dim is split by the option."""
    r, c = shape
    f: dict[str, int] = {}
    if opt[0] is not None and opt[0] == opt[1]:
        f[opt[0]] = r * c
        return f
    if opt[0] is not None:
        f[opt[0]] = f.get(opt[0], 1) * r
    if opt[1] is not None:
        f[opt[1]] = f.get(opt[1], 1) * c
    return f


def _divides(op: Op, opt: Option, sizes: dict[str, int], shape: tuple[int, int], tensors: dict | None) -> bool:
    fac = split_factors(opt, shape)
    for dim, k in fac.items():
        if sizes[dim] % k:
            return False
    if tensors is not None:
        for operand in op.inputs + op.outputs:
            tdims = tensors[operand.tensor].dims
            for loopdim, tdim in zip(operand.loop, tdims):
                if loopdim in fac and sizes[tdim] % fac[loopdim]:
                    return False
    return True


def _tensor_dim(operand: Operand, tensors: dict, loopdim: str) -> str | None:
    tdims = tensors[operand.tensor].dims
    for ld, td in zip(operand.loop, tdims):
        if ld == loopdim:
            return td
    return None


def _layout(op: Op, opt: Option, operand: Operand, tensors: dict, missing: str | None) -> Layout:
    out = []
    for a in opt:
        if a is None:
            out.append(None)
        else:
            td = _tensor_dim(operand, tensors, a)
            out.append(td if td is not None else missing)
    return (out[0], out[1])


def input_layout(op: Op, opt: Option, operand: Operand, tensors: dict) -> Layout:
    """Layout the op needs for an input: split where the axis dim is the tensor's, else replicated."""
    return _layout(op, opt, operand, tensors, None)


def output_layout(op: Op, opt: Option, operand: Operand, tensors: dict) -> Layout:
    """Layout an output is produced in: a contracted dim on an axis leaves partial sums."""
    return _layout(op, opt, operand, tensors, PARTIAL)


def input_grad_layout(op: Op, opt: Option, operand: Operand, tensors: dict) -> Layout:
    """Layout of the gradient w.r.t. an input: partial along axes split on dims the input lacks."""
    return _layout(op, opt, operand, tensors, PARTIAL)


def needed_grad_layout(out_layout: Layout) -> Layout:
    """Layout of the output gradient the op's backward needs: full where the output was partial."""
    return tuple(None if x == PARTIAL else x for x in out_layout)  # type: ignore[return-value]


def weight_partial_axes(op: Op, opt: Option, shape: tuple[int, int]) -> list[tuple[str | int, int]]:
    """Axes along which the weight gradient is partial (data-like splits), with their sizes.

    Returns [("group", r*c)] for a 1D data-like split over the whole group.
    """
    if not op.params:
        return []
    r, c = shape
    if opt[0] is not None and opt[0] == opt[1]:
        return [] if opt[0] in op.weight else [("group", r * c)]
    out: list[tuple[str | int, int]] = []
    for axis, (a, k) in enumerate(zip(opt, shape)):
        if a is not None and a not in op.weight and k > 1:
            out.append((axis, k))
    return out


def reduced_split_axes(op: Op, opt: Option, shape: tuple[int, int]) -> list[tuple[str | int, int]]:
    """Axes that split a dim the op reduces internally (norm over h, softmax over z, loss over v)."""
    if not op.reduced:
        return []
    r, c = shape
    if opt[0] is not None and opt[0] == opt[1]:
        return [("group", r * c)] if opt[0] in op.reduced else []
    return [(axis, k) for axis, (a, k) in enumerate(zip(opt, shape)) if a in op.reduced and k > 1]


def layout_divisor(layout: Layout, shape: tuple[int, int]) -> int:
    """How many ways a tensor in `layout` is split across the group (bytes per die = total / this)."""
    r, c = shape
    d = 1
    if layout[0] not in (None, PARTIAL):
        d *= r
    if layout[1] not in (None, PARTIAL):
        d *= c
    return d


def _primitive(src: str | None, dst: str | None) -> str | None:
    if src == dst or dst == PARTIAL:
        return None
    if src is None:
        return None  # a replicated tensor is sliced locally
    if src == PARTIAL:
        return "all_reduce" if dst is None else "reduce_scatter"
    return "all_gather" if dst is None else "all_to_all"


def conversion(src: Layout, dst: Layout, shape: tuple[int, int], nbytes: float) -> list[Step]:
    """The collectives that turn a tensor of `nbytes` from layout src into dst on an r×c group.

    Uniform layouts ((x, x), (None, None), (P, P)) convert with one collective over the whole
    group's ring; others axis by axis (axis 1 first), each ring moving the slice it owns.
    """
    r, c = shape
    if src == dst or r * c == 1:
        return []
    if src[0] == src[1] and dst[0] == dst[1]:
        kind = _primitive(src[0], dst[0])
        return [Step("group", kind, nbytes)] if kind else []
    steps: list[Step] = []
    if c > 1:
        kind = _primitive(src[1], dst[1])
        if kind:
            steps.append(Step(1, kind, nbytes / (r if src[0] not in (None, PARTIAL) else 1)))
    if r > 1:
        kind = _primitive(src[0], dst[0])
        if kind:
            steps.append(Step(0, kind, nbytes / (c if dst[1] not in (None, PARTIAL) else 1)))
    return steps
