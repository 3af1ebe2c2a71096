"""Ctrl-C keeps the best mapping (search/interrupt.py): SIGINT stops a search, which answers
"interrupted" with its best mapping so far, its proven bound and gap; `meshmap solve` prints it,
saves --out and exits 130; a second Ctrl-C leaves at once. Each test sends the real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import hw
import models
import optimizer
from optimizer.search import interrupt

ROOT = Path(__file__).resolve().parent.parent
# an instance with a mapping within seconds that needs minutes to prove its optimum (2 cores):
# GPT-1.7B on a 4x4 wafer of 40 GB dies (benchmarks/solver_speed.py)
MODEL, HW, BATCH, SEQ = "megatron-1.7b", "tmac-wafer", 64, 1024
GRID = {"rows": 4, "cols": 4, "sram_bytes": 40e9}
GRID_FLAGS = ("--rows", "4", "--cols", "4", "--sram-bytes", "40e9")
MESHMAP = [sys.executable, "-c", "from optimizer.tools.cli import main; main()"]


def run_and_interrupt(args: list[str], after_s: float, whole_group: bool = False) -> tuple[str, str, int, float]:
    """`meshmap *args`, sent SIGINT after_s seconds in (to its process group, as a terminal does, with
    whole_group): (stdout, stderr, exit code, seconds from the signal to the exit)."""
    proc = subprocess.Popen([*MESHMAP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=whole_group)
    time.sleep(after_s)
    assert proc.poll() is None, f"`meshmap {args[0]}` ended before the signal: pick a harder instance"
    sent = time.perf_counter()
    if whole_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return out, err, proc.returncode, time.perf_counter() - sent


@pytest.fixture
def harmless_sigint():
    """A SIGINT that arrives outside the search under test must not stop the pytest run."""
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_asks_the_search_to_stop_and_a_second_leaves_at_once(harmless_sigint):
    with interrupt.stop_on_sigint():
        assert not interrupt.requested()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in this (main) thread
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert not interrupt.requested()  # the next search starts afresh


def test_solve_interrupted_returns_its_best_mapping_and_bound(harmless_sigint):
    work = models.Workload(model=models.load(MODEL), global_batch=BATCH, seq_len=SEQ)
    hardware = hw.load(HW, **GRID)
    sent: list[float] = []

    def ctrl_c():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(5.0, ctrl_c)
    timer.start()
    sol = optimizer.solve(work, hardware, time_limit_s=60, threads=2)
    timer.cancel()
    assert sent, "the solve ended before the signal: pick a harder instance"
    assert time.perf_counter() - sent[0] < 2.0
    assert sol.status == "interrupted", sol.explanation
    assert sol.mapping is not None and sol.report is not None
    assert sol.bound_s <= sol.objective_s * (1 + 1e-9)
    assert sol.gap >= 0
    rep = optimizer.evaluate(sol.mapping, work, hardware)
    assert rep.step_time_s == pytest.approx(sol.objective_s, rel=1e-6)


def test_meshmap_solve_ctrl_c_prints_and_saves_the_plan_and_exits_130(tmp_path):
    plan = tmp_path / "plan.json"
    out, err, code, after = run_and_interrupt(["solve", "--model", MODEL, "--hw", HW, *GRID_FLAGS, "--batch",
                                               str(BATCH), "--seq", str(SEQ), "--time-limit", "60", "--json",
                                               "--out", str(plan)], 5.0)
    assert after < 2.0
    assert code == 130, err
    data = json.loads(out)
    assert data["status"] == "interrupted"
    assert data["mapping"] is not None
    assert data["bound_s"] <= data["objective_s"] * (1 + 1e-9) and data["gap"] >= 0
    saved = json.loads(plan.read_text())
    assert saved["mapping"] == data["mapping"] and saved["status"] == "interrupted"
    work = models.Workload(model=models.load(MODEL), global_batch=BATCH, seq_len=SEQ)
    rep = optimizer.evaluate(optimizer.Mapping.model_validate(saved["mapping"]), work, hw.load(HW, **GRID))
    assert rep.step_time_s == pytest.approx(data["objective_s"], rel=1e-6)
    assert rep.step_time_s == pytest.approx(data["step_time_s"], rel=1e-12)


def test_a_keyboard_interrupt_outside_the_search_exits_130_at_once():
    """The second Ctrl-C raises KeyboardInterrupt wherever the command is: the CLI leaves with 130."""
    code = ("import optimizer.tools.cli.solving as s\n"
            "def boom(*a, **k):\n    raise KeyboardInterrupt\n"
            "s.solve_workload = boom\n"
            "from optimizer.tools.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code, "solve", "--model", MODEL, "--hw", HW],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_meshmap_explore_ctrl_c_keeps_the_designs_solved_so_far():
    """A terminal's Ctrl-C reaches the whole process group: the pool's running designs answer
    "interrupted" with their best mappings, the designs not started are dropped, exit 130."""
    out, err, code, after = run_and_interrupt(["explore", "--model", MODEL, "--hw", HW, "--rows", "4,8", "--cols",
                                               "4,8", "--sram-bytes", "40e9", "--batch", str(BATCH), "--seq",
                                               str(SEQ), "--time-limit", "60", "--workers", "2", "--json"], 7.0,
                                              whole_group=True)
    assert after < 3.0
    assert code == 130, err
    data = json.loads(out)
    assert data["designs"] == 4 and 1 <= len(data["points"]) < 4
    assert all(p["status"] == "interrupted" for p in data["points"])
    assert any(p["mapping"] is not None for p in data["points"])


def test_meshmap_check_ctrl_c_answers_with_what_it_has():
    """check's solves stop on the signal: the given mapping's score stands, the status says interrupted."""
    out, err, code, after = run_and_interrupt(["check", "--model", MODEL, "--hw", HW, *GRID_FLAGS, "--batch",
                                               str(BATCH), "--seq", str(SEQ), "--tp", "4", "--time-limit", "60",
                                               "--json"], 5.0)
    assert after < 2.0
    assert code == 130, err
    data = json.loads(out)
    assert data["status"] == "interrupted"
    assert data["step_time_s"] > 0 and data["bound_s"] is not None and data["bound_s"] > 0
