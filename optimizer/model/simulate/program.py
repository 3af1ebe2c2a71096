"""Every stage's tasks for one step, in program order, with their dependencies: the units of its
schedule (each a run of op pieces, ops.py), the pipeline sends between stages, ZeRO-3 prefetches,
the gradient buckets and the optimizer update after the pipeline, and the memory each task stores
or frees (memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import cost
from .engine import STREAMS, Task
from .memory import LayerBytes, layer_bytes, model_state, stage_params
from .ops import OpPrograms
from .schedule import layerwise_items, stage_order


@dataclass
class Plan:
    """What the program of a step needs to know beyond the ops: degrees, schedule, chunks."""

    ops: OpPrograms
    pp: int
    m: int
    virtual: int
    chunks: tuple[int, ...]  # layers of each model chunk, pipeline-layout order (chunk k on stage k % pp)
    schedule: str
    layer_group: int
    blocking_p2p: bool


@dataclass
class StageProgram:
    """One stage's queues as they are built, with what the next item must know."""

    stage: int
    queues: dict = field(default_factory=lambda: {s: [] for s in STREAMS})
    layer_start: Task | None = None  # first main task of the latest layer (ZeRO-3 prefetch beside it)
    waits: list = field(default_factory=list)  # tasks the next main task depends on

    def add(self, pieces, tag: tuple, prefetch_after: Task | None) -> list[Task]:
        """Append op pieces to the main stream (gathers to the gather stream, issued at the start of
        prefetch_after); the main tasks added."""
        out, gathers = [], []
        for name, kind, seconds, parts in pieces:
            if kind == "gather":
                g = Task(name, self.stage, "gather", seconds, after_start=prefetch_after, tag=tag)
                self.queues["gather"].append(g)
                gathers.append(g)
                continue
            t = Task(name, self.stage, "main", seconds, kind=kind, tag=tag, parts=parts,
                     deps=self.waits + gathers)
            self.waits, gathers = [], []
            self.queues["main"].append(t)
            out.append(t)
        return out


def _layer_of_chunk(plan: Plan, chunk: int) -> int:
    return sum(plan.chunks[:chunk])


class Builder:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.bytes: LayerBytes = layer_bytes(plan.ops)
        self.stages = [StageProgram(s) for s in range(plan.pp)]
        self.sends: dict = {}  # (F|B, model chunk, micro-batch) -> the send its receiver waits for
        n = plan.pp * plan.virtual
        self.layers = [sum(plan.chunks[s::plan.pp]) for s in range(plan.pp)]
        self.last_chunk = n - 1
        dp = plan.ops.tables
        self.buckets = [self._dp_sync_s(s) / self.layers[s] for s in range(plan.pp)] if dp.dp > 1 else None

    # ---- items ---------------------------------------------------------------------------
    def layer_forward(self, sp: StageProgram, layer: int, tag: tuple) -> None:
        fwd, _, _ = self.plan.ops.layer(layer == 0)
        tasks = sp.add(fwd, tag + (layer,), sp.layer_start)
        sp.layer_start = tasks[0]
        tasks[-1].mem_end += self.bytes.activations

    def layer_backward(self, sp: StageProgram, layer: int, tag: tuple, bucket: bool) -> Task:
        _, rec, bwd = self.plan.ops.layer(layer == 0)
        prefetch = sp.layer_start
        r = sp.add(rec, ("R",) + tag[1:] + (layer,), prefetch)
        b = sp.add(bwd, tag + (layer,), prefetch)
        (r or b)[0].mem_start += self.bytes.buffer
        b[-1].mem_end -= self.bytes.activations + self.bytes.buffer
        sp.layer_start = (r or b)[0]
        if bucket:
            self._bucket(sp, b[-1], tag)
        return b[-1]

    def _bucket(self, sp: StageProgram, after: Task, tag: tuple) -> None:
        if self.buckets is not None:
            sp.queues["grad"].append(Task("grad_bucket", sp.stage, "grad", self.buckets[sp.stage], deps=[after],
                                          tag=("S",) + tag[1:]))

    def embedding(self, sp: StageProgram, phase: str, tag: tuple) -> None:
        fwd, bwd = self.plan.ops.embedding()
        sp.add(fwd if phase == "F" else bwd, tag, None)

    def head(self, sp: StageProgram, phase: str, tag: tuple) -> None:
        fwd, bwd = self.plan.ops.head()
        tasks = sp.add(fwd if phase == "F" else bwd, tag, None)
        if tasks:
            tasks[-1].mem_end += self.bytes.head if phase == "F" else -self.bytes.head

    # ---- a unit of 1F1B: one chunk's forward or backward of one micro-batch -------------------
    def unit(self, sp: StageProgram, phase: str, local: int, mb: int) -> None:
        p, s = self.plan.pp, sp.stage
        chunk = local * p + s
        tag = (phase, chunk, mb)
        wait = self.sends.get((phase, chunk, mb))
        if wait is not None:
            sp.waits.append(wait)
        first, layers = _layer_of_chunk(self.plan, chunk), self.plan.chunks[chunk]
        if phase == "F":
            if chunk == 0:
                self.embedding(sp, "F", tag)
            for layer in range(first, first + layers):
                self.layer_forward(sp, layer, tag)
            if chunk == self.last_chunk:
                self.head(sp, "F", tag)
        else:
            if chunk == self.last_chunk:
                self.head(sp, "B", tag)
            last_mb = mb == self.plan.m - 1
            for layer in reversed(range(first, first + layers)):
                self.layer_backward(sp, layer, tag, last_mb and layer > first)
            if chunk == 0:
                self.embedding(sp, "B", tag)
            if last_mb:
                self._bucket(sp, sp.queues["main"][-1], tag)  # the chunk's first layer, with the embedding
        self._send(sp, phase, chunk, mb)

    def _send(self, sp: StageProgram, phase: str, chunk: int, mb: int) -> None:
        to = chunk + 1 if phase == "F" else chunk - 1
        if not 0 <= to <= self.last_chunk:
            return
        t = self.plan.ops.tables
        seconds = t.p2p(self.plan.ops.ch["add2"].split).time_s
        stream = "main" if self.plan.blocking_p2p else "pp"
        name = "send_activation" if phase == "F" else "send_gradient"
        task = Task(name, sp.stage, stream, seconds, kind="comm", deps=[sp.queues["main"][-1]],
                    tag=(phase, chunk, mb))
        sp.queues[stream].append(task)
        self.sends[(phase, to, mb)] = task

    # ---- after the pipeline ----------------------------------------------------------------
    def _dp_sync_s(self, s: int) -> float:
        """Seconds of stage s's gradient reduction across replicas, run alone: an all-reduce of its
        gradients (ZeRO 0), a reduce-scatter then an all-gather of the updated weights (1, 2), a
        reduce-scatter (3: the weights are gathered when used)."""
        t = self.plan.ops.tables
        grad = stage_params(self.plan.ops, self.layers[s], s == 0, s == self.plan.pp - 1) * t.work.dtype_bytes
        if t.zero_stage == 0:
            return t.dp_collective("all_reduce", grad).time_s
        rs = t.dp_collective("reduce_scatter", grad).time_s
        return rs if t.zero_stage == 3 else rs + t.dp_collective("all_gather", grad).time_s

    def finish(self, sp: StageProgram) -> None:
        """The weight-gradient all-reduces a data-like split leaves partial (blocking), then the Adam
        update once the gradient buckets are reduced."""
        ops, s = self.plan.ops, sp.stage
        g, L = ops.tables.graph, self.layers[s]
        first, last = s == 0, s == self.plan.pp - 1
        extras = (g.pre if first else ()) + (g.post if last else ())
        wsync = L * sum(ops.oc[o.name].wsync.time_s for o in g.block) + sum(ops.oc[o.name].wsync.time_s for o in extras)
        pieces = [("weight_grad_allreduce", "comm", wsync, ())] if wsync > 0 else []
        params = stage_params(ops, L, first, last)
        upd = cost.optimizer_update_time(params, ops.tables.dp, ops.tables.zero_stage, ops.tables.hw.die)
        sp.add(pieces, ("S", -1, -1), None)
        sp.waits += sp.queues["grad"][-1:]
        sp.add([("adam_update", "compute", upd, ())], ("S", -1, -1), None)

    def static_bytes(self, s: int) -> float:
        params = stage_params(self.plan.ops, self.layers[s], s == 0, s == self.plan.pp - 1)
        return sum(model_state(self.plan.ops, params).values())


def build(plan: Plan) -> tuple[Builder, list[dict]]:
    """Every stage's queues, program order (stages are built unit by unit in the order the
    pipeline first reaches them, so each send exists before its receiver asks for it)."""
    b = Builder(plan)
    if plan.schedule == "layerwise":
        _layerwise(b)
    else:
        orders = [stage_order(plan.schedule, plan.pp, plan.m, plan.virtual, s) for s in range(plan.pp)]
        _interleave_build(b, orders)
    for sp in b.stages:
        b.finish(sp)
    return b, [sp.queues for sp in b.stages]


def _interleave_build(b: Builder, orders: list[list]) -> None:
    """Build units stage by stage, each as far as the sends it waits for exist."""
    pos = [0] * len(orders)
    progress = True
    while progress:
        progress = False
        for s, order in enumerate(orders):
            while pos[s] < len(order):
                phase, local, mb = order[pos[s]]
                chunk = local * b.plan.pp + s
                needs = (phase == "F" and chunk > 0) or (phase == "B" and chunk < b.last_chunk)
                if needs and (phase, chunk, mb) not in b.sends:
                    break
                b.unit(b.stages[s], phase, local, mb)
                pos[s] += 1
                progress = True
    if any(pos[s] < len(o) for s, o in enumerate(orders)):
        raise RuntimeError("the schedule's units wait on each other (deadlock)")


def _layerwise(b: Builder) -> None:
    sp, m, k = b.stages[0], b.plan.m, b.plan.layer_group
    L = b.layers[0]
    for what, layer, mb in layerwise_items(L, m, k):
        phase = what[-1]
        tag = (phase, 0, mb)
        if what.startswith("embedding"):
            b.embedding(sp, phase, tag)
        elif what.startswith("head"):
            b.head(sp, phase, tag)
        elif phase == "F":
            b.layer_forward(sp, layer, tag)
        else:
            b.layer_backward(sp, layer, tag, mb == m - 1 and layer > 0)
        if what == "embedding_B" and mb == m - 1:
            b._bucket(sp, sp.queues["main"][-1], tag)
