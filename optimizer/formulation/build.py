"""An inner model under construction (Build): the state each constraint family adds its variables
and rows to, the units its rows are written in, and the first family, the partition choice of
every operator with its recompute flag, over which the others are written."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import overlap
from ..model.tables import Tables
from .model import LinearModel, Var, add_expr

GB = 1e9  # memory rows are written in GB for numerical balance
KB_PER_GB = 1e6  # CP-SAT counts bytes kept on or off the die in KB
FINE = 1e12  # CP-SAT: rows mixing DRAM bytes and seconds are counted in picoseconds


def upper_bound(expr: dict[int, float], group_of: dict, variables: list[Var]) -> float:
    """An upper bound of a linear expression: each op's largest coefficient (one option is
    picked), each continuous variable (and any other binary) at its bound; negative coefficients
    of non-selector variables count 0."""
    top: dict = {}
    total = 0.0
    for i, c in expr.items():
        if i in group_of:
            top[group_of[i]] = max(top.get(group_of[i], 0.0), c)
        elif c > 0:
            total += c * variables[i].ub
    return total + sum(top.values())


@dataclass
class Build:
    """The inner model of one outer point while its families are added (variables keyed as in
    optimizer.formulation.inner)."""

    lm: LinearModel
    tb: Tables
    H: dict  # tensor class -> binary: the class lives in DRAM
    time_scale: float  # CP-SAT integer units per second of the time variables (ns or ps)
    exposed_pieces: tuple  # overlap.exposed_pieces of the point's slowdowns: ((a1, b1), (a2, b2))
    Y: dict = field(default_factory=dict)  # (op, option, r) -> binary, block ops
    X: dict = field(default_factory=dict)  # (op, option) -> binary, pre/post ops
    sel: dict = field(default_factory=dict)  # op -> {option: linear expr of "op picks option"}
    group_of: dict = field(default_factory=dict)  # selector variable -> its op (one option per op)

    def upper(self, expr: dict[int, float]) -> float:
        return upper_bound(expr, self.group_of, self.lm.vars)

    def may_recompute(self, name: str) -> bool:
        return any(k[0] == name and k[2] == 1 for k in self.Y)

    def recomputed(self, name: str) -> dict[int, float]:
        """The expression of "op `name` is recomputed in backward"."""
        return {i: 1.0 for (n, _o, r), i in self.Y.items() if n == name and r == 1}

    def op_expr(self, o, field_fn, recompute_fn=None) -> dict[int, float]:
        """Σ over the op's (option[, r]) choices of a per-choice coefficient."""
        e: dict[int, float] = {}
        for opt in self.tb.options(o):
            oc = self.tb.option_cost(o, opt)
            if (o.name, opt) in self.X:
                e[self.X[(o.name, opt)]] = field_fn(oc)
            for r in (0, 1):
                if (o.name, opt, r) in self.Y:
                    e[self.Y[(o.name, opt, r)]] = field_fn(oc) + (recompute_fn(oc) if (r and recompute_fn) else 0.0)
        return e

    def ops_expr(self, ops, field_fn, recompute_fn=None) -> dict[int, float]:
        """Σ over ops of op_expr."""
        e_sum: dict[int, float] = {}
        for o in ops:
            add_expr(e_sum, self.op_expr(o, field_fn, recompute_fn))
        return e_sum


def start_build(tb: Tables, offload: tuple[str, ...]) -> Build:
    """An empty model with the tier variables H[c] of the classes in `offload` (c lives in DRAM)."""
    lm = LinearModel()
    H = {c: lm.binary(f"H[{c}]") for c in offload}  # class c lives in DRAM
    # CP-SAT counts step times in ns, or in ps once DRAM bytes (counted in KB) enter the time rows
    po = tb.overlap_params
    return Build(lm, tb, H, FINE if H else 1e9, overlap.exposed_pieces(po.compute_slowdown, po.comm_slowdown))


def add_partition_choices(build: Build, rec_allowed: dict[str, tuple[bool, ...]]) -> None:
    """Y[op, option, r] per block op (r = 1 recomputes it in backward, as rec_allowed[op] lets it),
    X[op, option] per pre/post op, and the rows "each op picks one choice"."""
    lm, tb, g = build.lm, build.tb, build.tb.graph
    for o in g.block:
        build.sel[o.name] = {}
        one: dict[int, float] = {}
        for opt in tb.options(o):
            e: dict[int, float] = {}
            for r in rec_allowed[o.name]:
                i = lm.binary(f"Y[{o.name},{opt},{int(r)}]")
                build.Y[(o.name, opt, int(r))] = i
                e[i] = 1.0
                one[i] = 1.0
            build.sel[o.name][opt] = e
        lm.add(one, "==", 1.0, scale=1.0, name=f"one[{o.name}]")
    for o in g.pre + g.post:
        build.sel[o.name] = {}
        one = {}
        for opt in tb.options(o):
            i = lm.binary(f"X[{o.name},{opt}]")
            build.X[(o.name, opt)] = i
            build.sel[o.name][opt] = {i: 1.0}
            one[i] = 1.0
        lm.add(one, "==", 1.0, scale=1.0, name=f"one[{o.name}]")
    build.group_of.update({i: k[0] for k, i in list(build.Y.items()) + list(build.X.items())})
