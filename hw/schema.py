"""Frozen description of a machine: dies, their grid or cluster topology, DRAM ports, energy.

Units are SI: bytes, bytes/s (per direction for links), FLOP/s, seconds, joules, watts, mm².
A switched cluster (GPU nodes) is described on the same (row, col) grid as a wafer: row = node,
col = device within the node, and the topology's `levels` say how devices talk.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Die(Frozen):
    """One compute die (a wafer region, a chiplet, or a GPU)."""

    name: str = "die"
    peak_flops: dict[str, float] = Field(description="dense peak FLOP/s per dtype, e.g. {'bf16': 3.12e14}")
    matmul_efficiency: float = Field(gt=0, le=1, description="fraction of peak a large GEMM reaches")
    gemm_half_size: float = Field(
        default=0.0, ge=0,
        description="FLOPs of one per-die GEMM at which it reaches half of matmul_efficiency's gain "
        "(efficiency = e * F / (F + half)); 0 = size independent")
    gemm_tile_elements: int = Field(
        default=0, ge=0,
        description="output elements of one GEMM thread-block tile (e.g. 256x128); with compute_units, "
        "GEMMs run in waves of compute_units tiles and a partly filled last wave wastes the rest "
        "(wave quantization); 0 = off")
    compute_units: int = Field(default=0, ge=0, description="tiles a die runs at once (GPU: SMs); 0 = off")
    gemm_roofline: bool = Field(
        default=False,
        description="a GEMM takes at least its operand and result bytes / memory bandwidth (roofline)")
    sram_bytes: float = Field(gt=0, description="on-die SRAM capacity, bytes")
    sram_bandwidth: float = Field(gt=0, description="on-die SRAM bandwidth, bytes/s")
    hbm_bytes: float | None = Field(default=None, gt=0, description="capacity of memory stacked on/next to the die")
    hbm_bandwidth: float | None = Field(default=None, gt=0, description="bytes/s")
    memory_efficiency: float = Field(default=1.0, gt=0, le=1, description="fraction of memory bandwidth reached")
    area_mm2: float = Field(gt=0)
    power_w: float = Field(gt=0, description="power at full load, W")

    @field_validator("peak_flops")
    @classmethod
    def _known_dtypes(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("peak_flops needs at least one dtype")
        for k, x in v.items():
            if k not in DTYPE_BYTES:
                raise ValueError(f"unknown dtype {k!r}; allowed: {sorted(DTYPE_BYTES)}")
            if x <= 0:
                raise ValueError(f"peak_flops[{k}] must be > 0, got {x}")
        return v

    @model_validator(mode="after")
    def _hbm_pair(self) -> "Die":
        if (self.hbm_bytes is None) != (self.hbm_bandwidth is None):
            raise ValueError("hbm_bytes and hbm_bandwidth must be given together")
        return self

    @property
    def memory_bytes(self) -> float:
        """Capacity of the die's main memory: HBM where it has one, else SRAM."""
        return self.hbm_bytes if self.hbm_bytes is not None else self.sram_bytes

    @property
    def memory_bandwidth(self) -> float:
        """Bandwidth of the main memory, bytes/s, after memory_efficiency."""
        bw = self.hbm_bandwidth if self.hbm_bandwidth is not None else self.sram_bandwidth
        return bw * self.memory_efficiency


class Link(Frozen):
    """A die-to-die link of a mesh or torus."""

    bandwidth: float = Field(gt=0, description="bytes/s per direction")
    latency_s: float = Field(ge=0, description="per hop")


class Level(Frozen):
    """One level of a switched cluster: devices within a group of `size` share this fabric."""

    name: str
    size: int = Field(ge=0, description="devices per group at this level (0 = the whole cluster)")
    bandwidth: float = Field(gt=0, description="bytes/s per device per direction")
    latency_s: float = Field(ge=0)
    hops: int = Field(default=1, gt=0, description="switch hops a transfer at this level crosses (energy)")
    efficiency: float = Field(
        default=1.0, gt=0, le=1,
        description="fraction of `bandwidth` a collective or transfer reaches at this level (NCCL bus bandwidth / link rate)")

    @property
    def effective_bandwidth(self) -> float:
        """bytes/s per device per direction that collectives reach: bandwidth x efficiency."""
        return self.bandwidth * self.efficiency


class Topology(Frozen):
    kind: Literal["mesh2d", "torus2d", "switched"]
    rows: int = Field(gt=0, description="grid rows, or nodes of a switched cluster")
    cols: int = Field(gt=0, description="grid columns, or devices per node")
    link: Link | None = None
    levels: tuple[Level, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> "Topology":
        if self.kind in ("mesh2d", "torus2d") and self.link is None:
            raise ValueError(f"topology.link is required for kind {self.kind!r}")
        if self.kind == "switched":
            if len(self.levels) < 1:
                raise ValueError("topology.levels: a switched topology needs at least one level")
            if self.levels[0].size != self.cols:
                raise ValueError(
                    f"topology.levels[0].size ({self.levels[0].size}) must equal cols, the devices per node ({self.cols})")
        return self


class DramPort(Frozen):
    """Off-die memory reached through a port attached next to die (row, col)."""

    row: int = Field(ge=0)
    col: int = Field(ge=0)
    bandwidth: float = Field(gt=0, description="bytes/s")
    capacity_bytes: float = Field(gt=0)


class Energy(Frozen):
    """Energy per event, joules; static power per die, watts."""

    flop_j: float = Field(ge=0)
    sram_byte_j: float = Field(ge=0)
    link_byte_hop_j: float = Field(ge=0)
    dram_byte_j: float = Field(ge=0)
    static_w: float = Field(default=0.0, ge=0, description="static power per die")


class Overlap(Frozen):
    """How compute and communication slow each other when run at the same time.

    compute_slowdown / comm_slowdown apply to software overlap (the collective runs on the compute
    cores, chunk by chunk); the fused_* factors apply to a fused GEMM + collective (T3-style track &
    trigger) and model the contention that remains there. See optimizer/model/overlap.py."""

    compute_slowdown: float = Field(default=1.0, ge=1, description="factor on compute time under overlap")
    comm_slowdown: float = Field(default=1.0, ge=1, description="factor on communication time under overlap")
    chunks: int = Field(default=0, ge=0, description="chunks of software overlap; 0 = one per ring member")
    chunk_overhead_s: float = Field(
        default=0.0, ge=0, description="fixed seconds per chunk of software overlap (kernel launch, sync), "
        "added to each chunk's compute and to its communication")
    fused_compute_slowdown: float = Field(
        default=1.0, ge=1, description="factor on compute time in a fused GEMM + collective when the memory "
        "controller arbitrates between the two streams (features.memory_controller_arbitration)")
    fused_compute_slowdown_unarbitrated: float = Field(
        default=1.0, ge=1, description="factor on compute time in a fused GEMM + collective without arbitration")
    fused_comm_slowdown: float = Field(
        default=1.0, ge=1, description="factor on communication time in a fused GEMM + collective")


class Features(Frozen):
    fused_collectives: bool = False
    near_memory_reduction: bool = False
    memory_controller_arbitration: bool = False
    weight_streaming: bool = False


class Hardware(Frozen):
    name: str
    description: str = ""
    die: Die
    topology: Topology
    dram_ports: tuple[DramPort, ...] = ()
    energy: Energy
    overlap: Overlap = Overlap()
    features: Features = Features()
    defects: tuple[tuple[int, int], ...] = ()

    @model_validator(mode="after")
    def _inside(self) -> "Hardware":
        r, c = self.topology.rows, self.topology.cols
        for d in self.defects:
            if not (0 <= d[0] < r and 0 <= d[1] < c):
                raise ValueError(f"defects: die {tuple(d)} is outside the {r}x{c} grid")
        dup = sorted({tuple(d) for d in self.defects if self.defects.count(d) > 1})
        if dup:
            raise ValueError(f"defects: die {dup[0]} is listed twice; each defective die once")
        if len(self.defects) >= r * c:
            raise ValueError("defects: every die is defective, zero usable dies")
        for i, p in enumerate(self.dram_ports):
            if not (0 <= p.row < r and 0 <= p.col < c):
                raise ValueError(f"dram_ports[{i}]: ({p.row}, {p.col}) is outside the {r}x{c} grid")
        return self

    @property
    def rows(self) -> int:
        return self.topology.rows

    @property
    def cols(self) -> int:
        return self.topology.cols

    @property
    def num_dies(self) -> int:
        """Usable dies (defects excluded)."""
        return self.rows * self.cols - len(self.defects)

    def usable(self, die: tuple[int, int]) -> bool:
        topo = self.topology
        return 0 <= die[0] < topo.rows and 0 <= die[1] < topo.cols and tuple(die) not in self.defects

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s of one die for dtype."""
        try:
            return self.die.peak_flops[dtype]
        except KeyError:
            raise ValueError(f"dtype {dtype!r} not supported by {self.name}; has {sorted(self.die.peak_flops)}") from None

    @property
    def dram_capacity(self) -> float:
        return sum(p.capacity_bytes for p in self.dram_ports)
