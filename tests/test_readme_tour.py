"""The README's tour, run verbatim as a new user would, in a fresh directory: its shell blocks'
`meshmap` commands and its Python blocks (each after the tour's imports), in document order."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimizer.tools.cli import app


README = Path(__file__).resolve().parent.parent / "README.md"
TOUR_START, TOUR_END = "## A 5-minute tour", "## Reproducing"


IMPORTS = "import hw, models, optimizer\n"  # "imports as above"


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the tour, in order."""
    text = README.read_text()
    tour = text[text.index(TOUR_START):text.index(TOUR_END)]
    return re.findall(r"```(bash|python)\n(.*?)```", tour, flags=re.S)


def commands(block: str) -> list[str]:
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith("meshmap "):
            out.append(line)
    return out


def shell_commands() -> list[str]:
    return [c for lang, block in tour_blocks() if lang == "bash" for c in commands(block)]


def test_the_tour_has_the_main_commands():
    verbs = {shlex.split(c)[1] for c in shell_commands()}
    assert {"presets", "evaluate", "solve", "check", "export", "explore"} <= verbs
    assert any("--plot" in c for c in shell_commands())


def test_readme_tour_runs_verbatim(tmp_path):
    meshmap = [sys.executable, "-c", "from optimizer.tools.cli import main; main()"]
    for lang, block in tour_blocks():
        if lang == "python":
            res = subprocess.run([sys.executable, "-c", IMPORTS + block], cwd=tmp_path, capture_output=True,
                                 text=True, timeout=900)
            assert res.returncode == 0, (block, res.stderr[-3000:])
            continue
        for cmd in commands(block):
            res = subprocess.run(meshmap + shlex.split(cmd)[1:], cwd=tmp_path, capture_output=True, text=True,
                                 timeout=600)
            assert res.returncode == 0, (cmd, res.stderr[-2000:])
            assert "Traceback" not in res.stderr, (cmd, res.stderr[-2000:])
    assert list(tmp_path.glob("*.png")), "the tour draws at least one picture"


# ------------------------------------------------------------------ the figures the commands print
# Each figure the tour quotes from a command's printout, rendered from the same command's --json
# output, must appear in README.md (whitespace collapsed). Figures from the committed benchmark runs
# are checked by tests/test_readme_figures.py.

SOLVE_7B = ["solve", "--model", "llama2-7b", "--hw", "dgx-a100", "--nodes", "1", "--batch", "64"]
CHECK_7B = ["check", "--model", "llama2-7b", "--hw", "dgx-a100", "--nodes", "1", "--batch", "64", "--tp", "8",
            "--micro-batch", "1", "--recompute", "full", "--time-limit", "5"]
EXPLORE = ["explore", "--model", "megatron-1.7b", "--hw", "tmac-wafer", "--batch", "16", "--seq", "1024",
           "--space", "megatron", "--rows", "2,4", "--cols", "4,8", "--sram-bytes", "1.28e8,2.56e8",
           "--sram-mm2-per-gb", "240", "--area-budget", "10000"]
COMPARE_13B = ["compare", "--model", "llama2-13b", "--hw", "tmac-wafer"]


def readme_text() -> str:
    return " ".join(README.read_text().split())


def cli(*args: str) -> tuple[str, str]:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
    return res.stdout, res.stderr


def cli_json(*args: str) -> dict:
    return json.loads(cli(*args, "--json")[0])


def assert_quoted(*figures: str) -> None:
    text = readme_text()
    missing = [f for f in figures if f not in text]
    assert not missing, f"README.md does not say what the command prints: {missing}"


def test_tour_solve_figures(tmp_path):
    full = cli_json(*SOLVE_7B, "--out", str(tmp_path / "plan.json"))
    meg = cli_json(*SOLVE_7B, "--space", "megatron")
    big = cli_json("solve", "--model", "megatron-1.7b", "--hw", "dgx-a100")
    m = full["mapping"]
    assert (full["status"], meg["status"], big["status"]) == ("optimal",) * 3
    assert (m["pp"], m["dp"], m["tp_shape"]) == (1, 8, [1, 1])  # "pure data parallelism over the 8 GPUs"
    assert math.isclose(meg["step_time_s"], full["step_time_s"], rel_tol=1e-6)  # "finds the same plan"
    assert_quoted(
        f"ZeRO stage {m['zero_stage']}, micro-batch {m['micro_batch']} and no recompute: "
        f"{full['step_time_s']:.2f} s per step, {full['tokens_per_s']:,.0f} tokens/s, {full['mfu']:.1%} MFU, "
        f"{full['peak_memory_bytes'] / 1e9:.1f} of {full['memory_capacity_bytes'] / 1e9:.0f} GB",
        "finds the same plan", "which is the full space's optimum too",
        f"batch 512: {big['points_total']:,} outer points) is proven optimal in seconds at {big['step_time_s']:.2f} s per step")
    args, _notes = cli("export", str(tmp_path / "plan.json"), "--format", "megatron")
    args = " ".join(args.split())
    sharding = {1: "--use-distributed-optimizer", 2: "--data-parallel-sharding-strategy optim_grads"}
    quoted = [f"--micro-batch-size {m['micro_batch']}", "--global-batch-size 64", "--seq-length 4096",
              "--vocab-size 31999", sharding.get(m["zero_stage"], "--bf16")]
    assert all(q in args for q in quoted), (quoted, args)
    assert_quoted(f"tp 1, dp 8, ZeRO stage {m['zero_stage']}", *quoted)
    out, _ = cli("solve", "--model", "llama2-70b", "--hw", "dgx-a100", "--nodes", "1", "--batch", "64")
    quoted = README.read_text().split("prints\n`")[1].split(" …")[0].replace("\n", " ")
    assert quoted.startswith("infeasible: [memory]") and quoted in " ".join(out.split())


def test_tour_check_figures():
    chk = cli_json(*CHECK_7B)
    assert chk["status"] == "optimal" and chk["same_degrees_status"] == "optimal"
    assert_quoted(f"It takes {chk['step_time_s']:.2f} s per step",
                  f"the solver proves the {chk['optimum_s']:.2f} s optimum of the tour",
                  f"the launch is {chk['gap']:.0%} above the optimum: {chk['speedup_possible']:.2f}× slower",
                  f"partitions take {chk['same_degrees_s']:.2f} s.")


def test_tour_explore_figures():
    res = cli_json(*EXPLORE)
    pts = {p["design"]: p for p in res["points"]}
    solved = [p for p in res["points"] if p["status"] == "optimal"]
    assert (len(solved), res["over_budget"]) == (6, 2)
    front = [p["design"] for p in solved if p["pareto"]]
    pairs = {d.split()[0]: (pts[d], pts[d.replace("128MB", "256MB")]) for d in pts if d.endswith("128MB")}
    area = {f"{big['area_mm2'] / small['area_mm2'] - 1:.0%}" for small, big in pairs.values()}
    saved = {grid: 1 - big["energy_j"] / small["energy_j"] for grid, (small, big) in pairs.items()}
    assert len(area) == 1 and saved["2x8"] == saved["4x4"] == 0.0
    assert_quoted(f"here {', '.join(front)}:", f"256 MB dies cost {area.pop()} more area than 128 MB ones; they "
                  f"save {saved['2x4']:.0%} energy per step on the 2×4 grid and nothing on the larger ones")


def test_compare_heuristic_figures():
    rows = {r["name"]: r for r in cli_json(*COMPARE_13B)["rows"] if r["kind"] == "heuristic"}
    assert [n for n, r in rows.items() if r["fits"]] == ["hecaton"]  # "only Hecaton's heuristic fits"
    assert all(set(rows[n]["offload"]) == {"weights", "grads", "optimizer", "activations"}
               for n in ("megatron", "deepspeed", "accpar"))  # "even with every class of tensor in DRAM"
    hec = rows["hecaton"]
    assert hec["offload"] == ["weights", "grads", "optimizer"]
    assert_quoted(f"fits the 256 MB dies ({hec['step_time_s']:.2f} s per step, "
                  f"{hec['peak_memory_bytes'] / 1e9:.2f} GB on its most loaded die")


@pytest.mark.slow
def test_compare_solve_figures():
    """`meshmap compare --solve --threads 1` (about a minute): the proven figures the README quotes."""
    rows = {(r["name"], r["kind"]): r for r in cli_json(*COMPARE_13B, "--solve", "--threads", "1")["rows"]}
    for peer in ("accpar", "deepspeed"):
        assert rows[(peer, "degrees")]["status"] == rows[(peer, "space")]["status"] == "infeasible", peer
    proven = {k: rows[k] for k in [("megatron", "degrees"), ("hecaton", "degrees"), ("megatron", "space"),
                                   ("hecaton", "space")]}
    assert all(r["status"] == "optimal" for r in proven.values())
    full = rows[("full", "space")]
    # stopped by the 30 s limit on a 2-core machine (a faster one may prove it); its bound is honest
    assert full["status"] in ("timeout", "optimal") and full["bound_s"] <= proven[("hecaton", "space")]["step_time_s"]
    s = {k: f"{r['step_time_s']:.2f}" for k, r in proven.items()}
    assert_quoted(f"({s['megatron', 'degrees']} s and {s['hecaton', 'degrees']} s per step, proven optimal at those "
                  f"degrees), their whole spaces are proven optimal at {s['megatron', 'space']} s (Megatron-LM) and "
                  f"{s['hecaton', 'space']} s (Hecaton)")
    # "a mapping at least as fast as Hecaton's space optimum": the full space contains Hecaton's
    assert full["step_time_s"] <= proven[("hecaton", "space")]["step_time_s"] * (1 + 1e-6)
