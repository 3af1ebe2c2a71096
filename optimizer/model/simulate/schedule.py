"""The order in which one pipeline stage runs its work: units (F or B, virtual chunk, micro-batch)
under 1F1B and Megatron-LM's interleaved 1F1B, and layer by layer under the layer-wise schedule.
"""

from __future__ import annotations


def one_f_one_b(p: int, m: int, s: int) -> list[tuple[str, int, int]]:
    """Stage s of p under 1F1B (Narayanan et al. SC21, PipeDream-Flush): min(p − s − 1, m) forwards
    to warm up, then one forward and one backward in turn, then the remaining backwards."""
    warm = min(p - s - 1, m)
    order = [("F", 0, i) for i in range(warm)]
    for k in range(m - warm):
        order += [("F", 0, warm + k), ("B", 0, k)]
    return order + [("B", 0, k) for k in range(m - warm, m)]


def interleaved(p: int, m: int, v: int, s: int) -> list[tuple[str, int, int]]:
    """Stage s of p with v model chunks (Megatron-LM's interleaved schedule, Narayanan et al. SC21
    Sec. 2.2): forwards go through groups of p micro-batches chunk by chunk (chunk 0 for the group,
    then chunk 1, ...), backwards the same with the chunks in reverse; (p − s − 1)·2 + (v − 1)·p
    forwards warm up (all of them when m = p, as Megatron-LM does), then one forward and one
    backward in turn. A last group with fewer than p micro-batches runs as a group of its size."""
    fseq, bseq = [], []
    for g0 in range(0, m, p):
        group = range(g0, min(g0 + p, m))
        fseq += [(c, i) for c in range(v) for i in group]
        bseq += [(c, i) for c in reversed(range(v)) for i in group]
    n = len(fseq)
    warm = n if m == p else min((p - s - 1) * 2 + (v - 1) * p, n)
    order = [("F", *fseq[k]) for k in range(warm)]
    for k in range(n - warm):
        order += [("F", *fseq[warm + k]), ("B", *bseq[k])]
    return order + [("B", *bseq[k]) for k in range(n - warm, n)]


def stage_order(schedule: str, p: int, m: int, v: int, s: int) -> list[tuple[str, int, int]]:
    """Units (F|B, local chunk, micro-batch) of stage s in the order it runs them (1f1b,
    interleaved; the layer-wise schedule orders layers, not units: see layerwise_items)."""
    if v > 1:
        return interleaved(p, m, v, s)
    return one_f_one_b(p, m, s)


def layerwise_items(layers: int, m: int, group: int) -> list[tuple]:
    """The layer-wise schedule (pp = 1; Hecaton, Huang et al. arXiv 2407.05784): per group of `group`
    micro-batches, the embedding for each, each layer for each micro-batch in turn, the output
    layer for each; then the backward the same way in reverse. Items: (what, layer, micro-batch)."""
    items: list[tuple] = []
    for g0 in range(0, m, group):
        mbs = range(g0, g0 + group)
        items += [("embedding_F", 0, i) for i in mbs]
        items += [("layer_F", l, i) for l in range(layers) for i in mbs]
        items += [("head_F", 0, i) for i in mbs]
        items += [("head_B", 0, i) for i in mbs]
        items += [("layer_B", l, i) for l in reversed(range(layers)) for i in mbs]
        items += [("embedding_B", 0, i) for i in mbs]
    return items
