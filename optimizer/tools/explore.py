"""Architecture co-exploration (TMAC-style): sweep a hardware template, solve every design that fits
a budget, and keep the Pareto front of (throughput ↑, energy per step ↓, area ↓).

    template = Template(base="tmac-wafer", rows=[4, 8], cols=[4, 8], sram_bytes=[1.28e8, 2.56e8])
    points = explore(template, work, Budget(area_mm2=40_000), executor="pool", workers=2)
    front = pareto(points)

A design point is the base hardware with one value of each swept field: grid rows and columns,
SRAM per die, die-to-die link bandwidth (bytes/s per direction) and DRAM port bandwidth (bytes/s,
every port of the base). Grid shape and SRAM go through hw.load's overrides (rows, cols,
sram_bytes, link_bandwidth); DRAM port bandwidth is not one of them, so it is set on every port of
the description before validation — every variant is a validated Hardware, and a value hw.load
would reject is an error naming the template field before anything is solved. A grid that grows
or shrinks keeps the base's DRAM ports, clamped inside the grid (hw.load's rule).

Area is Σ die area over every site of the grid (a defective die still occupies silicon); power is
Σ die power over the usable dies (assumption: a defective die is fused off and draws nothing).
Die power is fixed per preset; die area is fixed too unless the template gives
`sram_mm2_per_gb`, the silicon one GB of SRAM costs: then a die's area moves by that much per GB
of SRAM added or removed relative to the base (SRAM_MM2_PER_GB_N5 is a documented value).

Points are solved independently with optimizer.solve (threads=threads_per_worker) serially, in a
local process pool, or on Ray; results come back in the template's order (rows, cols, sram_bytes,
link_bandwidth, dram_bandwidth, each in the order given), whatever order they finish in. CP-SAT
with one thread is deterministic, so every executor returns the same points as long as each point
finishes (status optimal or infeasible) inside its time limit; a point stopped by the time limit
depends on the machine's speed.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ..formulation.backends import BACKENDS
from ..model.mapping import Mapping
from ..search.space import get_space
from ..search import interrupt
from .executors import EXECUTORS, solve_points

# assumption: relative slack when comparing an area/power sum with a budget, only to absorb float
# rounding (a design at exactly the preset's area must fit a budget set to that area)
BUDGET_REL_TOL = 1e-12
SWEPT = ("rows", "cols", "sram_bytes", "link_bandwidth", "dram_bandwidth")

# Silicon per GB of on-die SRAM, for Template.sram_mm2_per_gb. Source: TSMC N5 high-density
# 6T bitcell 0.021 µm² (Yeap et al., "5nm CMOS production technology platform", IEDM 2019):
# 8e9 bits x 0.021 µm² = 168 mm² of bitcells per GB. Assumption: ~70% array efficiency once
# sense amplifiers, decoders, redundancy and wiring are counted (a typical macro figure; not
# from a TMAC die), so 168 / 0.7 = 240 mm² per GB.
SRAM_MM2_PER_GB_N5 = 240.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _positive(values: list | None, field: str, integer: bool = False) -> list | None:
    if values is None:
        return None
    if len(values) == 0:
        raise ValueError(f"{field}: give at least one value, or leave it out to keep the base's")
    for v in values:
        if isinstance(v, bool) or not (v > 0) or (isinstance(v, float) and not math.isfinite(v)):
            raise ValueError(f"{field}: every value must be a finite number > 0, got {v!r}")
        if integer and int(v) != v:
            raise ValueError(f"{field}: every value must be a whole number, got {v!r}")
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"{field}: {dup!r} is listed twice; each value once")
    return values


class Template(_Frozen):
    """A hardware sweep: the base machine and the values to try for each swept field.

    A field left out (None) keeps the base's value. The design points are the cartesian product of
    the lists, in the order given.
    """

    base: str | Hardware = Field(description="hardware preset name, YAML path, or a Hardware")
    rows: list[int] | None = Field(default=None, description="grid rows (nodes of a switched cluster)")
    cols: list[int] | None = Field(default=None, description="grid columns (devices per node of a cluster)")
    sram_bytes: list[float] | None = Field(default=None, description="on-die SRAM per die, bytes")
    link_bandwidth: list[float] | None = Field(
        default=None, description="die-to-die link bandwidth, bytes/s per direction (mesh/torus only)")
    dram_bandwidth: list[float] | None = Field(
        default=None, description="bandwidth of every DRAM port, bytes/s (hardware with DRAM ports only)")
    sram_mm2_per_gb: float | None = Field(
        default=None, ge=0,
        description="die area per GB of SRAM, mm²: a variant's die area moves by this much per GB of SRAM "
        "relative to the base (None: die area fixed; SRAM_MM2_PER_GB_N5 = 240 is a documented value)")

    @field_validator("rows", "cols")
    @classmethod
    def _ints(cls, v: list[int] | None, info: Any) -> list[int] | None:
        return _positive(v, info.field_name, integer=True)

    @field_validator("sram_bytes", "link_bandwidth", "dram_bandwidth")
    @classmethod
    def _floats(cls, v: list[float] | None, info: Any) -> list[float] | None:
        return _positive(v, info.field_name)

    @model_validator(mode="after")
    def _fits_base(self) -> "Template":
        base = self.base_hardware()
        if self.link_bandwidth is not None and base.topology.link is None:
            raise ValueError(f"link_bandwidth: {base.name} has a {base.topology.kind} topology with no "
                             f"die-to-die link to sweep; leave link_bandwidth out")
        if self.dram_bandwidth is not None and not base.dram_ports:
            raise ValueError(f"dram_bandwidth: {base.name} has no DRAM ports to sweep; leave dram_bandwidth out")
        if self.sram_bytes is not None and base.die.hbm_bytes is not None:
            raise ValueError(f"sram_bytes: {base.name} keeps its working memory in HBM "
                             f"({base.die.hbm_bytes / 1e9:.0f} GB per die); sweeping SRAM would change nothing")
        return self

    def base_hardware(self) -> Hardware:
        """The base machine, validated (an unknown preset is an error naming `base`)."""
        if isinstance(self.base, Hardware):
            return self.base
        try:
            return hw_loader.load(self.base)
        except ConfigError as err:
            raise ValueError(f"base: {err}") from None

    def _tree(self) -> dict:
        if isinstance(self.base, Hardware):
            return self.base.model_dump(mode="json")
        return hw_loader.strip_sources(hw_loader.raw_preset(self.base))

    def hardware(self, **overrides: float) -> Hardware:
        """The base with overrides of the swept fields (rows, cols, sram_bytes, link_bandwidth,
        dram_bandwidth), validated; a bad value is an error naming the field."""
        unknown = sorted(set(overrides) - set(SWEPT))
        if unknown:
            raise ConfigError(f"unknown design field {unknown[0]!r}; allowed: {', '.join(SWEPT)}")
        tree = self._tree()
        loads = {k: v for k, v in overrides.items() if k != "dram_bandwidth"}
        if "dram_bandwidth" in overrides:
            for port in tree.get("dram_ports") or ():
                port["bandwidth"] = overrides["dram_bandwidth"]
        try:
            hwv = hw_loader.build_hardware(tree, **loads)
        except ConfigError as err:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in overrides.items())
            raise ConfigError(f"template design {shown}: {err}") from None
        return hwv

    def designs(self) -> list[dict[str, float]]:
        """Every design point's overrides, in sweep order."""
        axes = [(k, getattr(self, k)) for k in SWEPT if getattr(self, k) is not None]
        return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]

    def area_mm2(self, hardware: Hardware) -> float:
        """Σ die area over every site of the grid, mm² (with the SRAM area model if given)."""
        return hardware.rows * hardware.cols * self.die_area_mm2(hardware)

    def die_area_mm2(self, hardware: Hardware) -> float:
        area = hardware.die.area_mm2
        if self.sram_mm2_per_gb is not None:
            base = self.base_hardware().die.sram_bytes
            area += self.sram_mm2_per_gb * (hardware.die.sram_bytes - base) / 1e9
        return area

    def power_w(self, hardware: Hardware) -> float:
        """Σ die power over the usable dies, W (a defective die is assumed fused off)."""
        return hardware.num_dies * hardware.die.power_w


class Budget(_Frozen):
    """An area and/or power budget; a field left out is no limit."""

    area_mm2: float | None = Field(default=None, gt=0, description="Σ die area, mm²")
    power_w: float | None = Field(default=None, gt=0, description="Σ die power, W")

    @field_validator("area_mm2", "power_w")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{info.field_name}: must be finite, got {v}")
        return v

    def allows(self, area_mm2: float, power_w: float) -> bool:
        """Within budget; a design exactly at the budget fits (up to float rounding of the sums)."""
        return ((self.area_mm2 is None or area_mm2 <= self.area_mm2 * (1 + BUDGET_REL_TOL))
                and (self.power_w is None or power_w <= self.power_w * (1 + BUDGET_REL_TOL)))


class DesignPoint(_Frozen):
    """One solved design: its overrides of the base, its cost, and the best mapping's score."""

    hw: str = Field(description="the base hardware's name")
    overrides: dict[str, int | float] = Field(description="the swept fields' values for this design")
    rows: int
    cols: int
    dies: int = Field(description="usable dies")
    sram_bytes: float
    area_mm2: float
    power_w: float
    status: str = Field(description="optimal | feasible | timeout | infeasible | interrupted (optimizer.solve's)")
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    energy_j: float | None = Field(default=None, description="energy of one training step, J")
    mfu: float | None = None
    bound_s: float | None = Field(default=None, description="proven lower bound on the step time")
    gap: float | None = None
    solve_time_s: float = Field(default=0.0, description="wall time of this point's solve (machine dependent)")
    mapping: Mapping | None = None
    explanation: str = ""

    @property
    def bound(self) -> float | None:
        """Alias of bound_s."""
        return self.bound_s

    @property
    def solved(self) -> bool:
        """A mapping was found (optimal, feasible or timeout with an incumbent)."""
        return self.tokens_per_s is not None

    def label(self) -> str:
        """A short name: the swept values, e.g. '8x8 256MB'."""
        parts = []
        if "rows" in self.overrides or "cols" in self.overrides:
            parts.append(f"{self.rows}x{self.cols}")
        for key, unit, div in (("sram_bytes", "MB", 1e6), ("link_bandwidth", "TB/s link", 1e12),
                               ("dram_bandwidth", "TB/s DRAM", 1e12)):
            if key in self.overrides:
                parts.append(f"{self.overrides[key] / div:g}{unit}")
        return " ".join(parts) or self.hw

    def outcome(self) -> dict[str, Any]:
        """Everything but the wall time: what must agree across executors."""
        return self.model_dump(mode="json", exclude={"solve_time_s"})


def _check_args(executor: str, workers: int, time_limit_s: float, threads_per_worker: int, space: str,
                backend: str, ray_address: str | None) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"executor: unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise ConfigError(f"ray_address: only used with executor='ray', got executor={executor!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: must be a whole number >= 1, got {workers!r}")
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ConfigError(f"threads_per_worker: must be a whole number >= 1, got {threads_per_worker!r}")
    if not (time_limit_s > 0) or not math.isfinite(time_limit_s):
        raise ConfigError(f"time_limit_s: must be a finite number of seconds > 0, got {time_limit_s}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    get_space(space)


def _validated(cls: type[BaseModel], value: Any, what: str) -> Any:
    if value is None and cls is Budget:
        return Budget()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return cls.model_validate(value)
        except ValidationError as err:
            raise ConfigError(hw_loader.format_validation_error(err, what)) from None
    raise ConfigError(f"{what}: expected a {cls.__name__} or a dict, got {type(value).__name__}")


def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def variants(template: Template | dict, budget: Budget | dict | None = None
             ) -> list[tuple[dict[str, float], Hardware, float, float, bool]]:
    """Every design of the template in sweep order: (overrides, hardware, area mm², power W,
    within budget). A design hw.load rejects is an error naming the field and the design."""
    template = _validated(Template, template, "template")
    budget = _validated(Budget, budget, "budget")
    out = []
    for ov in template.designs():
        h = template.hardware(**ov)
        die_area = template.die_area_mm2(h)
        if die_area <= 0:
            raise ConfigError(f"sram_mm2_per_gb: design {', '.join(f'{k}={_fmt(v)}' for k, v in ov.items())} "
                              f"would leave a die area of {die_area:.1f} mm² (<= 0)")
        area, power = template.area_mm2(h), template.power_w(h)
        out.append((ov, h, area, power, budget.allows(area, power)))
    return out


def explore(template: Template | dict, work: Workload, budget: Budget | dict | None = None,
            executor: str = "pool", workers: int = 2, ray_address: str | None = None,
            time_limit_s: float = 60.0, space: str = "full", threads_per_worker: int = 1,
            backend: str = "cpsat", progress: Callable[[int, int, DesignPoint], None] | None = None
            ) -> list[DesignPoint]:
    """Solve every design of `template` that fits `budget`; the points in sweep order.

    executor: "serial" (in this process), "pool" (a ProcessPoolExecutor of `workers` processes)
    or "ray" (Ray on `ray_address`, or a local Ray of `workers` CPUs); each solve uses
    `threads_per_worker` solver threads and `time_limit_s` seconds. Designs over budget are not
    solved and not returned (see variants() for all of them). progress(done, total, point) is
    called as points finish (in finishing order).
    """
    template = _validated(Template, template, "template")
    budget = _validated(Budget, budget, "budget")
    _check_args(executor, workers, time_limit_s, threads_per_worker, space, backend, ray_address)
    if not isinstance(work, Workload):
        raise ConfigError(f"work: expected a models.Workload, got {type(work).__name__}")
    chosen = [(ov, h, area, power) for ov, h, area, power, ok in variants(template, budget) if ok]
    jobs = [(work, h, space, backend, time_limit_s, threads_per_worker) for _, h, _, _ in chosen]
    results: list[DesignPoint | None] = [None] * len(jobs)

    def done(i: int, sol: Any) -> None:
        ov, h, area, power = chosen[i]
        results[i] = _point(template, ov, h, area, power, sol)
        if progress is not None:
            progress(sum(r is not None for r in results), len(jobs), results[i])

    with interrupt.stop_on_sigint():  # Ctrl-C: the points solved so far (executors.py)
        solve_points(executor, jobs, workers, threads_per_worker, ray_address, done)
    return [r for r in results if r is not None]


def _point(template: Template, ov: dict, h: Hardware, area: float, power: float, sol: Any) -> DesignPoint:
    rep = sol.report
    return DesignPoint(
        hw=h.name, overrides=dict(ov), rows=h.rows, cols=h.cols, dies=h.num_dies, sram_bytes=h.die.sram_bytes,
        area_mm2=area, power_w=power, status=sol.status,
        step_time_s=rep.step_time_s if rep else None, tokens_per_s=rep.tokens_per_s if rep else None,
        energy_j=rep.energy_j if rep else None, mfu=rep.mfu if rep else None,
        bound_s=sol.bound_s, gap=sol.gap, solve_time_s=sol.solve_time_s, mapping=sol.mapping,
        explanation=" ".join(sol.explanation.split()),
    )


def pareto(points: Iterable[DesignPoint]) -> list[DesignPoint]:
    """The points no other point beats on every objective (throughput ↑, energy per step ↓,
    area ↓) and strictly on one; points without a mapping are never on the front. Sorted by area,
    then throughput (highest first)."""
    pts = [p for p in points if p.solved]

    def dominates(q: DesignPoint, p: DesignPoint) -> bool:
        no_worse = q.tokens_per_s >= p.tokens_per_s and q.energy_j <= p.energy_j and q.area_mm2 <= p.area_mm2
        better = q.tokens_per_s > p.tokens_per_s or q.energy_j < p.energy_j or q.area_mm2 < p.area_mm2
        return no_worse and better

    front = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(front, key=lambda p: (p.area_mm2, -p.tokens_per_s, p.energy_j))


__all__ = ["Template", "Budget", "DesignPoint", "explore", "pareto", "variants", "EXECUTORS",
           "SRAM_MM2_PER_GB_N5"]
