"""A mapping of one training step onto the dies (the decision), and the Report that scores it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw.loader import ConfigError, format_validation_error

from .layout import balanced_layers, even_chunks


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpChoice(Frozen):
    """One operator's partition on its tensor group and whether backward recomputes it.

    split: loop dim per group axis (axis 0 = the group's rows, axis 1 = its columns);
    None replicates along that axis; the same dim on both axes is a 1D split over all dies.
    overlap: how a GEMM runs with the reductions of the partial results it produces (forward: its
    output's conversion; backward: its input gradients'): "sequential" (one after the other),
    "chunked" (software overlap in chunks, with contention) or "fused" (T3-style track & trigger;
    needs features.fused_collectives). No effect on ops that are not GEMMs.
    """

    split: tuple[str | None, str | None] = (None, None)
    recompute: bool = False
    overlap: Literal["sequential", "chunked", "fused"] = "sequential"


class StageGroup(Frozen):
    """Where the tensor group of one (stage, data-parallel replica) sits: its top-left die."""

    stage: int = Field(ge=0)
    replica: int = Field(ge=0)
    origin: tuple[int, int]


class Mapping(Frozen):
    pp: int = Field(default=1, gt=0, description="pipeline stages")
    dp: int = Field(default=1, gt=0, description="data-parallel replicas")
    tp_shape: tuple[int, int] = Field(default=(1, 1), description="tensor group rows x cols on the grid")
    micro_batch: int = Field(default=1, gt=0, description="sequences per micro-batch")
    zero_stage: Literal[0, 1, 2, 3] = 0
    schedule: Literal["1f1b", "interleaved", "layerwise"] = Field(
        default="1f1b", description="1f1b; interleaved (virtual_stages chunks per stage); layerwise (pp = 1: "
        "each layer runs a group of layer_group micro-batches in turn, so DRAM-held weights and gradients "
        "move once per group)")
    virtual_stages: int = Field(default=1, gt=0, description="model chunks per stage (interleaved)")
    layer_group: int = Field(default=1, gt=0, description="micro-batches per layer-wise group (layerwise)")
    layers_per_stage: tuple[int, ...] | None = Field(default=None, description="None = balanced split")
    layers_per_chunk: tuple[int, ...] | None = Field(
        default=None, description="interleaved: layers of each of the pp x virtual_stages model chunks in "
        "Megatron-LM's pipeline-layout order (chunk k runs on stage k % pp; the first chunk holds the "
        "embedding, the last the output layer and loss); None = each stage's layers split evenly")
    ops: dict[str, OpChoice] = Field(default_factory=dict, description="per operator; missing = replicated, stored")
    groups: tuple[StageGroup, ...] = ()
    offload: tuple[Literal["weights", "grads", "optimizer", "activations"], ...] = Field(
        default=(), description="tensor classes kept in DRAM behind the ports instead of on-die memory")
    fp32_grad_accumulation: bool = Field(
        default=False, description="Megatron's accounting: fp32 gradient buffer (18 B/param) instead of ZeRO's 16")
    pp_transfer: Literal["overlapped", "blocking"] = Field(
        default="overlapped", description="pipeline transfers: 'overlapped' (each die sends 1/t of the boundary "
        "activation, beside the stage's other work: Megatron-LM's scatter/gather); 'blocking' (every die sends "
        "the whole activation and the stage waits for it: DeepSpeed's pipeline engine)")
    zero3_gather: Literal["prefetched", "per_tensor"] = Field(
        default="prefetched", description="ZeRO-3 weight gathers: 'prefetched' (one all-gather per op, beside the "
        "previous layer's compute); 'per_tensor' (one all-gather per parameter tensor, waited for when the op "
        "runs: DeepSpeed's stage 3 as run in Narayanan et al. SC21 Table 2)")
    name: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Mapping":
        r, c = self.tp_shape
        if r <= 0 or c <= 0:
            raise ValueError(f"tp_shape: both sides must be > 0, got {self.tp_shape}")
        if self.schedule == "1f1b" and self.virtual_stages != 1:
            raise ValueError("virtual_stages: must be 1 with schedule '1f1b' (use schedule='interleaved')")
        if self.schedule == "layerwise":
            if self.pp != 1 or self.virtual_stages != 1:
                raise ValueError(f"schedule: 'layerwise' needs pp = 1 and virtual_stages = 1, got pp = {self.pp}, "
                                 f"virtual_stages = {self.virtual_stages} (allowed with pp > 1: '1f1b', 'interleaved')")
            if self.layer_group < 2:
                raise ValueError("layer_group: must be >= 2 with schedule 'layerwise' (1 is schedule '1f1b')")
        elif self.layer_group != 1:
            raise ValueError(f"layer_group: must be 1 with schedule {self.schedule!r} (use schedule='layerwise')")
        if self.groups:
            if len(self.groups) != self.pp * self.dp:
                raise ValueError(f"groups: need pp*dp = {self.pp * self.dp} stage groups, got {len(self.groups)}")
            seen = {(g.stage, g.replica) for g in self.groups}
            want = {(s, d) for s in range(self.pp) for d in range(self.dp)}
            if seen != want:
                raise ValueError("groups: every (stage, replica) pair must appear exactly once")
        if len(set(self.offload)) != len(self.offload):
            raise ValueError(f"offload: each tensor class once, got {list(self.offload)}")
        if self.layers_per_stage is not None:
            if len(self.layers_per_stage) != self.pp:
                raise ValueError(f"layers_per_stage: need {self.pp} entries (one per stage), got {len(self.layers_per_stage)}")
            if any(x <= 0 for x in self.layers_per_stage):
                raise ValueError("layers_per_stage: every stage needs at least one layer")
        if self.layers_per_chunk is not None:
            self._check_chunks()
        return self

    def _check_chunks(self) -> None:
        chunks, n = self.layers_per_chunk, self.pp * self.virtual_stages
        if len(chunks) != n:
            raise ValueError(f"layers_per_chunk: need pp x virtual_stages = {n} entries, got {len(chunks)}")
        if any(x <= 0 for x in chunks):
            raise ValueError("layers_per_chunk: every chunk needs at least one layer")
        per_stage = tuple(sum(chunks[s::self.pp]) for s in range(self.pp))
        if self.layers_per_stage is not None and per_stage != tuple(self.layers_per_stage):
            raise ValueError(f"layers_per_chunk: its stages hold {per_stage} layers, layers_per_stage says "
                             f"{tuple(self.layers_per_stage)} (give one of the two, or both agreeing)")

    @property
    def tp(self) -> int:
        return self.tp_shape[0] * self.tp_shape[1]

    @property
    def devices(self) -> int:
        return self.pp * self.dp * self.tp

    def group_dies(self, g: StageGroup) -> tuple[tuple[int, int], ...]:
        (r0, c0), (r, c) = g.origin, self.tp_shape
        return tuple((r0 + i, c0 + j) for i in range(r) for j in range(c))

    def used_dies(self) -> set[tuple[int, int]]:
        """Dies (row, col) — or (node, device) on a switched cluster — the mapping occupies."""
        return {d for g in self.groups for d in self.group_dies(g)}

    def choice(self, op: str) -> OpChoice:
        return self.ops.get(op, OpChoice())

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False))
        else:
            path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Mapping":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"mapping file not found: {path}")
        text = path.read_text()
        try:
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"mapping file {path} is not valid {path.suffix[1:].upper()}: {err}") from None
        if isinstance(data, dict) and "mapping" in data and "pp" not in data:
            data = data["mapping"]  # a saved plan: {"mapping": ..., "report": ...}
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "mapping")) from None


def chunk_layers(mapping: Mapping, num_layers: int) -> tuple[int, ...]:
    """Layers of each model chunk, pp x virtual_stages entries in pipeline-layout order (chunk k runs
    on stage k % pp as its virtual chunk k // pp). As given, or each stage's layers (balanced when not
    given) split as evenly as possible over its chunks, the earlier chunks taking the extra layers."""
    if mapping.layers_per_chunk is not None:
        return tuple(mapping.layers_per_chunk)
    per_stage = mapping.layers_per_stage or balanced_layers(num_layers, mapping.pp)
    return even_chunks(tuple(per_stage), mapping.virtual_stages)


class Report(Frozen):
    """The score of a mapping. Seconds, bytes, joules; memory of the most loaded die."""

    step_time_s: float
    tokens_per_s: float
    mfu: float = Field(description="model FLOPs (no recompute) / (step time x devices x peak)")
    tflops_per_device: float = Field(description="executed matmul TFLOP/s per device, recompute included (SC21's count)")
    energy_j: float
    peak_memory_bytes: float
    memory_capacity_bytes: float
    fits: bool
    devices: int
    memory: dict[str, float]
    breakdown: dict[str, float]
    energy: dict[str, float]
    stage_times_s: tuple[float, ...]
    dram_bytes: float = Field(default=0.0, description="DRAM port traffic of one step, all dies")
    dram_stored_bytes: float = Field(default=0.0, description="bytes kept in DRAM, all dies")
    dram_capacity_bytes: float = 0.0
    offload: tuple[str, ...] = ()
    link_bytes: float = 0.0
    memory_traffic_bytes: float = Field(
        default=0.0, description="bytes read + written in the dies' main memory in one step, all dies: compute "
        "inputs/outputs and collectives (less what fused near-memory reduction saves); priced as energy 'memory'")
