"""simulate(mapping, workload, hw) -> SimResult: a second referee of a mapping, by event replay.

It plays one training step: every micro-batch's forward and backward of every layer on every stage
in the order of the mapping's schedule (1F1B, interleaved, layer-wise), each operator's compute and
collectives as events on its stage's streams (schedule.py, ops.py, program.py), the pipeline sends,
ZeRO-3 prefetches and gradient buckets beside the compute as the mapping says, and a memory counter
per stage (activations stored at each forward, freed at its backward; the model state static). The
step time and peak memory are read off the replay (engine.py), not from the stage formulas
evaluate() uses (stage.py, cost.pipeline_time, cost.micro_batches_in_flight). Where the two differ
by design: docs/cost-model.md, "Second referee".
"""

from __future__ import annotations

from dataclasses import dataclass

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ..evaluate import normalized_choices, prepare
from ..mapping import Mapping, chunk_layers
from ..overlap import OverlapParams
from .engine import Task, replay
from .ops import OpPrograms
from .program import Plan, build


@dataclass(frozen=True)
class Event:
    stage: int
    stream: str  # main | pp | gather | grad
    name: str
    tag: tuple  # (phase F|B|R|S, model chunk, micro-batch[, layer])
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SimResult:
    step_time_s: float  # the last stage's last event
    peak_memory_bytes: float  # the most loaded die
    stage_peak_memory_bytes: tuple[float, ...]  # per stage: model state + the replay's peak of the rest
    stage_busy_s: tuple[float, ...]  # per stage: seconds its main stream runs (compute and blocking collectives)
    stage_end_s: tuple[float, ...]  # per stage: when its optimizer update ends
    events: tuple[Event, ...]


def _plan(mapping: Mapping, work: Workload, hw: Hardware) -> Plan:
    """evaluate()'s checks on the mapping at one chunk per stage (the replay places the chunks
    itself, so uneven chunks are allowed), and the per-op programs of its outer point."""
    if mapping.offload:
        raise ConfigError(f"offload: simulate() does not replay DRAM traffic yet; got {list(mapping.offload)} "
                          f"(allowed: an empty offload)")
    chunks = chunk_layers(mapping, work.model.layers)
    per_stage = tuple(sum(chunks[s::mapping.pp]) for s in range(mapping.pp))
    flat = mapping.model_copy(update={"virtual_stages": 1, "layers_per_chunk": None, "layers_per_stage": per_stage,
                                      "schedule": "1f1b" if mapping.schedule == "interleaved" else mapping.schedule})
    flat, hw, tables = prepare(flat, work, hw)
    ops = OpPrograms(tables, normalized_choices(flat, tables))
    return Plan(ops, mapping.pp, tables.m, mapping.virtual_stages, chunks, mapping.schedule, mapping.layer_group,
                mapping.pp_transfer == "blocking")


def simulate(mapping: Mapping | str, work: Workload, hardware: Hardware | str) -> SimResult:
    """Replay one training step of `mapping` (seconds, bytes per die)."""
    hw = hw_loader.load(hardware) if isinstance(hardware, str) else hardware
    if not isinstance(mapping, Mapping):
        mapping = Mapping.load(mapping)
    plan = _plan(mapping, work, hw)
    builder, queues = build(plan)
    p = OverlapParams.from_hardware(hw)
    states = replay(queues, (p.compute_slowdown, p.comm_slowdown))
    tasks: list[Task] = [t for q in queues for stream in q.values() for t in stream]
    events = tuple(Event(t.stage, t.stream, t.name, t.tag, t.start, t.end) for t in tasks)
    peaks = tuple(builder.static_bytes(s) + st.peak_memory for s, st in enumerate(states))
    busy = tuple(sum(t.end - t.start for t in q["main"]) for q in queues)
    ends = tuple(q["main"][-1].end for q in queues)
    return SimResult(max(t.end for t in tasks), max(peaks), peaks, busy, ends, events)


__all__ = ["simulate", "SimResult", "Event"]
