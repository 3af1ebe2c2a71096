"""The DRAM tier: tensor classes the solver may keep behind the DRAM ports, their traffic in the
step time and the energy, and the ports' capacity."""

import math

import pytest

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.model import cost
from optimizer.search.space import OuterPoint, Space

REL = 1e-6
SMALL = models.ModelConfig(name="small", layers=4, hidden=1024, heads=16, vocab=8192, seq_len=1024)
WORK = models.Workload(model=SMALL, global_batch=8, seq_len=1024)
POINT = Space("full", points=(OuterPoint(1, 1, (1, 2), 1, 0, 1),))


def chiplets(sram: float):
    return hw.load("hecaton-chiplet", rows=1, cols=2, sram_bytes=sram)


def test_shrinking_sram_moves_state_to_dram():
    """Ample SRAM: nothing in DRAM. Less SRAM: the solver moves tensor classes to DRAM, and the
    step time and the energy then include the port traffic; too little: infeasible, with why."""
    roomy = optimizer.solve(WORK, chiplets(4e9), space=POINT)
    assert roomy.status == "optimal" and roomy.mapping.offload == ()
    assert roomy.report.dram_bytes == 0 and roomy.report.energy["dram"] == 0
    seen = []
    for sram in (5e8, 3e8, 2e8):
        sol = optimizer.solve(WORK, chiplets(sram), space=POINT)
        assert sol.status == "optimal" and sol.report.fits
        rep = sol.report
        assert sol.mapping.offload, sram
        assert rep.dram_bytes > 0 and rep.energy["dram"] > 0
        assert rep.breakdown.get("dram", 0) + rep.breakdown.get("optimizer_dram", 0) > 0
        assert rep.peak_memory_bytes <= sram
        assert rep.step_time_s > roomy.report.step_time_s
        assert math.isclose(rep.step_time_s, sol.objective_s, rel_tol=REL)
        seen.append(set(sol.mapping.offload))
    assert seen == sorted(seen, key=len) and len(seen[-1]) > len(seen[0])
    tight = optimizer.solve(WORK, chiplets(2e7), space=POINT)
    assert tight.status == "infeasible" and "GB" in tight.explanation


@pytest.mark.parametrize("backend", ["cbc", "highs"])
def test_backends_agree_with_dram(backend):
    h = chiplets(2e8)
    ref = optimizer.solve(WORK, h, space=POINT)
    sol = optimizer.solve(WORK, h, space=POINT, backend=backend)
    assert sol.status == "optimal"
    assert math.isclose(sol.objective_s, ref.objective_s, rel_tol=REL)
    assert math.isclose(optimizer.evaluate(sol.mapping, WORK, h).step_time_s, sol.objective_s, rel_tol=REL)


def test_dram_traffic_and_energy_by_hand():
    """Optimizer state in DRAM, nothing else: each die reads and writes its Adam state once per
    step (2 x 12 B per parameter), at its share of the ports' bandwidth."""
    h = chiplets(4e9)
    base = optimizer.baselines.megatron(WORK, h, tp=2, pp=1, dp=1, micro_batch=1, recompute="none")
    mp = base.model_copy(update={"offload": ("optimizer",), "fp32_grad_accumulation": False})
    rep = optimizer.evaluate(mp, WORK, h)
    ref = optimizer.evaluate(base.model_copy(update={"fp32_grad_accumulation": False}), WORK, h)
    params_per_die = ref.memory["weights"] / 2  # bf16 weights
    traffic = 2 * cost.ADAM_STATE_BYTES * params_per_die * 2  # read + write, two dies
    assert math.isclose(rep.dram_bytes, traffic, rel_tol=1e-12)
    assert math.isclose(rep.energy["dram"], traffic * h.energy.dram_byte_j, rel_tol=1e-12)
    bw = sum(p.bandwidth for p in h.dram_ports) / 2
    assert math.isclose(rep.breakdown["optimizer_dram"], traffic / 2 / bw, rel_tol=1e-12)
    assert math.isclose(rep.step_time_s, ref.step_time_s + traffic / 2 / bw, rel_tol=1e-12)
    # on the die only one layer's worth of Adam state stays as a working copy
    assert rep.memory["optimizer"] < ref.memory["optimizer"]
    assert math.isclose(rep.dram_stored_bytes, 2 * ref.memory["optimizer"], rel_tol=1e-12)


def test_dram_capacity_is_a_constraint():
    h = chiplets(2e8)
    small_ports = tuple(p.model_copy(update={"capacity_bytes": 1e6}) for p in h.dram_ports)
    tiny = h.model_copy(update={"dram_ports": small_ports})
    sol = optimizer.solve(WORK, tiny, space=POINT)
    assert sol.status == "infeasible"
    assert "DRAM" in sol.explanation or "GB" in sol.explanation


def test_offload_needs_dram_ports():
    h = hw.load("dgx-a100", nodes=1)
    mp = optimizer.Mapping(pp=1, dp=8, offload=("optimizer",))
    with pytest.raises(ConfigError, match="offload"):
        optimizer.evaluate(mp, WORK, h)


def test_offload_names_are_validated():
    with pytest.raises(ValueError, match="offload"):
        optimizer.Mapping(offload=("weights", "weights"))
    with pytest.raises(ValueError, match="offload"):
        optimizer.Mapping(offload=("kv_cache",))


def test_slow_ports_are_slow_not_infeasible():
    """The time rows' bounds include DRAM traffic: with ports at 0.1 GB/s in all, a mapping that
    must keep its Adam state in DRAM is still found (and costs seconds of port traffic)."""
    h = chiplets(5e8)
    ports = tuple(p.model_copy(update={"bandwidth": 1e8 / len(h.dram_ports)}) for p in h.dram_ports)
    slow = h.model_copy(update={"dram_ports": ports})
    sol = optimizer.solve(WORK, slow, space=POINT, backend="highs")
    assert sol.status == "optimal" and sol.mapping.offload == ("optimizer",)
    assert sol.report.breakdown["optimizer_dram"] > 1.0
    assert math.isclose(sol.report.step_time_s, sol.objective_s, rel_tol=REL)
    cp = optimizer.solve(WORK, slow, space=POINT)
    # CP-SAT counts DRAM bytes in KB: at these slow ports one KB is 20 µs
    assert math.isclose(cp.objective_s, sol.objective_s, rel_tol=1e-5)
