"""Placement on the grid: the solver chains pipeline stages tile to neighbouring tile around
defective dies, never uses a defective die, and says why when too few dies are left."""

from __future__ import annotations

import math

import pytest

import hw
import models
import optimizer
from hw.topology import hops
from hw.topology import usable_tiles
from optimizer.formulation.placement import _cpsat_placement, hop_profile, place_groups
from optimizer.model.mapping import StageGroup
from optimizer.search.space import OuterPoint, Space
from optimizer.model.tables import default_groups

REL = 1e-6
WORK = models.Workload(model=models.load("megatron-1.7b"), global_batch=64, seq_len=2048)
SRAM = 2e9  # room for the 1.7B model's embedding on one die (the preset's 256 MB is sized for sweeps)
DEFECT = (1, 2)


def wafer(defects=()):
    return hw.load("tmac-wafer", rows=4, cols=4, sram_bytes=SRAM, defects=list(defects))


def chain_hops(mapping, topo) -> list[int]:
    by = {(g.stage, g.replica): g.origin for g in mapping.groups}
    return [hops(by[(s, d)], by[(s + 1, d)], topo) for d in range(mapping.dp) for s in range(mapping.pp - 1)]


PIPE8 = Space("full", points=(OuterPoint(pp=8, dp=1, shape=(1, 1), micro_batch=1, zero_stage=0),))


def test_snake_broken_by_a_defect_is_repaired_by_the_solver():
    h = wafer([DEFECT])
    snake = default_groups(h, 8, 1, (1, 1))
    assert max(chain_hops(optimizer.Mapping(pp=8, groups=snake), h.topology)) == 2  # the skipped tile
    sol = optimizer.solve(WORK, h, space=PIPE8, time_limit_s=60)
    assert sol.status == "optimal"
    assert chain_hops(sol.mapping, h.topology) == [1] * 7  # consecutive stages one hop apart
    assert DEFECT not in sol.mapping.used_dies()
    assert math.isclose(optimizer.evaluate(sol.mapping, WORK, h).step_time_s, sol.objective_s, rel_tol=REL)
    # the same operator choices on the snake are slower, and so is moving one stage far away
    on_snake = sol.mapping.model_copy(update={"groups": snake})
    assert optimizer.evaluate(on_snake, WORK, h).step_time_s > sol.report.step_time_s
    free = sorted(set(hw_tiles(h)) - {g.origin for g in sol.mapping.groups})
    mid = next(g for g in sol.mapping.groups if g.stage == 4)
    far = max(free, key=lambda t: hops(t, mid.origin, h.topology))
    moved = tuple(StageGroup(stage=g.stage, replica=g.replica, origin=far if g.stage == 4 else g.origin)
                  for g in sol.mapping.groups)
    slow = optimizer.evaluate(sol.mapping.model_copy(update={"groups": moved}), WORK, h)
    print(f"stage 4 moved {hops(far, mid.origin, h.topology)} hops away: "
          f"{sol.report.step_time_s:.6f} s -> {slow.step_time_s:.6f} s")
    assert slow.step_time_s > sol.report.step_time_s


def hw_tiles(h):
    return [(r, c) for r in range(h.rows) for c in range(h.cols) if h.usable((r, c))]


@pytest.mark.parametrize("pp,dp", [(8, 1), (4, 2), (2, 4), (15, 1), (1, 8)])
def test_placement_never_worse_than_the_snake(pp, dp):
    h = wafer([DEFECT])
    placed, snake = place_groups(h, pp, dp, (1, 1)), default_groups(h, pp, dp, (1, 1))
    prof = lambda gs: hop_profile({(g.stage, g.replica): g.origin for g in gs}, pp, dp, h)  # noqa: E731
    assert prof(placed) <= prof(snake)
    assert DEFECT not in {g.origin for g in placed}
    assert place_groups(h, pp, dp, (1, 1)) == placed  # repeatable


def test_placement_without_defects_keeps_the_snake():
    h = wafer()
    for pp, dp in [(16, 1), (4, 4), (1, 16), (2, 2)]:
        assert place_groups(h, pp, dp, (2, 2) if pp * dp == 4 else (1, 1)) == \
            default_groups(h, pp, dp, (2, 2) if pp * dp == 4 else (1, 1))


@pytest.mark.parametrize("shape", [(2, 4), (4, 2), (2, 1)])
def test_one_stage_filling_the_mesh_rings_at_the_least_hops(shape):
    """Replicas of one stage filling a defect-free 8×8 mesh take a comb-shaped cycle of the tile
    grid, without a solver: its longest ring edge is max(r, c) hops (a ring crossing a row cut and
    a column cut needs both), it makes only the 2·(n − 1) long moves across the n tile columns
    (or rows) a cycle must, and CP-SAT started from the snake finds no better hop profile."""
    h = hw.load("tmac-wafer", rows=8, cols=8)
    r, c = shape
    dp = 64 // (r * c)
    placed = place_groups(h, 1, dp, shape)
    profile = hop_profile({(g.stage, g.replica): g.origin for g in placed}, 1, dp, h)
    across = (8 // c if c >= r else 8 // r) - 1
    assert profile == (0, max(r, c), 2 * across * max(r, c) + (dp - 2 * across) * min(r, c))
    snake = {(g.stage, g.replica): g.origin for g in default_groups(h, 1, dp, shape)}
    assert hop_profile(_cpsat_placement(h, 1, dp, usable_tiles(h, shape), snake), 1, dp, h) >= profile


POINTS = Space("full", points=tuple(
    OuterPoint(pp=pp, dp=dp, shape=shape, micro_batch=1, zero_stage=0)
    for pp, dp, shape in [(16, 1, (1, 1)), (8, 2, (1, 1)), (4, 4, (1, 1)), (15, 1, (1, 1)), (7, 2, (1, 1)),
                          (3, 4, (1, 1)), (4, 1, (2, 2)), (2, 2, (2, 2)), (4, 2, (1, 2)), (2, 4, (1, 2))]))


# 8x8 wafer, 1D tensor groups (quick inner models); batch 84 = 2²·3·7 lets data parallelism use
# the 7 rows or 14 half-rows a defect leaves
WORK84 = models.Workload(model=models.load("megatron-1.7b"), global_batch=84, seq_len=2048)
POINTS8 = Space("full", points=tuple(
    OuterPoint(pp=pp, dp=dp, shape=shape, micro_batch=1, zero_stage=0)
    for pp, dp, shape in [(1, 4, (1, 8)), (2, 4, (1, 8)), (4, 2, (1, 8)), (3, 4, (1, 4)), (2, 6, (1, 4)),
                          (1, 12, (1, 4)), (2, 7, (1, 4)), (1, 14, (1, 4)), (5, 3, (1, 4)), (1, 7, (1, 8)),
                          (7, 1, (1, 8)), (2, 3, (1, 8)), (3, 2, (1, 8)), (1, 6, (1, 8))]))


def test_defects_are_never_used_and_cost_little():
    clean = optimizer.solve(WORK84, hw.load("tmac-wafer", sram_bytes=SRAM), space=POINTS8, time_limit_s=120)
    hurt = optimizer.solve(WORK84, hw.load("tmac-wafer", sram_bytes=SRAM, defects=[DEFECT]), space=POINTS8,
                           time_limit_s=120)
    assert clean.status == hurt.status == "optimal"
    assert DEFECT not in hurt.mapping.used_dies()
    assert hurt.objective_s >= clean.objective_s * (1 - REL)
    loss = hurt.objective_s / clean.objective_s - 1
    print(f"one defective die of 64 at {DEFECT}: {clean.objective_s:.6f} s on {clean.mapping.devices} dies -> "
          f"{hurt.objective_s:.6f} s on {hurt.mapping.devices} dies (+{loss:.2%})")
    assert loss < 0.10


def test_too_many_defects_is_infeasible_with_the_reason():
    dead = [(r, c) for r in range(4) for c in range(4) if (r, c) not in {(0, 0), (3, 3)}]
    sol = optimizer.solve(WORK, wafer(dead), space=POINTS, time_limit_s=30)
    assert sol.status == "infeasible"
    assert "14 of 16 dies are defective" in sol.explanation, sol.explanation
