"""Idle dies and infeasibility reasons.

A tensor group need not divide the grid: the dies beyond its aligned tiles stay idle, so more
hardware never makes training slower or impossible. An infeasible answer names its binding
reason (optimizer/search/infeasible.py): memory, divisibility, DRAM capacity or defects.
"""

import hw
import models
import optimizer
from optimizer.search.space import Space

REL = 1e-6


def test_llama2_7b_fits_a_dojo_tile_by_leaving_dies_idle():
    """25 dies in a 5x5 tile: 32 heads and 5-wide groups do not divide, but a sub-grid does."""
    work = models.Workload(model=models.load("llama2-7b"), global_batch=512)
    sol = optimizer.solve(work, "dojo-tile", time_limit_s=120)
    assert sol.status == "optimal", sol.explanation
    used = sol.mapping.used_dies()
    assert len(used) == sol.mapping.devices < 25
    assert sol.report.fits and sol.report.devices == len(used)


def test_a_grid_is_never_slower_than_its_sub_grids():
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=16, seq_len=1024)
    space = Space("full", zero_stages=(0, 1), virtual=(1,), layerwise=False)
    whole = optimizer.solve(work, hw.load("tmac-wafer", rows=3, cols=3), space=space, time_limit_s=120)
    assert whole.status == "optimal"
    for rows, cols in ((1, 3), (3, 1), (2, 3)):
        sub = optimizer.solve(work, hw.load("tmac-wafer", rows=rows, cols=cols), space=space, time_limit_s=120)
        assert sub.status == "optimal"
        assert whole.objective_s <= sub.objective_s * (1 + REL), (rows, cols, whole.objective_s, sub.objective_s)


def test_memory_is_named_when_even_a_perfect_split_does_not_fit():
    work = models.Workload(model=models.load("llama2-70b"), global_batch=1024)
    sol = optimizer.solve(work, "t3-gpu")
    assert sol.status == "infeasible" and sol.reasons[0] == "memory"
    need = 16 * models.parameter_count(work.model) / 8  # bf16 weights and grads + Adam, over 8 GPUs
    assert need > hw.load("t3-gpu").die.memory_bytes
    assert sol.explanation.startswith("infeasible: [memory]") and "weights" in sol.explanation


def test_divisibility_is_named_when_the_dimensions_do_not_divide_the_group():
    """Three dies, a two-layer model: an even split over 3 would fit, but no dimension divides by
    3, two layers make at most two stages and the batch of 8 takes no 3-way data parallelism."""
    m = models.ModelConfig(name="two-layer", layers=2, hidden=4096, heads=32, vocab=32000, seq_len=2048)
    work = models.Workload(model=m, global_batch=8)
    state = 16 * models.parameter_count(m)
    h = hw.load("tmac-wafer", rows=1, cols=3, sram_bytes=state / 2.4)
    sol = optimizer.solve(work, h, space=Space("full", offload=False))
    assert sol.status == "infeasible" and sol.reasons[0] == "divisibility", sol.explanation
    assert "heads = 32" in sol.explanation and "divisible by 3" in sol.explanation
    roomy = optimizer.solve(work, hw.load("tmac-wafer", rows=1, cols=3, sram_bytes=state / 1.5),
                            space=Space("full", offload=False))
    assert roomy.status == "optimal"


def test_dram_capacity_is_named():
    h = hw.load("hecaton-chiplet", rows=2, cols=2, sram_bytes=2e8)
    tiny = h.model_copy(update={"dram_ports": tuple(p.model_copy(update={"capacity_bytes": 1e6})
                                                      for p in h.dram_ports)})
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=1024)
    sol = optimizer.solve(work, tiny, time_limit_s=60)
    assert sol.status == "infeasible" and sol.reasons[0] == "dram", sol.explanation
    assert "DRAM holds" in sol.explanation


def test_defects_are_named():
    dies = [(r, c) for r in range(4) for c in range(4)][1:15]  # 14 of 16: two usable dies
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=1024)
    state = 16 * models.parameter_count(work.model)
    h = hw.load("tmac-wafer", rows=4, cols=4, sram_bytes=state / 6, defects=dies)
    sol = optimizer.solve(work, h, space=Space("full", offload=False), time_limit_s=60)
    assert sol.status == "infeasible" and sol.reasons[0] == "defects", sol.explanation
    assert "14 of 16 dies are defective" in sol.explanation


def test_an_explicit_point_the_model_cannot_run_is_skipped_and_named():
    """10 layers on pp 4 cannot run 4 chunks per stage (the balanced stages hold 2, 3, 3, 2 layers, so
    a chunk would have none): the point is skipped, named with its reason, and the solve goes on
    with the others (or answers infeasible without them)."""
    import dataclasses

    from optimizer.search.space import OuterPoint, get_space

    work = models.Workload(model=models.ModelConfig(name="ten", layers=10, hidden=512, heads=8, vocab=1024),
                           global_batch=16, seq_len=256)
    machine = hw.load("dgx-a100", nodes=1)
    uneven = OuterPoint(4, 1, (1, 2), 1, 0, 4, "full")
    alone = dataclasses.replace(get_space("megatron"), points=(uneven,))
    sol = optimizer.solve(work, machine, space=alone, time_limit_s=30)
    assert sol.status == "infeasible" and sol.reasons == ("divisibility",)
    assert "pp 4 dp 1 tp 1x2 micro-batch 1 v 4" in sol.explanation and "10 layers on pp 4" in sol.explanation
    both = dataclasses.replace(alone, points=(uneven, OuterPoint(2, 1, (1, 2), 1, 0, 1, "full")))
    sol = optimizer.solve(work, machine, space=both, time_limit_s=30)
    assert sol.status == "optimal" and sol.mapping.pp == 2
    assert "1 explicit outer point(s) skipped" in sol.explanation
