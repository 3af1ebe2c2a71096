"""Chrome/Perfetto trace export: one step's timeline, placed by simulating the pipeline schedule."""

from __future__ import annotations

from typing import Any

from hw.schema import Hardware
from models.schema import Workload

from ...model import cost
from ...model.evaluate import StageScore, normalized_choices, prepare, stage_scores
from ...model.mapping import Mapping, OpChoice
from ...model.tables import Tables


def _pieces(tables: Tables, ch: dict[str, OpChoice], stage: int, st: StageScore) -> tuple[list, list]:
    """(forward, backward) events of one micro-batch on one stage: [(name, seconds)], summing to st.time_s.

    Forward and backward compute come from the cost tables; the stage's tensor-parallel collectives
    (and DRAM traffic, if any) are split between them in the same ratio, its pipeline transfers
    half and half.
    """
    g = tables.graph
    first, last = stage == 0, stage == tables.pp - 1
    layers = tables.layers_per_stage[stage]
    fwd = layers * sum(tables.option_cost(o, ch[o.name].split).fwd_s for o in g.block)
    extra = (g.pre if first else ()) + (g.post if last else ())
    fwd += sum(tables.option_cost(o, ch[o.name].split).fwd_s for o in extra)
    p = dict(st.parts)
    compute, recompute = p.pop("compute"), p.pop("recompute")
    fwd = min(fwd, compute)
    r = fwd / compute if compute > 0 else 0.5
    pp = p.pop("pp_comm")
    forward = [("forward", fwd)]
    backward = [("recompute", recompute), ("backward", compute - fwd)]
    for name, t in p.items():  # tp_comm, and any other per-micro-batch part (e.g. dram): in the same ratio
        forward.append((name, r * t))
        backward.append((name, t - r * t))
    forward.append(("pp_comm", pp / 2))
    backward.append(("pp_comm", pp - pp / 2))
    return forward, backward


def _orders(p: int, m: int, v: int) -> list[list[tuple[str, int, int]]]:
    """Per stage, its (F|B, chunk, micro-batch) in 1F1B order (Megatron-LM's, interleaved when v > 1)."""
    if v == 1:
        fseq = bseq = [(0, i) for i in range(m)]
        warm = [min(p - s - 1, m) for s in range(p)]
    else:
        fseq, bseq = [], []
        for g0 in range(0, m, p):
            group = range(g0, min(g0 + p, m))
            fseq += [(c, i) for c in range(v) for i in group]
            bseq += [(c, i) for c in reversed(range(v)) for i in group]
        warm = [min((p - s - 1) * 2 + (v - 1) * p, m * v) for s in range(p)]
    n = len(fseq)
    orders = []
    for s in range(p):
        w = warm[s]
        o = [("F", *fseq[k]) for k in range(w)]
        for k in range(n - w):
            o += [("F", *fseq[w + k]), ("B", *bseq[k])]
        o += [("B", *bseq[k]) for k in range(n - w, n)]
        orders.append(o)
    return orders


def _deps(kind: str, s: int, c: int, i: int, p: int, v: int) -> list[tuple]:
    if kind == "F":
        if s > 0:
            return [("F", s - 1, c, i)]
        return [("F", p - 1, c - 1, i)] if c > 0 else []
    own = ("F", s, c, i)
    if s < p - 1:
        return [("B", s + 1, c, i), own]
    return [("B", 0, c + 1, i), own] if c < v - 1 else [own]


def _simulate(p: int, m: int, v: int, f: list[float], b: list[float]) -> list[list[tuple]] | None:
    """1F1B with data dependencies: per stage [(F|B, chunk, micro-batch, start_s, end_s)]; None on deadlock."""
    orders = _orders(p, m, v)
    end: dict[tuple, float] = {}
    free, ptr = [0.0] * p, [0] * p
    out: list[list[tuple]] = [[] for _ in range(p)]
    progress = True
    while progress:
        progress = False
        for s in range(p):
            while ptr[s] < len(orders[s]):
                kind, c, i = orders[s][ptr[s]]
                deps = _deps(kind, s, c, i, p, v)
                if any(d not in end for d in deps):
                    break
                start = max([free[s]] + [end[d] for d in deps])
                stop = start + (f[s] if kind == "F" else b[s])
                end[(kind, s, c, i)] = free[s] = stop
                out[s].append((kind, c, i, start, stop))
                ptr[s] += 1
                progress = True
    return out if all(ptr[s] == len(orders[s]) for s in range(p)) else None


def _flow_shop(p: int, m: int, v: int, f: list[float], b: list[float]) -> list[list[tuple]]:
    """The cost model's own pipeline: m·v chunk units cross the stages in order, each stage taking one
    unit at a time (makespan Σ T_s / v + (m − 1/v)·max T_s, cost.pipeline_time). Per stage
    [(U, chunk, micro-batch, start_s, end_s)]."""
    units = [(c, i) for g0 in range(0, m, p) for c in range(v) for i in range(g0, min(g0 + p, m))]
    out: list[list[tuple]] = [[] for _ in range(p)]
    prev = [0.0] * len(units)
    for s in range(p):
        free = 0.0
        for k, (c, i) in enumerate(units):
            start = max(free, prev[k])
            free = prev[k] = start + f[s] + b[s]
            out[s].append(("U", c, i, start, free))
    return out


def chrome_trace(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> dict[str, Any]:
    """A Chrome/Perfetto trace of one step (open in https://ui.perfetto.dev): one process per
    pipeline stage (one data-parallel replica shown; all are alike), "X" events with ts/dur in µs.

    Each micro-batch (chunk, when interleaved) is a forward (forward, tp_comm, pp_comm) and a
    backward (recompute, backward, tp_comm, pp_comm) with the durations evaluate() charges, placed
    by simulating 1F1B with its data dependencies; gaps are "bubble", and so is the rest up to the
    cost model's pipeline time (cost.pipeline_time). Where the simulated span exceeds that time
    (uneven stages, interleaving with micro-batches not a multiple of pp) the units are laid out as
    the formula counts them instead, a flow shop; otherData.layout says which.
    Then each stage's sync parts (dp_comm, optimizer, …) and "idle" until the slowest stage's sync
    ends: every stage's events sum to evaluate(...).step_time_s.
    """
    mapping, machine, tables = prepare(mapping, work, hw)
    ch = normalized_choices(mapping, tables)
    stages = stage_scores(mapping, tables)
    p, m, v = tables.pp, tables.m, tables.virtual
    times = [st.time_s for st in stages]
    pipe = cost.pipeline_time(times, m, v)
    step = pipe + max(st.sync_s for st in stages)
    pieces = [_pieces(tables, ch, s, st) for s, st in enumerate(stages)]
    f = [sum(d for _, d in fw) / v for fw, _ in pieces]
    b = [sum(d for _, d in bw) / v for _, bw in pieces]
    sched = _simulate(p, m, v, f, b)
    layout = "1f1b"
    if sched is None or max(e[4] for row in sched for e in row) > pipe * (1 + 1e-12):
        sched, layout = _flow_shop(p, m, v, f, b), "cost-model flow shop"

    us, eps = 1e6, 1e-12 * step
    events: list[dict[str, Any]] = []
    first_layer = 0
    for s, (st, row) in enumerate(zip(stages, sched)):
        L = tables.layers_per_stage[s]
        events.append({"name": "process_name", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"name": f"stage {s} (layers {first_layer}-{first_layer + L - 1})"}})
        events.append({"name": "process_sort_index", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"sort_index": s}})
        events.append({"name": "thread_name", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"name": f"replica 0, tensor group of {mapping.tp} dies"}})
        first_layer += L
        cursor = 0.0

        def emit(name: str, cat: str, dur: float, **args: Any) -> None:
            nonlocal cursor
            if dur <= 0:
                return
            events.append({"name": name, "cat": cat, "ph": "X", "ts": cursor * us, "dur": dur * us,
                           "pid": s, "tid": 0, "args": args})
            cursor += dur

        fw, bw = pieces[s]
        for kind, c, i, start, _stop in row:
            if start - cursor > eps:  # smaller gaps are float noise: the next event starts at once
                emit("bubble", "idle", start - cursor)
            parts = fw if kind == "F" else bw if kind == "B" else fw + bw
            for name, d in parts:
                cat = "comm" if name.endswith("_comm") else "compute"
                emit(name, cat, d / v, micro_batch=i, **({"chunk": c} if v > 1 else {}))
        emit("bubble", "idle", pipe - cursor)
        for name, t in st.sync_parts.items():  # dp_comm, optimizer (and optimizer_dram, if any)
            emit(name, "comm" if name.endswith("_comm") else "compute", t)
        emit("idle", "idle", step - cursor, reason="waits for the slowest stage's gradient sync")
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"model": work.model.name, "hw": machine.name, "mapping": mapping.name,
                      "global_batch": work.global_batch, "seq_len": work.seq_len, "micro_batches": m,
                      "step_time_s": step, "pipeline_s": pipe, "layout": layout},
    }
