"""optimizer.tools.pictures: the die grid of a mapping, the step-time breakdown and the Pareto front are
written as non-empty PNG or SVG files (by suffix); any other suffix is a clear error."""

from __future__ import annotations

import pytest

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.tools.explore import DesignPoint
from optimizer.tools.pictures import breakdown_picture, grid_picture, pareto_picture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_picture(path, suffix: str) -> None:
    assert path.exists() and path.stat().st_size > 1000, path
    head = path.read_bytes()[:200]
    if suffix == ".png":
        assert head.startswith(PNG_MAGIC)
    else:
        assert b"<svg" in path.read_bytes()[:2000]


@pytest.fixture(scope="module")
def wafer():
    """tmac-wafer with one defective die, and a Megatron mapping that avoids it (pp 2, dp 4, tp 4)."""
    machine = hw.load("tmac-wafer", defects=[(7, 7)])
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=64)
    mapping = optimizer.baselines.megatron(work, machine, tp=4, pp=2, dp=4, micro_batch=1)
    return machine, work, mapping


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_grid_picture(tmp_path, wafer, suffix):
    machine, _, mapping = wafer
    assert machine.defects and machine.dram_ports  # both are drawn
    out = grid_picture(mapping, machine, tmp_path / f"grid{suffix}")
    assert out == tmp_path / f"grid{suffix}"
    assert_picture(out, suffix)


def test_grid_picture_default_placement_and_cluster(tmp_path):
    # a mapping without explicit groups is drawn at the placement evaluate() uses
    m = optimizer.Mapping(pp=2, dp=2, tp_shape=(2, 2))
    assert_picture(grid_picture(m, hw.load("hecaton-chiplet"), tmp_path / "hecaton.png"), ".png")
    # a switched GPU cluster: rows are nodes, columns GPUs
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=64)
    machine = hw.load("dgx-a100", nodes=2)
    m = optimizer.baselines.megatron(work, machine, tp=2, pp=2, dp=4)
    assert_picture(grid_picture(m, machine, tmp_path / "cluster.svg"), ".svg")


def test_grid_picture_rejects_a_mapping_that_does_not_fit(tmp_path):
    m = optimizer.Mapping(pp=5, dp=1, tp_shape=(3, 3))  # an 8x8 grid holds four aligned 3x3 tiles
    with pytest.raises(ConfigError, match="tp_shape"):
        grid_picture(m, hw.load("tmac-wafer"), tmp_path / "x.png")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_breakdown_picture(tmp_path, wafer, suffix):
    machine, work, mapping = wafer
    rep = optimizer.evaluate(mapping, work, machine)
    out = breakdown_picture(rep, tmp_path / f"breakdown{suffix}")
    assert out == tmp_path / f"breakdown{suffix}"
    assert_picture(out, suffix)


def _point(area: float, tps: float | None, energy: float | None, status: str = "optimal", **kw) -> DesignPoint:
    return DesignPoint(hw="tmac-wafer", overrides={"rows": kw.get("rows", 8)}, rows=kw.get("rows", 8), cols=8,
                       dies=64, sram_bytes=2.56e8, area_mm2=area, power_w=19200.0, status=status,
                       step_time_s=None if tps is None else 1e6 / tps, tokens_per_s=tps, energy_j=energy)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_pareto_picture(tmp_path, suffix):
    points = [_point(1000, 100, 5.0, rows=1), _point(2000, 300, 6.0, rows=2), _point(2500, 250, 7.0, rows=3),
              _point(3000, None, None, status="infeasible", rows=4)]
    out = pareto_picture(points, tmp_path / f"front{suffix}")
    assert out == tmp_path / f"front{suffix}"
    assert_picture(out, suffix)
    # no solved point at all still draws a (labelled, empty) picture
    assert_picture(pareto_picture([], tmp_path / f"empty{suffix}"), suffix)


@pytest.mark.parametrize("name", ["grid.jpg", "grid.pdf", "grid", "grid.png.txt"])
def test_bad_suffix_is_a_clear_error(tmp_path, wafer, name):
    machine, work, mapping = wafer
    rep = optimizer.evaluate(mapping, work, machine)
    for draw in (lambda p: grid_picture(mapping, machine, p), lambda p: breakdown_picture(rep, p),
                 lambda p: pareto_picture([], p)):
        with pytest.raises(ConfigError, match=r"must end in \.png or \.svg"):
            draw(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_missing_directory_is_a_clear_error(tmp_path, wafer):
    machine, _, mapping = wafer
    with pytest.raises(ConfigError, match="does not exist"):
        grid_picture(mapping, machine, tmp_path / "missing" / "grid.png")
