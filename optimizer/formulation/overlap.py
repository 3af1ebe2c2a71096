"""The overlap of communication with compute in the inner model: the GEMMs' overlap modes (W, V),
and variables for the exposed part of communication beside compute (epigraphs of
optimizer.model.overlap.exposed_pieces), among them the ZeRO-3 gathers prefetched beside the
previous layer's compute (EZ)."""

from __future__ import annotations

from ..model.tables import Tables
from .build import FINE, Build
from .model import LinearModel, add_expr


def add_exposed(build: Build, label: str, comm: dict[int, float], busy: dict[int, float], const: float = 0.0) -> int:
    """A variable E ≥ overlap.exposed_time(busy, comm + const): the epigraph of its two pieces,
    pushed down by the objective wherever it counts."""
    lm = build.lm
    (a1, b1), (a2, b2) = build.exposed_pieces
    e = lm.continuous(label, max(a1, a2) * (build.upper(comm) + max(const, 0.0)) + 1.0, scale=build.time_scale)
    for a, b in ((a1, b1), (a2, b2)):
        row = {e: 1.0}
        add_expr(row, comm, -a)
        add_expr(row, busy, -b)
        lm.add(row, ">=", a * const, scale=FINE, name=label)
    return e


def add_prefetched_gathers(build: Build, layer: dict[int, float], backward: dict[int, float]) -> None:
    """ZeRO-3: a layer's gathers are prefetched beside the previous layer's compute; their exposed
    parts EZ[fwd], EZ[bwd] join the layer's time (`backward`: one layer's backward compute)."""
    tb = build.tb
    if tb.zero_stage == 3 and tb.dp > 1:
        block = tb.graph.block
        zf = build.ops_expr(block, lambda c: c.gather.time_s)
        zb = build.ops_expr(block, lambda c: c.gather.time_s, lambda c: c.gather.time_s)
        cf = build.ops_expr(block, lambda c: c.fwd_s)
        layer[add_exposed(build, "EZ[fwd]", zf, cf)] = 1.0
        layer[add_exposed(build, "EZ[bwd]", zb, backward)] = 1.0


def _overlap_modes(lm: LinearModel, tb: Tables, Y: dict, X: dict, Z: dict, targets: dict[str, dict],
                   energy: bool = False) -> tuple[dict, dict]:
    """The overlap modes of the GEMMs (optimizer.model.overlap; evaluate.score_stage prices them the same).

    W[op, option, r, mode] (binary; Σ_mode W ≤ the choice (option, r), none = sequential) exists only
    where `mode` makes some use of the option faster than sequential: a mode that never saves time
    is never better than sequential, so leaving it out keeps the optimum. For each edge whose
    producer (role fwd) or consumer (role bwd) is a GEMM, V[edge, role, option, other, r, mode] is
    W times the pair variable Z (exact for binaries: Σ_other V = W, Σ_(r, mode) V ≤ Z of the pair);
    its coefficient Tables.overlap_delta (twice for fwd when the recomputed producer's output is
    converted again for the consumer's backward) goes into targets[edge.where] (the layer's time, or
    the post ops'). With `energy`, a mode that saves main-memory bytes somewhere (fused, near-memory
    reduction) is modeled as well, though it may save no time. Returns (W, V); V is keyed
    (edge, role, o_p, o_c, r, mode)."""
    g = tb.graph
    modes = tb.modes[1:]
    choice: dict[str, dict] = {}  # op -> {(option, r): selector variable}
    for (name, opt, r), i in Y.items():
        choice.setdefault(name, {})[(opt, r)] = i
    for (name, opt), i in X.items():
        choice.setdefault(name, {})[(opt, 0)] = i
    roles = [(e, role, name) for e in tb.edges if e.where in targets
             for role, name in (("fwd", e.producer), ("bwd", e.consumer)) if tb.overlaps(g.op(name))]
    delta: dict = {}  # (edge, role, own option, other option, mode) -> seconds per use
    useful: set = set()  # (op, own option, mode) that save time somewhere
    saves: set = set()  # (edge, role, own option, other option, mode) that save main-memory bytes
    for e, role, name in roles:
        for o_p in tb.options(g.op(e.producer)):
            for o_c in tb.options(g.op(e.consumer)):
                own, other = (o_p, o_c) if role == "fwd" else (o_c, o_p)
                for mode in modes:
                    d = tb.overlap_delta(e, o_p, o_c, role, mode)
                    if d:
                        delta[(e, role, own, other, mode)] = d
                        if d < 0:
                            useful.add((name, own, mode))
                    if energy and tb.overlap_saving_bytes(e, o_p, o_c, role, mode) > 0:
                        saves.add((e, role, own, other, mode))
                        useful.add((name, own, mode))
    W: dict = {}
    V: dict = {}
    for name, own, mode in sorted(useful, key=str):
        for (opt, r), _sel in choice[name].items():
            if opt == own:
                W[(name, opt, r, mode)] = lm.binary(f"W[{name},{opt},{r},{mode}]")
    per_choice: dict = {}
    for (name, opt, r, _mode), i in W.items():
        per_choice.setdefault((name, opt, r), {})[i] = 1.0
    for (name, opt, r), row in per_choice.items():
        row[choice[name][(opt, r)]] = -1.0
        lm.add(row, "<=", 0.0, scale=1.0, name=f"mode[{name},{opt},{r}]")
    for e, role, name in roles:
        others = tb.options(g.op(e.consumer if role == "fwd" else e.producer))
        again = role == "fwd" and tb.saved_by(e)
        target = targets[e.where]
        cover: dict = {}  # (o_p, o_c) -> V variables
        for (n, own, r, mode), w in W.items():
            if n != name or not any(delta.get((e, role, own, x, mode)) or (e, role, own, x, mode) in saves
                                    for x in others):
                continue
            mult = 2.0 if (again and r == 1) else 1.0
            row = {w: -1.0}
            for x in others:
                name_v = f"V[{e.tensor}:{e.producer}->{e.consumer},{role},{own},{x},{r},{mode}]"
                v = lm.continuous(name_v, 1.0, scale=1.0)
                row[v] = 1.0
                V[(e, role) + ((own, x) if role == "fwd" else (x, own)) + (r, mode)] = v
                cover.setdefault((own, x) if role == "fwd" else (x, own), []).append(v)
                d = delta.get((e, role, own, x, mode), 0.0)
                if d:
                    target[v] = target.get(v, 0.0) + mult * d
            lm.add(row, "==", 0.0, scale=1.0)
        for pair, vs in cover.items():
            row = {v: 1.0 for v in vs}
            row[Z[e][pair]] = -1.0
            lm.add(row, "<=", 0.0, scale=1.0)
    return W, V
