"""optimizer.check and `meshmap check`: a given mapping next to the optimum and the proven bound."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.tools.cli import app

REL = 1e-6
# megatron-1.7b, batch 4 x 512 tokens on two tmac dies with 40 GB each: the full space solves to
# proven optimality in about two seconds
HW_ARGS = dict(rows=1, cols=2, sram_bytes=40e9)
CLI_CASE = ["--model", "megatron-1.7b", "--hw", "tmac-wafer", "--rows", "1", "--cols", "2",
            "--sram-bytes", "40e9", "--batch", "4", "--seq", "512"]
MEGATRON = {"tp": 2, "pp": 1, "micro_batch": 1, "recompute": "full", "sequence_parallel": False}

runner = CliRunner()


def small():
    h = hw.load("tmac-wafer", **HW_ARGS)
    w = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512)
    return w, h


@pytest.fixture(scope="module")
def megatron_check():
    w, h = small()
    return optimizer.check(MEGATRON, w, h, time_limit_s=60)


def test_megatron_description_gap(megatron_check):
    w, h = small()
    chk = megatron_check
    assert chk.status == "optimal"
    mp = optimizer.baselines.megatron(w, h, tp=2, pp=1, dp=1, micro_batch=1, recompute="full")
    assert chk.mapping == mp  # dp defaults to usable dies / (tp x pp) = 1
    assert chk.step_time_s == optimizer.evaluate(mp, w, h).step_time_s
    assert chk.report.step_time_s == chk.step_time_s and chk.fits is chk.report.fits is True
    assert chk.bound_s is not None and chk.step_time_s >= chk.bound_s
    assert chk.gap >= 0
    assert chk.gap == (chk.step_time_s - chk.bound_s) / chk.bound_s
    assert chk.optimum_s is not None and chk.bound_s <= chk.optimum_s * (1 + REL)
    assert chk.optimum_s <= chk.step_time_s
    assert chk.speedup_possible == chk.step_time_s / chk.optimum_s
    assert chk.gap > 0.05  # full recompute on tp 2 is far from the optimum here
    assert chk.notes == ()


def test_the_same_degrees_lie_between_the_optimum_and_the_given_mapping(megatron_check):
    """The solve at the given degrees searches a subset of the space holding the given mapping's inner
    choices: optimum <= same-degrees optimum <= the given step time, and its mapping keeps the degrees."""
    w, h = small()
    chk = megatron_check
    assert chk.same_degrees_status == "optimal"
    assert chk.optimum_s <= chk.same_degrees_s * (1 + REL)
    assert chk.same_degrees_s <= chk.step_time_s * (1 + REL)
    same = chk.same_degrees_mapping
    assert (same.pp, same.dp, same.tp_shape, same.micro_batch, same.zero_stage, same.schedule) == \
        (chk.mapping.pp, chk.mapping.dp, chk.mapping.tp_shape, chk.mapping.micro_batch, chk.mapping.zero_stage,
         chk.mapping.schedule)
    assert optimizer.evaluate(same, w, h).step_time_s == pytest.approx(chk.same_degrees_s, rel=1e-9)


def test_a_mapping_that_does_not_fit_gets_the_fastest_that_does_at_its_degrees():
    """Full recomputation at micro-batch 4 on one replica of 2 dies x 1 GB does not fit; the same
    degrees with the solver's recomputation and partitions do."""
    w = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512)
    h = hw.load("tmac-wafer", rows=1, cols=2, sram_bytes=1e9)
    given = optimizer.baselines.megatron(w, h, tp=1, pp=1, dp=2, micro_batch=2, recompute="none")
    chk = optimizer.check(given, w, h, time_limit_s=60)
    assert chk.fits is False
    assert chk.same_degrees_status == "optimal" and chk.same_degrees_s is not None
    assert optimizer.evaluate(chk.same_degrees_mapping, w, h).fits
    assert chk.optimum_s <= chk.same_degrees_s * (1 + REL)
    assert any("with the same degrees, the fastest mapping that fits" in n for n in chk.notes)


def test_the_optimum_checks_as_optimal(megatron_check):
    w, h = small()
    best = megatron_check.optimum_mapping
    chk = optimizer.check(best, w, h, time_limit_s=60)
    assert chk.status == "optimal"
    assert abs(chk.gap) <= REL
    assert chk.step_time_s == pytest.approx(chk.optimum_s, rel=1e-9)
    assert chk.step_time_s == optimizer.evaluate(best, w, h).step_time_s
    assert chk.speedup_possible == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_saved_file_gives_the_same_result(megatron_check, tmp_path, suffix):
    w, h = small()
    path = tmp_path / f"plan.{suffix}"
    megatron_check.mapping.save(path)
    chk = optimizer.check(str(path), w, h, time_limit_s=60)
    assert chk.mapping == megatron_check.mapping
    assert chk.step_time_s == megatron_check.step_time_s
    assert chk.status == megatron_check.status
    assert chk.bound_s == pytest.approx(megatron_check.bound_s, rel=1e-9)
    assert chk.gap == pytest.approx(megatron_check.gap, rel=1e-9)


def test_a_mapping_that_does_not_fit_is_still_scored():
    w = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512)
    h = hw.load("tmac-wafer", rows=1, cols=2)  # 0.26 GB per die: nothing fits
    chk = optimizer.check({"dp": 2, "recompute": "none"}, w, h, time_limit_s=10)
    assert chk.fits is False and chk.step_time_s > 0
    assert chk.status == "infeasible" and chk.optimum_s is None and chk.gap is None
    assert any("does not fit" in n for n in chk.notes)
    assert chk.same_degrees_status == "infeasible" and chk.same_degrees_s is None
    assert chk.same_degrees_explanation and any("no mapping with the same degrees fits" in n for n in chk.notes)


@pytest.mark.parametrize("mapping, needle", [
    ({"tp": 2, "tensor_parallel": 2}, "tensor_parallel"),
    ({"tp": 0}, "tp"),
    ({"micro_batch": "2"}, "micro_batch"),
    ({"recompute": "some"}, "recompute"),
    ({"sequence_parallel": "yes"}, "sequence_parallel"),
    ({"tp": 3}, "tp"),
    ({"dp": 3}, "dp"),
    ("no/such/plan.json", "no/such/plan.json"),
    (42, "mapping"),
])
def test_bad_input_names_the_field(mapping, needle):
    w, h = small()
    with pytest.raises(ConfigError, match="mapping") as err:
        optimizer.check(mapping, w, h, time_limit_s=5)
    assert needle in str(err.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"space": "nope"}, "space"),
    ({"backend": "gurobi"}, "backend"),
    ({"time_limit_s": 0}, "time_limit_s"),
    ({"threads": 0}, "threads"),
])
def test_bad_options(kwargs, needle):
    w, h = small()
    with pytest.raises(ConfigError, match=needle):
        optimizer.check(MEGATRON, w, h, **kwargs)


# --------------------------------------------------------------------------------------------- CLI

def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.stdout + result.stderr
    for n in needles:
        assert n in err, err


def test_cli_check_flags_json(megatron_check):
    result = runner.invoke(app, ["check", *CLI_CASE, "--tp", "2", "--pp", "1", "--micro-batch", "1",
                                 "--recompute", "full", "--time-limit", "60", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("step_time_s", "optimum_s", "bound_s", "gap", "status", "fits", "speedup_possible",
                "tokens_per_s", "peak_memory_bytes", "mapping", "optimum_mapping"):
        assert key in data, key
    assert data["step_time_s"] == megatron_check.step_time_s
    assert data["status"] == "optimal" and data["fits"] is True
    assert data["gap"] == pytest.approx(megatron_check.gap, rel=1e-9)
    assert optimizer.Mapping.model_validate(data["mapping"]) == megatron_check.mapping


def test_cli_check_plan_file(megatron_check, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({  # what `meshmap solve --out` records besides the mapping
        "mapping": megatron_check.mapping.model_dump(mode="json"), "model": "megatron-1.7b", "hw": "tmac-wafer",
        "hw_overrides": HW_ARGS, "global_batch": 4, "seq_len": 512}))
    result = runner.invoke(app, ["check", str(plan), "--time-limit", "60", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["step_time_s"] == megatron_check.step_time_s
    assert data["bound_s"] == pytest.approx(megatron_check.bound_s, rel=1e-9)
    assert (data["global_batch"], data["seq_len"]) == (4, 512)
    # the table
    result = runner.invoke(app, ["check", str(plan), "--time-limit", "60"])
    assert result.exit_code == 0, result.stderr
    for word in ("step time", "optimum of space full", "bound", "gap to bound", "optimal"):
        assert word in result.stdout, word


@pytest.mark.parametrize("extra, needle", [
    (["--recompute", "some"], "--recompute"),
    (["--space", "nope"], "--space"),
    (["--backend", "gurobi"], "--backend"),
    (["--time-limit", "0"], "--time-limit"),
    (["--tp", "0"], "--tp"),
    (["--tp", "3"], "tp"),
    (["--bogus"], "--bogus"),
])
def test_cli_check_bad_flags(extra, needle):
    assert_one_line_error(runner.invoke(app, ["check", *CLI_CASE, *extra]), needle)


def test_cli_check_errors(tmp_path):
    assert_one_line_error(runner.invoke(app, ["check", str(tmp_path / "missing.json")]), "missing.json")
    assert_one_line_error(runner.invoke(app, ["check", "--hw", "tmac-wafer"]), "--model")
    plan = tmp_path / "plan.json"
    optimizer.Mapping().save(plan)
    assert_one_line_error(runner.invoke(app, ["check", str(plan), *CLI_CASE, "--tp", "2"]), "not both")
