"""The `meshmap` command line: presets, evaluate, and the error contract of DESIGN.md ("An error
is one line on stderr and exit code 2, never a traceback")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hw
import models
import optimizer
from optimizer.tools.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for n in needles:
        assert n in err, err


# ------------------------------------------------------------------------------------------ presets

def test_presets_lists_hardware_and_models():
    result = run("presets")
    assert result.exit_code == 0, result.stderr
    assert "dgx-a100" in result.stdout
    assert "llama2-70b" in result.stdout
    assert "wse2" in result.stdout


def test_presets_json():
    result = run("presets", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {r["name"] for r in data["hardware"]} == set(hw.presets())
    assert {r["name"] for r in data["models"]} == set(models.presets())
    a100 = next(r for r in data["hardware"] if r["name"] == "dgx-a100")
    assert a100["bf16_tflops_per_die"] == pytest.approx(312.0)  # A100 datasheet: 312 TFLOPS BF16 dense


def _console_script() -> str:
    script = Path(sys.executable).parent / "meshmap"
    if script.exists():
        return str(script)
    found = shutil.which("meshmap")
    if found is None:
        pytest.skip("the `meshmap` console script is not installed (pip install -e .)")
    return found


def test_console_script_presets():
    proc = subprocess.run([_console_script(), "presets"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dgx-a100" in proc.stdout
    assert "llama2-70b" in proc.stdout


# ----------------------------------------------------------------------------------------- evaluate

def test_evaluate_json_megatron_1_7b():
    result = run("evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert data["step_time_s"] > 0
    for key in ("tokens_per_s", "mfu", "tflops_per_device", "energy_j", "peak_memory_bytes", "fits"):
        assert key in data
    assert isinstance(data["memory"], dict) and "activations" in data["memory"]
    assert isinstance(data["breakdown"], dict) and "compute" in data["breakdown"]
    # defaults: batch 512, the model's seq_len, dp = usable dies / (tp*pp) = 32 on 4 DGX nodes
    assert data["global_batch"] == 512 and data["seq_len"] == 2048
    assert data["devices"] == 32


def test_evaluate_flags_match_library():
    args = ["evaluate", "--model", "megatron-18.4b", "--hw", "dgx-a100", "--nodes", "32", "--tp", "8",
            "--pp", "1", "--micro-batch", "8", "--batch", "1024", "--json"]
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    work = models.Workload(model=models.load("megatron-18.4b"), global_batch=1024)
    machine = hw.load("dgx-a100", nodes=32)
    m = optimizer.baselines.megatron(work, machine, tp=8, pp=1, dp=32, micro_batch=8, recompute="full")
    rep = optimizer.evaluate(m, work, machine)
    assert data["step_time_s"] == pytest.approx(rep.step_time_s)
    assert data["tflops_per_device"] == pytest.approx(rep.tflops_per_device)


def test_evaluate_table_output():
    result = run("evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--recompute", "selective",
                 "--tp", "2", "--sequence-parallel")
    assert result.exit_code == 0, result.stderr
    for word in ("step time", "tokens/s", "MFU", "peak memory", "fits", "activations", "compute"):
        assert word in result.stdout


def test_evaluate_plan_file(tmp_path):
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=512)
    machine = hw.load("dgx-a100")
    m = optimizer.baselines.megatron(work, machine, tp=2, pp=2, dp=8, micro_batch=2, recompute="selective")
    expected = optimizer.evaluate(m, work, machine).step_time_s
    for name in ("plan.json", "plan.yaml"):
        path = tmp_path / name
        m.save(path)
        result = run("evaluate", str(path), "--model", "megatron-1.7b", "--hw", "dgx-a100", "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["step_time_s"] == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- errors

def test_unknown_model():
    assert_one_line_error(run("evaluate", "--model", "no-such-model", "--hw", "dgx-a100"), "no-such-model",
                          "llama2-70b")  # an unknown preset lists the known ones


def test_unknown_hardware():
    assert_one_line_error(run("evaluate", "--model", "megatron-1.7b", "--hw", "no-such-hw"), "no-such-hw",
                          "dgx-a100")


def test_bad_recompute():
    assert_one_line_error(run("evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--recompute", "bogus"),
                          "--recompute", "bogus")


def test_missing_plan_file(tmp_path):
    missing = tmp_path / "missing.json"
    assert_one_line_error(run("evaluate", str(missing), "--model", "megatron-1.7b", "--hw", "dgx-a100"),
                          "not found")


@pytest.mark.parametrize("args", [
    ["evaluate", "--hw", "dgx-a100"],                                              # no --model
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--tp", "3"],     # does not tile a node
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--dp", "7"],     # batch not divisible
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--dp", "64"],    # more dies than exist
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--tp", "0"],
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--tp", "abc"],   # typer's own usage error
    ["evaluate", "--model", "megatron-1.7b", "--hw", "dgx-a100", "--no-such-flag"],
    ["no-such-command"],
])
def test_other_errors_are_one_line(args):
    assert_one_line_error(run(*args))


def test_invalid_plan_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"pp": "x"}')
    assert_one_line_error(run("evaluate", str(bad), "--model", "megatron-1.7b", "--hw", "dgx-a100"), "pp")
    bad.write_text("{not json")
    assert_one_line_error(run("evaluate", str(bad), "--model", "megatron-1.7b", "--hw", "dgx-a100"))


def test_plan_and_flags_conflict(tmp_path):
    plan = tmp_path / "plan.json"
    optimizer.Mapping().save(plan)
    assert_one_line_error(run("evaluate", str(plan), "--model", "megatron-1.7b", "--hw", "dgx-a100", "--tp", "2"),
                          "--tp")


# -------------------------------------------------------------------------------------------- solve
# Small instances only: megatron-1.7b on two A100s of one node, batch 8, seq 512 solves to proven
# optimality in about a second (the full default grid takes minutes).

SMALL = ["--model", "megatron-1.7b", "--hw", "dgx-a100", "--nodes", "1", "--cols", "2", "--batch", "8",
         "--seq", "512", "--time-limit", "60"]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """One small solve with --json and --out, shared by the tests below."""
    plan = tmp_path_factory.mktemp("solve") / "plan.json"
    result = run("solve", *SMALL, "--json", "--out", str(plan))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), plan, result


def test_solve_json_small(solved):
    data, _, result = solved
    assert data["status"] == "optimal"
    assert data["step_time_s"] > 0
    for key in ("tokens_per_s", "mfu", "energy_j", "peak_memory_bytes", "fits", "memory", "breakdown",
                "objective_s", "bound_s", "gap", "solve_time_s", "points_solved", "points_total"):
        assert key in data
    assert data["fits"] is True
    assert data["devices"] <= 2
    assert data["global_batch"] == 8 and data["seq_len"] == 512
    # optimal: the bound is the objective, and the referee agrees with the solver's objective
    assert data["bound_s"] == pytest.approx(data["objective_s"], rel=1e-6)
    assert data["step_time_s"] == pytest.approx(data["objective_s"], rel=1e-6)
    m = optimizer.Mapping.model_validate(data["mapping"])
    assert m.devices == data["devices"]
    assert result.stderr == ""  # no progress bar with --json (and stderr is no TTY here)


def test_solve_plan_file_round_trip(solved):
    data, plan, _ = solved
    saved = json.loads(plan.read_text())
    for key in ("mapping", "report", "status", "bound_s"):
        assert key in saved
    context = (saved["model"], saved["hw"], saved["global_batch"], saved["seq_len"])
    assert context == ("megatron-1.7b", "dgx-a100", 8, 512)
    assert saved["hw_overrides"] == {"nodes": 1, "cols": 2}
    assert optimizer.Mapping.load(plan) == optimizer.Mapping.model_validate(data["mapping"])
    # the plan records its model, hardware (with overrides), batch and seq: no --model/--hw needed
    result = run("evaluate", str(plan), "--json")
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["step_time_s"] == pytest.approx(data["step_time_s"], rel=1e-9)
    assert (again["global_batch"], again["seq_len"], again["devices"]) == (8, 512, data["devices"])
    # an option given wins over what the plan records
    result = run("evaluate", str(plan), "--json", "--batch", "16")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["global_batch"] == 16


def test_solve_table_output():
    result = run("solve", *SMALL)
    assert result.exit_code == 0, result.stderr
    for word in ("status", "optimal", "bound_s", "gap", "points solved / total", "pp", "dp", "tp_shape",
                 "micro_batch", "zero_stage", "schedule", "q_proj", "recompute", "step time", "tokens/s"):
        assert word in result.stdout, word


def test_solve_infeasible_is_an_answer(tmp_path):
    args = ["solve", "--model", "llama2-70b", "--hw", "tmac-wafer", "--rows", "1", "--cols", "1"]
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("infeasible: ")
    assert "infeasible: infeasible" not in result.stdout
    plan = tmp_path / "plan.json"
    result = run(*args, "--json", "--out", str(plan))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible" and data["mapping"] is None
    assert "GB" in data["explanation"]  # says how much memory a die would need
    assert not plan.exists()


def test_solve_progress_bar_shows_what_solve_reports():
    """The bar fed by a real solve's progress callback: after each report it shows that report's points
    solved / total, incumbent and bound; the reports count the inner solves one by one, the incumbent
    never gets worse, and the last one is the Solution's."""
    from optimizer.tools.cli import _SolveBar
    from optimizer.tools.cli.common import _fmt_opt

    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=64)
    seen = []
    with _SolveBar(enabled=True) as bar:
        def report(p):
            bar(p)
            task = bar.progress.tasks[0]
            seen.append((p, task.completed, task.total, task.fields["incumbent"], task.fields["bound"]))
        sol = optimizer.solve(work, hw.load("dgx-a100", nodes=1), space="full", threads=1, progress=report)
    assert sol.status == "optimal" and sol.points_solved >= 2  # more than one report to follow
    assert [p.solved for p, *_ in seen] == list(range(1, sol.points_solved + 1))
    for p, done, total, incumbent, bound in seen:
        assert (done, total) == (p.solved, p.total) == (p.solved, sol.points_total)
        assert (incumbent, bound) == (_fmt_opt(p.incumbent_s, "s"), _fmt_opt(p.bound_s, "s"))
        assert p.bound_s is not None
    found = [p.incumbent_s for p, *_ in seen if p.incumbent_s is not None]
    assert found == sorted(found, reverse=True) and found[-1] == pytest.approx(sol.objective_s, rel=1e-9)
    with _SolveBar(enabled=False) as bar:
        bar(seen[-1][0])  # a no-op
        assert bar.progress is None


@pytest.mark.parametrize("extra, needle", [
    (["--backend", "gurobi"], "--backend"),
    (["--space", "nope"], "--space"),
    (["--objective", "cost"], "--objective"),
    (["--time-limit", "0"], "--time-limit"),
    (["--time-limit", "-5"], "--time-limit"),
    (["--threads", "0"], "--threads"),
    (["--cols", "0"], "--cols"),
    (["--sram-bytes", "-1"], "--sram-bytes"),
    (["--batch", "0"], "--batch"),
])
def test_solve_bad_options(extra, needle):
    assert_one_line_error(run("solve", "--model", "megatron-1.7b", "--hw", "dgx-a100", *extra), needle)


def test_solve_needs_model_and_hw():
    assert_one_line_error(run("solve", "--hw", "dgx-a100"), "--model")
    assert_one_line_error(run("solve", "--model", "megatron-1.7b"), "--hw")


def test_evaluate_bare_mapping_still_needs_model(tmp_path):
    plan = tmp_path / "plan.json"
    optimizer.Mapping().save(plan)  # a bare mapping records no model or hardware
    assert_one_line_error(run("evaluate", str(plan), "--hw", "dgx-a100"), "--model", "meshmap solve --out")


def test_solve_out_directory_must_exist(tmp_path):
    missing = tmp_path / "missing" / "plan.json"
    assert_one_line_error(run("solve", *SMALL, "--out", str(missing)), "--out", "does not exist")


def test_compare_scores_every_peer_heuristic_with_one_referee():
    res = run("compare", "--model", "llama2-7b", "--hw", "tmac-wafer", "--rows", "4", "--cols", "4",
              "--batch", "64", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    names = [r["name"] for r in data["rows"]]
    assert names == list(optimizer.baselines.HEURISTICS)
    work = models.Workload(model=models.load("llama2-7b"), global_batch=64)
    machine = hw.load("tmac-wafer", rows=4, cols=4)
    for row in data["rows"]:
        mapping = optimizer.Mapping.model_validate(row["mapping"])
        assert row["step_time_s"] == pytest.approx(optimizer.evaluate(mapping, work, machine).step_time_s, rel=1e-9)
    fitting = [r["step_time_s"] for r in data["rows"] if r["fits"]]
    assert data["fastest_fitting_s"] == pytest.approx(min(fitting))


def test_compare_and_reproduce_errors_are_one_line():
    assert_one_line_error(run("compare", "--model", "llama2-7b", "--hw", "nope"), "nope")
    assert_one_line_error(run("compare", "--model", "llama2-7b", "--hw", "tmac-wafer", "--batch", "0"), "--batch")
    assert_one_line_error(run("reproduce", "nope"), "nope", "tmac", "hecaton", "t3")


def test_reproduce_lists_every_benchmark_script():
    res = run("reproduce", "--list")
    assert res.exit_code == 0
    root = Path(__file__).resolve().parent.parent
    listed = [line.split()[1] for line in res.stdout.splitlines()]
    # not reproductions: shared code, the claims' bands and targets, the README figures' renderer, peer_fit
    shared = {"common.py", "claim_bands.py", "readme_figures.py", "peer_fit.py"}
    benchmarks = {p.name for p in (root / "benchmarks").glob("*.py")} - shared
    assert {Path(p).name for p in listed} == benchmarks  # every benchmark script, each once
    assert len(listed) == len(benchmarks)
    from optimizer.tools.cli.reproduce import _benchmarks_dir

    for path in listed:
        assert (root / path).is_file(), path
        assert (_benchmarks_dir() / Path(path).name).is_file(), path  # where `meshmap reproduce NAME` looks


def test_solve_json_stays_clean_with_highs():
    """HiGHS writes its banner from C++ straight to the process's stdout unless told not to; a
    --json answer must still be exactly one JSON object."""
    proc = subprocess.run([_console_script(), "solve", *SMALL, "--backend", "highs", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["backend"] == "highs" and data["status"] == "optimal"


def test_compare_solve_orders_each_peer_degrees_space_and_full():
    """With --solve: full optimum <= each peer's space optimum <= that space at its heuristic's degrees,
    and the degrees rows keep the heuristic's degrees."""
    res = run("compare", "--model", "megatron-1.7b", "--hw", "tmac-wafer", "--rows", "1", "--cols", "2",
              "--sram-bytes", "40e9", "--batch", "4", "--seq", "512", "--solve", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)["rows"]}
    full = rows[("space", "full")]
    assert full["status"] == "optimal"
    peers = [p for p in optimizer.baselines.HEURISTICS if rows[("heuristic", p)].get("mapping")]
    assert {"megatron", "deepspeed", "accpar"} <= set(peers)
    for peer in peers:
        heur, deg, space = rows[("heuristic", peer)], rows[("degrees", peer)], rows[("space", peer)]
        assert deg["status"] == space["status"] == "optimal", peer
        keys = ("pp", "dp", "tp_shape", "micro_batch", "zero_stage", "schedule")
        assert [deg["mapping"][k] for k in keys] == [heur["mapping"][k] for k in keys], peer
        assert full["step_time_s"] <= space["step_time_s"] * (1 + 1e-6) <= deg["step_time_s"] * (1 + 1e-6) ** 2, peer


def test_flash_attention_flag_is_solved_recorded_evaluated_and_exported(tmp_path):
    plan = tmp_path / "fa.json"
    args = ("--model", "megatron-1.7b", "--hw", "dgx-a100", "--nodes", "1", "--batch", "16", "--space", "megatron")
    res = run("solve", *args, "--flash-attention", "--out", str(plan), "--json", "--time-limit", "30")
    assert res.exit_code == 0, res.stderr
    solved = json.loads(res.stdout)
    assert json.loads(plan.read_text())["flash_attention"] is True
    again = json.loads(run("evaluate", str(plan), "--json").stdout)
    assert again["step_time_s"] == pytest.approx(solved["step_time_s"])
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=16, flash_attention=True)
    rep = optimizer.evaluate(optimizer.Mapping.model_validate(solved["mapping"]), work, hw.load("dgx-a100", nodes=1))
    assert rep.step_time_s == pytest.approx(solved["step_time_s"])
    exported = run("export", str(plan), "--format", "megatron")
    assert exported.exit_code == 0 and "--attention-backend flash" in exported.stdout


def test_evaluate_out_saves_the_scored_plan_for_the_other_commands(tmp_path):
    """`meshmap evaluate … --out` writes the plan as `solve --out` does: evaluate, check and export read it back."""
    plan = tmp_path / "megatron.json"
    first = run("evaluate", "--model", "llama2-7b", "--hw", "dgx-a100", "--tp", "2", "--seq", "1024",
                "--out", str(plan), "--json")
    assert first.exit_code == 0, first.stderr
    scored = json.loads(first.stdout)
    saved = json.loads(plan.read_text())
    assert saved["status"] == "evaluated"
    assert (saved["model"], saved["hw"], saved["seq_len"]) == ("llama2-7b", "dgx-a100", 1024)
    assert saved["report"]["step_time_s"] == scored["step_time_s"]
    again = run("evaluate", str(plan), "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["step_time_s"] == scored["step_time_s"]
    assert run("export", str(plan), "--format", "megatron").exit_code == 0
    assert_one_line_error(run("evaluate", "--model", "llama2-7b", "--hw", "dgx-a100",
                              "--out", str(tmp_path / "missing" / "p.json")), "--out")
