"""The event replay: tasks on the streams of each pipeline stage, started in program order once
their dependencies have ended, run at rates set by what else runs on the same stage.

Streams of one stage (one tensor group; every data-parallel replica behaves alike):
- "main": compute and the blocking tensor-group collectives, one after the other;
- "pp": the pipeline sends of this stage (background, own links to the neighbouring stage);
- "gather": ZeRO-3's weight all-gathers, prefetched (background, on the data-parallel rings);
- "grad": the data-parallel gradient reduction in buckets (background, on the data-parallel rings).

Contention (hw.overlap.compute_slowdown σc, comm_slowdown σm): while a background stream runs beside
the main stream, the main task progresses at 1/σc of its speed and the background one at 1/σm. The
"gather" and "grad" streams wait while the main stream runs a collective (kind "comm"): they use
the same collective engine, and the blocking collective goes first; when both run, they share the
data-parallel rings' bandwidth evenly. Rates change only when a task starts
or ends, so each task's end is exact (a fluid replay, no time step).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

STREAMS = ("main", "pp", "gather", "grad")
DATA_PARALLEL = ("gather", "grad")  # wait while the main stream runs a collective


@dataclass(eq=False)
class Task:
    """One event: `work` seconds run alone on `stream` of `stage`."""

    name: str
    stage: int
    stream: str
    work: float
    kind: str = "compute"  # main stream: "compute" (or a GEMM with its overlapped reduction) | "comm"
    deps: list = field(default_factory=list)  # tasks that must have ended
    after_start: "Task | None" = None  # a task that must have started (prefetch issued at its start)
    tag: tuple = ()  # (phase, chunk, micro-batch, layer), phase F | B | R (recompute) | S (after the pipeline)
    mem_start: float = 0.0  # bytes the stage's memory grows by when the task starts
    mem_end: float = 0.0  # ... when it ends (negative: freed)
    parts: tuple = ()  # (name, seconds alone) inside the task, e.g. the chunks of an overlapped GEMM
    start: float = math.nan
    end: float = math.nan
    dependents: list = field(default_factory=list)
    remaining: float = 0.0
    due: float = math.inf  # when it ends at the current rates


@dataclass
class StageState:
    queues: dict  # stream -> [Task] in program order
    slowdowns: tuple[float, float]
    pos: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})
    running: dict = field(default_factory=dict)  # stream -> Task
    rates: dict = field(default_factory=dict)
    clock: float = 0.0
    memory: float = 0.0
    peak_memory: float = 0.0
    version: int = 0


def _rates(st: StageState) -> dict:
    sc, sm = st.slowdowns
    main = st.running.get("main")
    held = main is not None and main.kind == "comm"
    beside = 1 / sm if main is not None else 1.0
    rates = {s: (0.0 if held and s in DATA_PARALLEL else beside) for s in st.running if s != "main"}
    sharing = [s for s in DATA_PARALLEL if rates.get(s)]
    for s in sharing:  # the gathers and the gradient buckets share the data-parallel rings' bandwidth
        rates[s] /= len(sharing)
    if main is not None:
        rates["main"] = 1 / sc if any(rates.values()) else 1.0
    return rates


def _ready(task: Task, t: float) -> bool:
    if task.after_start is not None and math.isnan(task.after_start.start):
        return False
    return all(not math.isnan(d.end) for d in task.deps)


def _advance(st: StageState, t: float) -> None:
    dt = t - st.clock
    if dt > 0:
        for s, task in st.running.items():
            task.remaining -= st.rates[s] * dt
    st.clock = t


def _set_memory(st: StageState, delta: float) -> None:
    st.memory += delta
    st.peak_memory = max(st.peak_memory, st.memory)


def _start_ready(st: StageState, t: float) -> list[Task]:
    """Start every stream's next task that can start at t; the tasks started."""
    started = []
    changed = True
    while changed:
        changed = False
        for s in STREAMS:
            q, i = st.queues[s], st.pos[s]
            if s in st.running or i >= len(q) or not _ready(q[i], t):
                continue
            task = q[i]
            st.pos[s] = i + 1
            task.start, task.remaining = t, task.work
            _set_memory(st, task.mem_start)
            started.append(task)
            if task.work <= 0:
                task.end = t
                _set_memory(st, task.mem_end)
            else:
                st.running[s] = task
            changed = True  # a start may release a prefetch waiting on it (after_start)
    return started


def replay(queues: list[dict], slowdowns: tuple[float, float]) -> list[StageState]:
    """Run every stage's streams to the end. queues[s][stream] = tasks in program order (each task's
    dependents are linked here). Raises RuntimeError on a deadlock (a dependency never met)."""
    for q in queues:
        for tasks in q.values():
            for task in tasks:
                for d in task.deps:
                    d.dependents.append(task)
                if task.after_start is not None:
                    task.after_start.dependents.append(task)
    states = [StageState(q, slowdowns) for q in queues]
    heap: list = []
    order = itertools.count()
    for s in range(len(states)):
        _wake(states, s, 0.0, heap, order)
    while heap:
        t, _, s, version = heapq.heappop(heap)
        st = states[s]
        if version != st.version:
            continue
        _advance(st, t)
        done = [x for x, task in st.running.items() if task.due <= t]
        woken = set()
        for x in done:
            task = st.running.pop(x)
            task.end, task.remaining = t, 0.0
            _set_memory(st, task.mem_end)
            woken.update(d.stage for d in task.dependents)
        woken.add(s)
        for w in sorted(woken):
            _wake(states, w, t, heap, order)
    for st in states:
        for s, q in st.queues.items():
            if st.pos[s] < len(q) or st.running:
                raise RuntimeError(f"simulation deadlock on stream {s}: {q[min(st.pos[s], len(q) - 1)].name}")
    return states


def _wake(states: list[StageState], s: int, t: float, heap: list, order) -> None:
    """Bring stage s to time t, start what can start (cascading zero-length tasks to the stages they
    release), and schedule its next task end."""
    st = states[s]
    _advance(st, t)
    for task in _start_ready(st, t):
        if task.end == t:  # zero work: may release tasks on other stages now
            for w in {d.stage for d in task.dependents} - {s}:
                _wake(states, w, t, heap, order)
    st.rates = _rates(st)
    st.version += 1
    for x, task in st.running.items():
        task.due = t + task.remaining / st.rates[x] if st.rates[x] > 0 else math.inf
    due = min((task.due for task in st.running.values()), default=math.inf)
    if due < math.inf:
        heapq.heappush(heap, (due, next(order), s, st.version))
