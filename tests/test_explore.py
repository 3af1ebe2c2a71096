"""optimizer.explore: the hardware template, the budget, the executors (serial, pool, Ray) and the
Pareto front; `meshmap explore` and `--plot` on the command line.

Small instances only: megatron-1.7b with a global batch of 8 sequences of 512 tokens on 2x1 and
2x2 `tmac-wafer` variants, in Megatron-LM's space, each proven optimal (or infeasible) in about a
second.
"""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.tools.cli import app
from optimizer.tools.explore import SRAM_MM2_PER_GB_N5, Budget, DesignPoint, Template, explore, pareto, variants

runner = CliRunner()
SMALL = Template(base="tmac-wafer", rows=[2], cols=[1, 2], sram_bytes=[2.56e8, 5.12e8])
KW = {"space": "megatron", "time_limit_s": 60.0}  # each point finishes in seconds: the limit never cuts


@pytest.fixture(scope="module")
def work():
    return models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=512)


@pytest.fixture(scope="module")
def serial(work):
    return explore(SMALL, work, Budget(), executor="serial", **KW)


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.stdout + result.stderr
    for n in needles:
        assert n in err, err


# ------------------------------------------------------------------------------------- the sweep

def test_serial_points_in_sweep_order(serial):
    assert [p.overrides for p in serial] == [
        {"rows": 2, "cols": 1, "sram_bytes": 2.56e8}, {"rows": 2, "cols": 1, "sram_bytes": 5.12e8},
        {"rows": 2, "cols": 2, "sram_bytes": 2.56e8}, {"rows": 2, "cols": 2, "sram_bytes": 5.12e8}]
    # 2 dies of 256 MB cannot hold megatron-1.7b's state in Megatron-LM's space (no DRAM tier)
    assert serial[0].status == "infeasible" and serial[0].mapping is None and "GB" in serial[0].explanation
    assert serial[0].tokens_per_s is None and not serial[0].solved
    for p in serial[1:]:
        assert p.status == "optimal", p
        assert p.mapping is not None and p.mapping.devices <= p.dies
        assert p.tokens_per_s > 0 and p.energy_j > 0 and p.gap == pytest.approx(0.0, abs=1e-9)
        assert p.bound == p.bound_s
    # tmac-wafer dies: 600 mm², 300 W each (hw/presets/tmac-wafer.yaml); die area fixed by default
    assert [p.area_mm2 for p in serial] == [1200.0, 1200.0, 2400.0, 2400.0]
    assert [p.power_w for p in serial] == [600.0, 600.0, 1200.0, 1200.0]


def test_solve_agrees_with_a_point(serial, work):
    p = serial[2]
    sol = optimizer.solve(work, SMALL.hardware(**p.overrides), threads=1, **KW)
    assert sol.report.step_time_s == p.step_time_s and sol.mapping == p.mapping


def test_pool_identical_to_serial(serial, work):
    pool = explore(SMALL, work, Budget(), executor="pool", workers=2, threads_per_worker=1, **KW)
    assert [p.outcome() for p in pool] == [p.outcome() for p in serial]


def test_budget_filters_designs(work):
    t = Template(base="tmac-wafer", rows=[1, 2, 4], cols=[2])
    all_ = variants(t)
    assert [(v[0]["rows"], v[2], v[3], v[4]) for v in all_] == [
        (1, 1200.0, 600.0, True), (2, 2400.0, 1200.0, True), (4, 4800.0, 2400.0, True)]
    assert [v[4] for v in variants(t, Budget(area_mm2=2400))] == [True, True, False]
    assert [v[4] for v in variants(t, Budget(power_w=600))] == [True, False, False]
    assert [v[4] for v in variants(t, {"area_mm2": 5000, "power_w": 1500})] == [True, True, False]
    pts = explore(t, work, Budget(area_mm2=1500), executor="serial", **KW)
    assert [p.overrides["rows"] for p in pts] == [1]  # only the design within budget is solved
    assert explore(t, work, Budget(area_mm2=100), executor="serial", **KW) == []


def test_area_model_and_defects():
    t = Template(base="tmac-wafer", rows=[2], cols=[2], sram_bytes=[2.56e8, 1.256e9], sram_mm2_per_gb=SRAM_MM2_PER_GB_N5)
    (_, h0, a0, _, _), (_, h1, a1, _, _) = variants(t)
    assert a0 == pytest.approx(4 * 600.0)  # the base's SRAM: the preset's die area
    assert a1 == pytest.approx(4 * (600.0 + 240.0))  # 1 GB more SRAM per die at 240 mm²/GB
    assert h1.die.sram_bytes == 1.256e9
    # a defective die still occupies silicon (area) but is fused off (power)
    base = hw.load("tmac-wafer", defects=[(0, 0)])
    (_, h, area, power, _), = variants(Template(base=base))
    assert (area, power, h.num_dies) == (64 * 600.0, 63 * 300.0, 63)


def test_hardware_variant_overrides():
    t = Template(base="tmac-wafer", link_bandwidth=[1e12], dram_bandwidth=[2e12])
    h = t.hardware(rows=4, cols=16, sram_bytes=1e8, link_bandwidth=1e12, dram_bandwidth=2e12)
    assert (h.rows, h.cols, h.die.sram_bytes, h.topology.link.bandwidth) == (4, 16, 1e8, 1e12)
    assert h.dram_ports and all(p.bandwidth == 2e12 for p in h.dram_ports)
    assert all(0 <= p.row < 4 and 0 <= p.col < 16 for p in h.dram_ports)  # ports clamped into the grid
    with pytest.raises(ConfigError, match="dram_bw"):
        t.hardware(dram_bw=1.0)


# ------------------------------------------------------------------------------------ the front

def _pt(i: int, area: float, tps: float | None, energy: float | None) -> DesignPoint:
    return DesignPoint(hw="x", overrides={"rows": i}, rows=i, cols=1, dies=i, sram_bytes=1.0, area_mm2=area,
                       power_w=1.0, status="optimal" if tps else "infeasible", tokens_per_s=tps, energy_j=energy,
                       step_time_s=1 / tps if tps else None)


def test_pareto():
    a, b, c = _pt(1, 100, 10, 5), _pt(2, 200, 20, 5), _pt(3, 200, 15, 5)  # c: b is as small, faster
    d, e = _pt(4, 300, 20, 4), _pt(5, 50, None, None)  # d: more area but less energy; e: no mapping
    twin = _pt(6, 100, 10, 5)  # the same objectives as a: neither dominates the other
    front = pareto([c, b, a, d, e, twin])
    assert [p.overrides["rows"] for p in front] == [1, 6, 2, 4]  # sorted by area, then throughput
    assert pareto([]) == [] and pareto([e]) == []


# ---------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fields, needle", [
    ({"rows": [0]}, "rows"),
    ({"rows": []}, "rows"),
    ({"rows": [2.5]}, "rows"),
    ({"cols": [4, 4]}, "cols"),
    ({"sram_bytes": [-1.0]}, "sram_bytes"),
    ({"sram_bytes": [float("inf")]}, "sram_bytes"),
    ({"link_bandwidth": [0.0]}, "link_bandwidth"),
    ({"dram_bandwidth": [float("nan")]}, "dram_bandwidth"),
    ({"sram_mm2_per_gb": -1.0}, "sram_mm2_per_gb"),
    ({"base": "no-such-hw"}, "base"),
    ({"grid": [4]}, "grid"),
])
def test_bad_template_names_the_field(fields, needle):
    with pytest.raises(ValidationError) as err:
        Template(**{"base": "tmac-wafer", **fields})
    assert needle in str(err.value)


@pytest.mark.parametrize("fields, needle", [
    ({"link_bandwidth": [1e11]}, "link_bandwidth"),  # a switched cluster has no die-to-die link
    ({"dram_bandwidth": [1e12]}, "dram_bandwidth"),  # GPUs have no DRAM ports in the presets
    ({"sram_bytes": [1e8]}, "sram_bytes"),           # an A100 works out of HBM
])
def test_template_fields_the_base_lacks(fields, needle):
    with pytest.raises(ValidationError, match=needle):
        Template(base="dgx-a100", **fields)


def test_design_the_hardware_rejects_names_it():
    t = Template(base=hw.load("tmac-wafer", defects=[(7, 7)]), rows=[4, 8])
    with pytest.raises(ConfigError, match=r"rows=4.*defects"):
        variants(t)


@pytest.mark.parametrize("kwargs, needle", [
    ({"executor": "gpu"}, "executor"),
    ({"workers": 0}, "workers"),
    ({"threads_per_worker": 0}, "threads_per_worker"),
    ({"time_limit_s": 0}, "time_limit_s"),
    ({"space": "nope"}, "space"),
    ({"ray_address": "auto"}, "ray_address"),  # Ray only when asked for: executor="ray"
    ({"budget": {"area_mm2": -5}}, "area_mm2"),
    ({"budget": {"power": 5}}, "power"),
    ({"template": {"base": "tmac-wafer", "rows": [-1]}}, "rows"),
])
def test_bad_explore_arguments(work, kwargs, needle):
    args = {"template": SMALL, "budget": None, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        explore(args.pop("template"), work, args.pop("budget"), **args)


def test_ray_missing_is_a_clear_error(work, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install meshmap\[ray\]"):
        explore(SMALL, work, executor="ray")


# ----------------------------------------------------------------------------------------- CLI

CLI_SMALL = ["--model", "megatron-1.7b", "--hw", "tmac-wafer", "--batch", "8", "--seq", "512", "--space", "megatron",
             "--rows", "2", "--cols", "1,2", "--sram-bytes", "2.56e8,5.12e8"]


def test_cli_explore_json_and_plot(tmp_path, serial):
    front = tmp_path / "front.png"
    result = run("explore", *CLI_SMALL, "--executor", "serial", "--area-budget", "2000", "--json", "--plot", str(front))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["designs"], data["over_budget"], len(data["points"])) == (4, 2, 2)  # 2x2 = 2400 mm² > 2000
    for got, want in zip(data["points"], serial[:2]):
        assert (got["status"], got["step_time_s"], got["design"]) == (want.status, want.step_time_s, want.label())
    assert data["pareto"] and all(data["points"][i]["pareto"] for i in data["pareto"])
    assert data["plot"] == str(front) and front.stat().st_size > 1000


def test_cli_explore_table():
    result = run("explore", *CLI_SMALL, "--workers", "2")  # the default executor: a process pool
    assert result.exit_code == 0, result.stderr
    for word in ("design", "mm²", "tokens/s", "optimal", "infeasible", "4 of 4 designs solved", "Pareto front",
                 "2x2 512MB"):
        assert word in result.stdout, word


@pytest.mark.parametrize("extra, needle", [
    (["--rows", "4,x"], "--rows"),
    (["--rows", "0"], "--rows"),
    (["--sram-bytes", "-1"], "--sram-bytes"),
    (["--link-bandwidth", "1e12,1e12"], "--link-bandwidth"),
    (["--executor", "gpu"], "--executor"),
    (["--executor", "pool", "--ray-address", "auto"], "--ray-address"),
    (["--plot", "front.jpg"], "--plot"),
    (["--area-budget", "-1"], "--area-budget"),
    (["--workers", "0"], "--workers"),
    (["--time-limit", "0"], "--time-limit"),
])
def test_cli_explore_errors(extra, needle):
    assert_one_line_error(run("explore", "--model", "megatron-1.7b", "--hw", "tmac-wafer", *extra), needle)


def test_cli_explore_bad_base_and_missing_ray(monkeypatch):
    assert_one_line_error(run("explore", "--model", "megatron-1.7b", "--hw", "no-such-hw"), "--hw", "tmac-wafer")
    assert_one_line_error(run("explore", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--dram-bandwidth", "1e12"),
                          "--dram-bandwidth")
    monkeypatch.setitem(sys.modules, "ray", None)
    assert_one_line_error(run("explore", *CLI_SMALL, "--executor", "ray"), "pip install meshmap[ray]")


def test_cli_evaluate_plot(tmp_path):
    grid = tmp_path / "grid.png"
    result = run("evaluate", "--model", "megatron-1.7b", "--hw", "tmac-wafer", "--tp", "4", "--pp", "2",
                 "--batch", "64", "--plot", str(grid))
    assert result.exit_code == 0, result.stderr
    breakdown = tmp_path / "grid-breakdown.png"
    assert grid.stat().st_size > 1000 and breakdown.stat().st_size > 1000
    assert "pictures written" in result.stdout
    svg = tmp_path / "plan.svg"
    result = run("evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--json", "--plot", str(svg))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["plots"] == [str(svg), str(tmp_path / "plan-breakdown.svg")]
    assert b"<svg" in svg.read_bytes()[:2000]


def test_cli_plot_errors(tmp_path):
    base = ["--model", "megatron-1.7b", "--hw", "dgx-a100"]
    assert_one_line_error(run("evaluate", *base, "--plot", str(tmp_path / "grid.jpg")), "--plot", ".png or .svg")
    assert_one_line_error(run("evaluate", *base, "--plot", str(tmp_path / "no" / "grid.png")), "--plot")
    assert_one_line_error(run("solve", *base, "--plot", str(tmp_path / "grid")), "--plot")


def test_cli_solve_plot(tmp_path):
    grid = tmp_path / "solved.svg"
    result = run("solve", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--nodes", "1", "--cols", "2",
                 "--batch", "8", "--seq", "512", "--space", "megatron", "--plot", str(grid))
    assert result.exit_code == 0, result.stderr
    assert grid.exists() and (tmp_path / "solved-breakdown.svg").exists()


# ----------------------------------------------------------------------------------------- Ray

def test_ray_identical_to_serial(work, serial):
    """A local Ray cluster of two CPUs (Ray is in the dev extra) returns the serial sweep's points."""
    pytest.importorskip("ray", reason="Ray is in the dev extra: pip install -e '.[dev]'")
    on_ray = explore(SMALL, work, executor="ray", workers=2, **KW)
    assert [p.outcome() for p in on_ray] == [p.outcome() for p in serial]
    assert {p.status for p in on_ray} == {"optimal", "infeasible"}  # both kinds of outcome cross Ray
