"""The cheap bounds of an outer point, arithmetic on its probe: its least memory per die and its
step-time lower bound over the subsets of tensor classes the space may keep in DRAM, its energy
floor and the objective's bound made of these, and the machine-wide bound below every mapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.schema import Hardware
from models.counts import step_flops
from models.schema import Workload

from ..model import cost
from .points import _even_probe, _Probe
from .space import OuterPoint, Space
from ..model.layout import point_layers


@dataclass
class _Tiers:
    """What every outer point's bounds share: the subsets of tensor classes the space may move to
    DRAM (rows of `off`, one column per cost.OFFLOAD_CLASSES entry), the ports' bandwidth (B/s)
    and the capacities (bytes) of a die and of the DRAM."""

    subsets: list[tuple[str, ...]]
    off: np.ndarray
    port_bandwidth: float
    die_bytes: float
    dram_bytes: float

    @classmethod
    def of(cls, space: Space, hw: Hardware) -> "_Tiers":
        subsets = space.offload_subsets(hw)
        off = np.array([[c in sub for c in cost.OFFLOAD_CLASSES] for sub in subsets], dtype=float)
        return cls(subsets, off, sum(p.bandwidth for p in hw.dram_ports), hw.die.memory_bytes, hw.dram_capacity)


@dataclass
class _StageTerms:
    """What an outer point's bounds share, per stage: layers, least parameters on one die,
    micro-batches per step and held at the peak, model-state bytes per parameter by class."""

    lps: np.ndarray
    params: np.ndarray
    m: int
    flight: np.ndarray | float
    per_param: dict[str, float]

    @classmethod
    def of(cls, pt: OuterPoint, pr: _Probe, work: Workload, space: Space) -> "_StageTerms":
        lps = np.array(point_layers(work.model.layers, pt.pp, pt.virtual, pt.layers_per_chunk), dtype=float)
        params = lps * pr.params_layer
        params[0] += pr.params_pre
        params[-1] += pr.params_post
        m = work.global_batch // (pt.dp * pt.micro_batch)
        return cls(lps, params, m, cost.micro_batches_in_flight(np.arange(pt.pp), pt.pp, m, pt.virtual, pt.layer_group),
                   cost.zero_state_bytes(1.0, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes))


def _least_kept(pr: _Probe, layers: np.ndarray) -> np.ndarray:
    """Per entry of `layers` (layers' worth of micro-batches held, n), the least bytes one die
    keeps for the backward: Σ over block ops of min over their (option, recompute) choices of
    n·(activations kept per layer) + (the working buffer of a recomputation), every op choosing
    alone — below what any joint choice keeps (the block input is in every choice; the inputs
    Checkmate keeps for a recomputed consumer are left out). Without a table: n·block input."""
    tab = pr.ops
    if tab is None:
        return layers * pr.act_layer
    act = np.where(np.isfinite(tab.time), tab.act, np.inf)
    return (layers[:, None, None] * act[None] + tab.buffer[None]).min(axis=2).sum(axis=1)


def _on_die(pt: OuterPoint, pr: _Probe, work: Workload, space: Space, tiers: _Tiers, st: _StageTerms) -> np.ndarray:
    """Least bytes on one die, stages × DRAM subsets × (weights, grads, optimizer, kept activations
    with recomputation buffers). A class in DRAM leaves the die but for its working piece (the
    largest op's weights or gradients, one layer of one micro-batch's activations, no Adam state)."""
    working = cost.offload_working_bytes(pr.params_op, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes)
    off = tiers.off[None]  # 1 × subsets × classes
    state = np.stack([st.params * st.per_param[c] for c in cost.OFFLOAD_CLASSES[:3]], axis=1)[:, None, :]
    piece = np.array([working[c] for c in cost.OFFLOAD_CLASSES[:3]])[None, None, :]
    state = np.where(off[..., :3] > 0, piece, state)
    # kept activations and recomputation buffers, each op at its least
    flight = np.broadcast_to(st.flight, st.lps.shape)
    kept = _least_kept(pr, np.append(st.lps * flight, 1.0))
    kept[-2] += flight[-1] * pr.act_post  # the last stage holds the post ops' saved tensors too
    act = np.where(off[..., 3] > 0, kept[-1], kept[:-1, None])
    return np.concatenate([state, act[..., None]], axis=2)


def _bounds(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space,
            tiers: _Tiers | None = None) -> tuple[float, float, float, list[tuple[float, tuple[str, ...]]]]:
    """(step-time lower bound, least memory per die, least bytes any fitting choice keeps in DRAM,
    the subsets of tensor classes in DRAM that can fit, each with its bound, ascending) of an outer
    point. Every subset of the tensor classes the space may move to DRAM is tried (_on_die); a
    class in DRAM costs its least port traffic. The time bound is the least over the subsets that
    fit (inf if none does). Arrays: stages × classes, × subsets. `tiers`: _Tiers.of(space, hw),
    passed in by callers that bound many points."""
    tiers = tiers or _Tiers.of(space, hw)
    st = _StageTerms.of(pt, pr, work, space)
    lps, params, m, flight, per_param = st.lps, st.params, st.m, st.flight, st.per_param
    dies_per_stage = pt.dp * pt.shape[0] * pt.shape[1]
    bw = tiers.port_bandwidth / (pt.pp * dies_per_stage)
    classes = cost.OFFLOAD_CLASSES  # weights, grads, optimizer, activations: the columns below
    act_mb = lps * pr.act_layer  # saved activations of one micro-batch
    act_mb[-1] += pr.act_post
    model_state = [params * per_param[c] for c in classes[:3]]
    held = np.column_stack(model_state + [act_mb * flight])
    moved = np.column_stack(model_state + [act_mb])  # bytes a traffic rate applies to
    subsets, off = tiers.subsets, tiers.off  # subsets × classes
    mem = _on_die(pt, pr, work, space, tiers, st).sum(axis=2).max(axis=0)
    dram = (held @ off.T).sum(axis=0) * dies_per_stage
    t = lps * pr.layer_s
    t[0] += pr.pre_s
    t[-1] += pr.post_s
    upd = params * cost.optimizer_update_time(1.0, pt.dp, pt.zero_stage, hw.die)
    times, syncs = np.repeat(t[:, None], len(subsets), 1), np.repeat(upd[:, None], len(subsets), 1)
    if bw:
        per_mb, per_step = cost.dram_rates(pt.layer_group)
        times = times + (moved * np.array([per_mb[c] for c in classes])) @ off.T / bw
        syncs = syncs + (moved * np.array([per_step[c] for c in classes])) @ off.T / bw
    step = times.sum(axis=0) / pt.virtual + (m - 1 / pt.virtual) * times.max(axis=0) + syncs.max(axis=0)
    fits = mem <= tiers.die_bytes
    least_dram = float(dram[fits].min()) if fits.any() else float("inf")
    fits &= dram <= tiers.dram_bytes
    best_t = float(step[fits].min()) if fits.any() else float("inf")
    fitting = sorted((float(step[i]), subsets[i]) for i in np.flatnonzero(fits))
    return best_t, float(mem.min()), least_dram, fitting


def _memory_need(pt: OuterPoint, pr: _Probe, work: Workload, space: Space, tiers: _Tiers,
                 even: bool = False) -> tuple[float, dict[str, float]]:
    """(least bytes on the fullest die of an outer point over the DRAM subsets, that die's bytes per
    class). even: as if every op split evenly over the tensor group (_Probe.even)."""
    if even:
        if pr.even is None:
            pr.even = _even_probe(pr.tables, pr)
        pr = pr.even
    parts = _on_die(pt, pr, work, space, tiers, _StageTerms.of(pt, pr, work, space))
    need = parts.sum(axis=2)
    k = int(need.max(axis=0).argmin())
    s = int(need[:, k].argmax())
    return float(need[s, k]), dict(zip(cost.OFFLOAD_CLASSES, map(float, parts[s, k])))


def _machine_bound(work: Workload, hw: Hardware) -> float:
    """A bound below every mapping: the model's matmul FLOPs of one step spread evenly over every
    usable die at peak · matmul_efficiency (seconds)."""
    flops = step_flops(work.model, work.global_batch, work.seq_len)
    return flops / (hw.num_dies * hw.peak(work.dtype) * hw.die.matmul_efficiency)


def _energy_floor(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware) -> float:
    """Joules of one step below every mapping of an outer point, but for static power: each op's
    least FLOPs and least compute bytes on a die (no recompute; a backward has at least 2× the
    forward's FLOPs and at least 1× its bytes, models.graph.MEMORY_BOUND_BACKWARD), on every die,
    every micro-batch. Collectives, transfers and DRAM traffic only add (fused
    near-memory reduction saves part of a collective's own bytes, never more)."""
    e = hw.energy
    mem_j = e.dram_byte_j if hw.die.hbm_bytes is not None else e.sram_byte_j
    m = work.global_batch // (pt.dp * pt.micro_batch)
    dies = pt.dp * pt.shape[0] * pt.shape[1]
    layers = work.model.layers
    flops = layers * pr.flops_layer + pr.flops_pre + pr.flops_post
    nbytes = layers * pr.bytes_layer + pr.bytes_pre + pr.bytes_post
    return m * dies * (3 * flops * e.flop_j + 2 * nbytes * mem_j)


def _point_bound(objective: str, time_lb: float, floor: float, static_w: float) -> float:
    """A lower bound on the objective at a point from its step-time bound and its energy floor."""
    if objective == "time":
        return time_lb
    energy = floor + static_w * time_lb
    return energy if objective == "energy" else energy * time_lb


def _machine_objective_bound(objective: str, work: Workload, hw: Hardware) -> float:
    """_machine_bound for any objective: the static energy of the least die-seconds the model's
    FLOPs need (energy); energy times the machine's least step time (edp)."""
    t = _machine_bound(work, hw)
    if objective == "time":
        return t
    flops = step_flops(work.model, work.global_batch, work.seq_len)
    energy = hw.energy.static_w * flops / (hw.peak(work.dtype) * hw.die.matmul_efficiency)
    return energy if objective == "energy" else energy * t


class _Dominance:
    """Outer points that differ only in dp and ZeRO stage: a larger dp or a higher stage never needs
    more memory on a die (the state is sharded further, cost.zero_state_bytes and
    offload_working_bytes; fewer micro-batches are in flight, cost.micro_batches_in_flight; the rest
    is the same). So the member with the largest (dp, stage) of each such family (top) bounds the
    on-die need of all: where it fits on no die, no member does, and the family is pruned by one
    bound (_bounds of the top, kept for its own turn when it fits)."""

    def __init__(self, work: Workload, hw: Hardware, space: Space):
        self.top: dict[tuple, OuterPoint] = {}
        for pt in space.outer_points(work, hw):
            if pt.dies <= hw.num_dies:
                f = self.family(pt)
                top = self.top.get(f)
                if top is None or (pt.dp, pt.zero_stage) > (top.dp, top.zero_stage):
                    self.top[f] = pt
        self.dead: dict[tuple, bool] = {}
        self.kept: dict[OuterPoint, tuple] = {}

    @staticmethod
    def family(pt: OuterPoint) -> tuple:
        return (pt.shape, pt.micro_batch, pt.pp, pt.virtual, pt.layers_per_chunk, pt.layer_group, pt.recompute_policy)

    def bounds(self, pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space,
               tiers: _Tiers) -> tuple[tuple | None, tuple | None]:
        """(_bounds of pt, or None when its family's top fits on no die; (top, its _bounds) the first
        time a family is found dead, for the caller's evidence, else None)."""
        f = self.family(pt)
        newly = None
        if f not in self.dead:
            top = self.top.get(f, pt)
            res = _bounds(top, pr, work, hw, space, tiers)
            self.dead[f] = res[1] > tiers.die_bytes
            if self.dead[f]:
                newly = (top, res)
            elif top != pt:
                self.kept[top] = res
        if self.dead[f]:
            return None, newly
        return self.kept.pop(pt, None) or _bounds(pt, pr, work, hw, space, tiers), newly
