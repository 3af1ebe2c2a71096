"""The layer-wise schedule (Hecaton's DRAM-saving order, pp = 1): each layer runs a group of k
micro-batches in turn, so weights and gradients kept in DRAM move once per group instead of once
per micro-batch, while the group's activations are all held until their backward."""

import math

import pytest

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.model import cost
from optimizer.search.space import OuterPoint, Space, layer_groups

REL = 1e-6
SMALL = models.ModelConfig(name="small", layers=4, hidden=1024, heads=16, vocab=8192, seq_len=1024)
WORK = models.Workload(model=SMALL, global_batch=8, seq_len=1024)  # 8 micro-batches of 1


def chiplets(sram: float):
    return hw.load("hecaton-chiplet", rows=1, cols=2, sram_bytes=sram)


def tp2(**update) -> optimizer.Mapping:
    base = optimizer.baselines.megatron(WORK, chiplets(4e9), tp=2, pp=1, dp=1, micro_batch=1, recompute="none")
    return base.model_copy(update={"fp32_grad_accumulation": False, **update})


def test_weight_traffic_by_hand():
    """Weights in DRAM: 1F1B reads them twice per micro-batch (forward, backward); the layer-wise
    schedule with groups of k reads them twice per group, m/k times per step. Everything else
    (compute, collectives) is unchanged, so the step time differs by the traffic saved over the
    ports' bandwidth."""
    h = chiplets(4e9)
    m = WORK.global_batch
    plain = optimizer.evaluate(tp2(offload=("weights",)), WORK, h)
    weights = optimizer.evaluate(tp2(), WORK, h).memory["weights"]  # bytes of weights on one die
    bw = sum(p.bandwidth for p in h.dram_ports) / 2
    update = weights  # the updated weights are written back once per step
    assert math.isclose(plain.dram_bytes, 2 * (m * 2 * weights + update), rel_tol=1e-12)
    for k in (2, 4, 8):
        lw = optimizer.evaluate(tp2(offload=("weights",), schedule="layerwise", layer_group=k), WORK, h)
        assert math.isclose(lw.dram_bytes, 2 * (m // k * 2 * weights + update), rel_tol=1e-12)
        saved = (plain.dram_bytes - lw.dram_bytes) / 2 / bw
        assert math.isclose(plain.step_time_s - lw.step_time_s, saved, rel_tol=1e-9)
        assert math.isclose(lw.energy["dram"], lw.dram_bytes * h.energy.dram_byte_j, rel_tol=1e-12)


def test_group_holds_its_activations():
    """On the die (activations not offloaded) a group of k holds k micro-batches' activations;
    with activations in DRAM the die keeps one layer's and DRAM holds the k micro-batches."""
    h = chiplets(4e9)
    one = optimizer.evaluate(tp2(), WORK, h).memory["activations"]
    for k in (2, 4):
        lw = optimizer.evaluate(tp2(offload=("weights",), schedule="layerwise", layer_group=k), WORK, h)
        assert math.isclose(lw.memory["activations"], k * one, rel_tol=1e-12)
    # activations in DRAM: the die keeps the same working piece as under 1F1B, DRAM holds k times more
    plain = optimizer.evaluate(tp2(offload=("weights", "activations")), WORK, h)
    off = optimizer.evaluate(tp2(offload=("weights", "activations"), schedule="layerwise", layer_group=4), WORK, h)
    assert off.memory["activations"] == plain.memory["activations"] < one
    weights = 2 * optimizer.evaluate(tp2(), WORK, h).memory["weights"]
    assert math.isclose(off.dram_stored_bytes - weights, 4 * (plain.dram_stored_bytes - weights), rel_tol=1e-12)
    assert math.isclose(plain.dram_stored_bytes - weights, 2 * one, rel_tol=1e-12)


def test_cost_rates_match_the_traffic_functions():
    for k in (1, 2, 16):
        per_mb, per_step = cost.dram_rates(k)
        w, g, o, a = 3.0, 5.0, 7.0, 11.0
        assert math.isclose(per_mb["weights"] * w + per_mb["grads"] * g + per_mb["activations"] * a,
                            cost.dram_traffic_per_micro_batch(w, g, a, k))
        assert math.isclose(per_step["weights"] * w + per_step["grads"] * g + per_step["optimizer"] * o,
                            cost.dram_traffic_per_step(w, g, o))


@pytest.mark.parametrize("backend,other", [("cpsat", "highs"), ("cbc", "highs"), ("cpsat", "cbc")])
def test_backends_agree_at_a_layerwise_point(backend, other):
    """At a fixed layer-wise point two different backends find the same optimum, which evaluate() confirms."""
    h = chiplets(2e8)
    sp = Space("full", points=(OuterPoint(1, 1, (1, 2), 1, 0, 1, None, 4),))
    rel = 1e-5 if "cpsat" in (backend, other) else REL  # CP-SAT optimizes on an integer time scale
    ref = optimizer.solve(WORK, h, space=sp, backend=other)
    sol = optimizer.solve(WORK, h, space=sp, backend=backend)
    for s in (sol, ref):
        assert s.status == "optimal" and s.mapping.schedule == "layerwise" and s.mapping.layer_group == 4
        assert math.isclose(optimizer.evaluate(s.mapping, WORK, h).step_time_s, s.objective_s, rel_tol=rel)
    assert math.isclose(sol.objective_s, ref.objective_s, rel_tol=rel)


def test_energy_objective_at_a_layerwise_point():
    h = chiplets(2e8)
    sp = Space("full", points=(OuterPoint(1, 1, (1, 2), 1, 0, 1, None, 2),))
    sol = optimizer.solve(WORK, h, space=sp, objective="energy")
    assert sol.status == "optimal" and sol.mapping.layer_group == 2
    assert math.isclose(optimizer.evaluate(sol.mapping, WORK, h).energy_j, sol.objective_value, rel_tol=1e-5)


def test_solver_picks_layerwise_when_weights_live_in_dram():
    """Model state must live in DRAM (SRAM too small) and the ports are slow: the full-space optimum
    runs the layer-wise schedule, and it beats the best 1F1B/interleaved mapping. Under ZeRO-3 the
    weights and the gradients have the same bytes and the same DRAM traffic, so either in DRAM is
    an optimum (evaluate() gives both the same step time)."""
    h = chiplets(1.5e8)
    ports = tuple(p.model_copy(update={"bandwidth": 2e9 / len(h.dram_ports)}) for p in h.dram_ports)
    slow = h.model_copy(update={"dram_ports": ports})
    full = optimizer.solve(WORK, slow, time_limit_s=60)
    plain = optimizer.solve(WORK, slow, space=Space("full", layerwise=False), time_limit_s=60)
    assert full.status == plain.status == "optimal"
    assert {"weights", "grads"} & set(full.mapping.offload) and full.mapping.schedule == "layerwise"
    assert full.objective_s < plain.objective_s * (1 - 1e-3)
    print(f"layer-wise k={full.mapping.layer_group}: {full.objective_s:.4g} s, 1F1B: {plain.objective_s:.4g} s")


def test_layer_groups_divide_the_micro_batches():
    assert layer_groups(8) == [2, 4, 8]
    assert layer_groups(12) == [2, 4, 12]
    assert layer_groups(1) == []


def test_bad_layerwise_mappings_are_rejected():
    with pytest.raises(ValueError, match="schedule"):
        optimizer.Mapping(pp=2, schedule="layerwise", layer_group=2)
    with pytest.raises(ValueError, match="layer_group"):
        optimizer.Mapping(schedule="layerwise", layer_group=1)
    with pytest.raises(ValueError, match="layer_group"):
        optimizer.Mapping(layer_group=4)
    with pytest.raises(ConfigError, match="layer_group"):
        optimizer.evaluate(tp2(offload=("weights",), schedule="layerwise", layer_group=3), WORK, chiplets(4e9))


def test_megatron_space_never_runs_layerwise():
    h = chiplets(1.5e8)
    pts = list(optimizer.search.space.get_space("megatron").outer_points(WORK, h))
    assert pts and all(p.layer_group == 1 for p in pts)
    assert any(p.layer_group > 1 for p in optimizer.search.space.get_space("hecaton").outer_points(WORK, h))


def test_exports_reject_layerwise():
    mp = tp2(schedule="layerwise", layer_group=2)
    with pytest.raises(ConfigError, match="layerwise"):
        optimizer.export.megatron_args(mp, WORK, chiplets(4e9))
    with pytest.raises(ConfigError, match="layerwise"):
        optimizer.export.deepspeed_config(mp, WORK, chiplets(4e9))
