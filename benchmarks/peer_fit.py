"""Scoring only mappings that fit, on one memory basis, and the hardware figure a failed ratio rests on.

  training_memory_bytes   the memory basis of the claims: peak bytes per die of the training state
                          plus activations with nothing in DRAM (the same for every mapping: where the
                          DRAM tier keeps a class does not change what the mapping needs)
  sram_to_fit             how much SRAM per die (and DRAM capacity, where it binds) a peer's heuristic
                          needs before its own rule fits
  bandwidth_to_reach      by how much the links or the DRAM ports would have to slow (both mappings held
                          fixed) for a speed-up to reach the paper's
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import hw
import models
import optimizer
from hw.loader import build_hardware, raw_preset, strip_sources

SRAM_STEP = 1.25  # assumption (a search step): SRAM grows 25% a step until the peer's own rule fits
SRAM_STEPS = 24  # at most 1.25^24 ~ 212x the first try
SLOWDOWNS = tuple(2.0 ** k for k in range(1, 11))  # links / DRAM ports up to 1024x slower


def training_memory_bytes(mapping: optimizer.Mapping, work: models.Workload, hardware: hw.Hardware) -> float:
    """Peak bytes per die of training state + activations of `mapping` with every class on the die."""
    return optimizer.evaluate(mapping.model_copy(update={"offload": ()}), work, hardware).peak_memory_bytes


def sram_to_fit(pick: Callable[[hw.Hardware], optimizer.Mapping], work: models.Workload, preset: str,
                first_bytes: float) -> dict[str, Any] | None:
    """The least SRAM per die (bytes, from `first_bytes` up by SRAM_STEP) and, where the classes in DRAM
    outgrow the ports' capacity, the DRAM capacity (a factor on every port's) at which the mapping
    `pick` chooses on that machine fits; None if it does not within SRAM_STEPS steps."""
    base = hw.load(preset)
    sram, dram = max(first_bytes, base.die.sram_bytes), 1.0
    for _ in range(SRAM_STEPS):
        machine = machine_with(preset, sram=sram, dram_capacity=dram)
        m = pick(machine)
        rep = optimizer.evaluate(m, work, machine)
        if rep.fits:
            return {"sram_bytes": sram, "factor": sram / base.die.sram_bytes, "dram_capacity_factor": dram,
                    "mapping": m.name, "step_time_s": rep.step_time_s, "energy_j": rep.energy_j}
        if rep.peak_memory_bytes > rep.memory_capacity_bytes:
            sram = max(sram * SRAM_STEP, rep.peak_memory_bytes)
        if rep.dram_capacity_bytes and rep.dram_stored_bytes > rep.dram_capacity_bytes:
            dram *= max(SRAM_STEP, rep.dram_stored_bytes / rep.dram_capacity_bytes)
    return None


def machine_with(preset: str, link_div: float = 1.0, dram_div: float = 1.0, sram: float | None = None,
             dram_capacity: float = 1.0) -> hw.Hardware:
    """The preset with its links `link_div` and its DRAM ports `dram_div` times slower, `sram` bytes per
    die and every DRAM port's capacity times `dram_capacity`."""
    data = copy.deepcopy(strip_sources(raw_preset(preset)))
    for port in data.get("dram_ports") or []:
        port["bandwidth"] = port["bandwidth"] / dram_div
        port["capacity_bytes"] = port["capacity_bytes"] * dram_capacity
    base = hw.load(preset)
    return build_hardware(data, link_bandwidth=base.topology.link.bandwidth / link_div,
                          sram_bytes=base.die.sram_bytes if sram is None else sram)


def bandwidth_to_reach(ours: optimizer.Mapping, peer: optimizer.Mapping, work: models.Workload, preset: str,
                       target: float, field: str = "step_time_s", sram: float | None = None,
                       dram_capacity: float = 1.0) -> dict[str, Any]:
    """Per figure ("link_bandwidth", "dram_port_bandwidth"): the least slowdown of SLOWDOWNS at which
    peer's `field` / ours reaches `target`, both mappings held fixed (None: not within 1024x), on the
    preset with `sram` bytes per die and `dram_capacity` times the DRAM capacity (machine_with)."""
    out: dict[str, Any] = {}
    for figure in ("link_bandwidth", "dram_port_bandwidth"):
        out[figure] = None
        for div in SLOWDOWNS:
            machine = machine_with(preset, link_div=div if figure == "link_bandwidth" else 1.0,
                                   dram_div=div if figure == "dram_port_bandwidth" else 1.0, sram=sram,
                                   dram_capacity=dram_capacity)
            a, b = optimizer.evaluate(ours, work, machine), optimizer.evaluate(peer, work, machine)
            ratio = getattr(b, field) / getattr(a, field)
            if ratio >= target:
                out[figure] = {"divided_by": div, "ratio": ratio}
                break
    return out


def statement(name: str, paper: float, sens: dict[str, Any]) -> str:
    """One line: which hardware figure would have to change, and by how much, for the paper's ratio."""
    parts = []
    for m, s in sens.items():
        if s.get("sram"):
            dram = s["sram"].get("dram_capacity_factor", 1.0)
            parts.append(f"{m}: {s['who']} fit(s) only with {s['sram']['sram_bytes'] / 1e9:.3g} GB SRAM per die "
                         f"({s['sram']['factor']:.3g}x the preset's)"
                         + (f" and {dram:.3g}x the DRAM capacity" if dram > 1 else "")
                         + (f"; there the ratio is {s['ratio_at_sram']:.3g}x" if s.get("ratio_at_sram") else ""))
        elif s.get("who"):
            parts.append(f"{m}: {s['who']} still do(es) not fit after {SRAM_STEPS} steps of {SRAM_STEP}x "
                         f"more SRAM per die (and DRAM capacity where it binds)")
        where = " there" if s.get("sram") else ""
        for fig, hit in (s.get("bandwidth") or {}).items():
            parts.append(f"{m}: {fig}{where} / {hit['divided_by']:g} gives {hit['ratio']:.3g}x" if hit else
                         f"{m}: no {fig} slowdown{where} up to 1024x reaches {paper}x")
        if s.get("note"):
            parts.append(f"{m}: {s['note']}")
    return f"{name} (paper {paper}x): " + "; ".join(parts)
