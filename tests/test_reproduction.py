"""The TMAC and Hecaton reproductions (benchmarks/reproduce_tmac.py, reproduce_hecaton.py) on reduced
instances, through the functions the benchmarks use, asserting what must hold whatever the calibration:
the full space never loses to a space it contains, no fitting heuristic beats the proven bound,
with_least_offload finds the smallest fitting set of DRAM classes, and the claim names are fixed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import hw
import models
import optimizer
from optimizer import baselines, evaluate
from optimizer.model.cost import OFFLOAD_CLASSES

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import peer_fit  # noqa: E402
import reproduce_hecaton  # noqa: E402
import reproduce_tmac  # noqa: E402

REL = 1e-6  # CP-SAT optimizes on an integer time scale: its optimum matches evaluate() to this
TMAC_CLAIMS = ("speedup_vs_accpar", "speedup_vs_deepspeed", "speedup_vs_megatron", "memory_reduction_vs_accpar",
               "memory_reduction_vs_deepspeed", "memory_vs_megatron_full_recompute")
HECATON_CLAIMS = ("llama2_70b_speedup_vs_megatron_tp", "llama2_70b_energy_reduction_vs_megatron_tp",
                  "llama3_405b_speedup_vs_megatron_tp", "llama3_405b_energy_reduction_vs_megatron_tp",
                  "dram_traffic_reduction_vs_megatron_tp")


def small():
    """Two tmac-wafer dies with room for the model: every space is proven optimal in seconds."""
    return (models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512),
            hw.load("tmac-wafer", rows=1, cols=2, sram_bytes=40e9))


def tight(sram: float | None = None):
    """2x2 tmac-wafer dies with little SRAM: the peers need the DRAM tier."""
    kw = {} if sram is None else {"sram_bytes": sram}
    return (models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512),
            hw.load("tmac-wafer", rows=2, cols=2, **kw))


@pytest.fixture(scope="module")
def small_rows():
    w, h = small()
    return reproduce_tmac.run_case(w, h, time_limit_s=30, threads=1)


def test_full_space_never_loses_to_a_restricted_space(small_rows):
    full = next(r for r in small_rows if r["kind"] == "full")
    spaces = [r for r in small_rows if r["kind"] == "space"]
    assert full["status"] == "optimal" and {r["method"] for r in spaces} == set(reproduce_tmac.PEERS)
    for r in spaces:
        assert r["status"] == "optimal", r["method"]
        assert full["step_time_s"] <= r["step_time_s"] * (1 + REL), r["method"]
        assert r["full_le_space"] is True
        assert full["bound_s"] <= r["step_time_s"] * (1 + REL)  # the bound holds for every subset of the space
        assert r["speedup_of_full"] >= 1 - REL


def test_a_heuristic_at_its_own_degrees_lies_between_the_space_optima(small_rows):
    """The solve at a heuristic's degrees searches a subset of the peer's space, itself a subset of the
    full space: full optimum <= peer's space optimum <= the same-degrees optimum."""
    full = next(r for r in small_rows if r["kind"] == "full")
    for peer in reproduce_tmac.PEERS:
        space = next(r for r in small_rows if (r["kind"], r["method"]) == ("space", peer))
        sd = next(r for r in small_rows if (r["kind"], r["method"]) == ("heuristic", peer))["same_degrees"]
        assert sd["status"] == "optimal", peer
        assert full["step_time_s"] <= space["step_time_s"] * (1 + REL) <= sd["step_time_s"] * (1 + REL) ** 2, peer
        assert sd["speedup_of_full"] == pytest.approx(sd["step_time_s"] / full["step_time_s"])


def test_check_on_each_heuristic_is_never_below_the_bound(small_rows):
    w, h = small()
    for peer in reproduce_tmac.PEERS:
        row = next(r for r in small_rows if r["kind"] == "heuristic" and r["method"] == peer)
        m = baselines.heuristic(peer, w, h, offload=True)
        assert m.name == row["mapping"]["name"]  # the benchmark's mapping
        chk = optimizer.check(m, w, h, time_limit_s=30, threads=1)
        assert chk.status == "optimal" and chk.fits
        assert chk.gap >= -REL, peer
        # the benchmark's gap is check()'s, against the bound of the same (deterministic) solve
        assert row["gap_vs_full_bound"] == pytest.approx(chk.gap, abs=REL)
        assert row["step_time_s"] == chk.step_time_s


def test_check_on_hecaton_under_a_short_limit():
    # the proven bound is honest under a time limit, so no fitting mapping can be below it
    w, h = tight(sram=40e9)
    m = baselines.heuristic("hecaton", w, h)
    for space in ("hecaton", "full"):
        chk = optimizer.check(m, w, h, space=space, time_limit_s=3, threads=1)
        assert chk.fits and chk.bound_s is not None
        assert chk.gap >= -REL, space


@pytest.mark.parametrize("sram", [3e8, 1e9, 4e9])
def test_with_least_offload_is_the_smallest_fitting_set(sram):
    w, h = tight(sram)
    sets = baselines.offload_sets(h)
    assert sets[0] == () and sets[-1] == OFFLOAD_CLASSES and len(sets) == 16
    assert [len(s) for s in sets] == sorted(len(s) for s in sets)
    for m0 in (baselines.deepspeed(w, h), baselines.megatron_heuristic(w, h), baselines.accpar(w, h)):
        fitting = [s for s in sets if evaluate(m0.model_copy(update={"offload": s}), w, h).fits]
        m = baselines.with_least_offload(m0, w, h)
        assert m.model_copy(update={"offload": (), "name": ""}) == m0.model_copy(update={"offload": (), "name": ""})
        if fitting:  # a fitting set exists: the mapping fits with one of the fewest classes
            assert evaluate(m, w, h).fits, m0.name
            assert m.offload in fitting and len(m.offload) == min(len(s) for s in fitting)
        else:  # none does: every class in DRAM, reported as not fitting
            assert m.offload == OFFLOAD_CLASSES and not evaluate(m, w, h).fits


def test_heuristics_use_the_dram_tier_when_they_must():
    w, h = tight()  # 256 MB per die: nothing fits without DRAM
    for peer in ("megatron", "deepspeed", "accpar"):
        plain = baselines.heuristic(peer, w, h)
        assert plain.offload == () and not evaluate(plain, w, h).fits
        m = baselines.heuristic(peer, w, h, offload=True)
        rescued = evaluate(baselines.with_least_offload(plain, w, h), w, h).fits
        assert evaluate(m, w, h).fits or not rescued, peer  # if DRAM rescues its own choice, it fits
        assert m.offload  # it uses DRAM (fitting or the most frugal)
    m = baselines.heuristic("deepspeed", w, h, offload=("optimizer",))
    assert m.offload == ("optimizer",)
    with pytest.raises(ValueError, match="offload"):
        baselines.heuristic("deepspeed", w, h, offload=("bogus",))
    with pytest.raises(ValueError, match="offload"):
        baselines.megatron(w, hw.load("dgx-a100", nodes=1), tp=8, offload=("weights",))  # no DRAM ports


def test_claim_names_are_fixed(small_rows):
    assert reproduce_tmac.CLAIMS == TMAC_CLAIMS
    assert reproduce_hecaton.CLAIMS == HECATON_CLAIMS
    rows = [dict(r, hardware=reproduce_tmac.CLAIM_HARDWARE) for r in small_rows]
    claims, info = reproduce_tmac.make_claims(rows)
    assert tuple(c["name"] for c in claims) == TMAC_CLAIMS
    assert all(set(c) == {"name", "paper", "ours", "unit"} for c in claims)
    assert {i["basis"] for i in info.values()} <= {"solver-in-space", "heuristic"}
    assert info["speedup_vs_deepspeed"]["basis"] == "solver-in-space"  # every space found a mapping here
    assert info["memory_vs_megatron_full_recompute"]["basis"] == "heuristic"
    for name in ("tmac", "hecaton"):  # the committed results, if present
        path = BENCH / "results" / f"{name}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            want = TMAC_CLAIMS if name == "tmac" else HECATON_CLAIMS
            assert tuple(c["name"] for c in doc["claims"]) == want
            assert {"backend", "time_limit_s", "threads"} <= set(doc["solver"]) and doc["solver"]["threads"] == 1


def test_hecaton_rows_and_claims():
    """2x2 Hecaton chiplets with 40 GB of SRAM: both heuristics fit and the full space is solved (optimal
    in a few seconds; a bound and a fitting mapping even if the 10 s limit cuts it), so every bound, gap
    and ratio assert below runs."""
    w, h = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=512), \
        hw.load("hecaton-chiplet", rows=2, cols=2, sram_bytes=40e9)
    rows = reproduce_hecaton.run_model(w, h, time_limit_s=10, threads=1)
    assert [(r["kind"], r["method"]) for r in rows] == [
        ("full", "full"), ("space", "hecaton"), ("heuristic", "hecaton"), ("space", "megatron"),
        ("heuristic", "megatron"), ("heuristic", "megatron-1d")]
    full = rows[0]
    assert full["fits"] and full["status"] in ("optimal", "timeout") and full["bound_s"] > 0
    assert full["bound_s"] <= full["step_time_s"] * (1 + REL)
    heuristics = [r for r in rows if r["kind"] == "heuristic"]
    spaces = [r for r in rows if r["kind"] == "space"]
    assert all(r["fits"] for r in heuristics) and spaces[1]["step_time_s"]  # Megatron-LM's space: optimal
    for r in heuristics:  # check()'s gap against the full space's proven bound: never below it
        assert r["gap_vs_full_bound"] == pytest.approx(r["step_time_s"] / full["bound_s"] - 1, rel=1e-9)
        assert r["gap_vs_full_bound"] >= -REL, r["method"]
    for r in (r for r in spaces if r["step_time_s"]):  # the full space's bound holds for every subset of it
        assert full["bound_s"] <= r["step_time_s"] * (1 + REL), r["method"]
    rows = [dict(r, model="llama2-70b") for r in rows]
    claims, info = reproduce_hecaton.make_claims(rows)
    assert tuple(c["name"] for c in claims) == HECATON_CLAIMS
    c = info["comparisons"]["llama2-70b"]
    assert c["hecaton_fits"] and c["megatron_fits"]
    # the claims: Hecaton's heuristic against the paper's baseline, 1D tensor parallelism over the package
    hec = next(r for r in rows if (r["kind"], r["method"]) == ("heuristic", "hecaton"))
    meg = next(r for r in rows if (r["kind"], r["method"]) == ("heuristic", "megatron-1d"))
    assert meg["mapping"]["tp_shape"] == [2, 2] and meg["mapping"]["pp"] == meg["mapping"]["dp"] == 1
    assert c["speedup"] == pytest.approx(meg["step_time_s"] / hec["step_time_s"])
    assert c["energy_reduction"] == pytest.approx(meg["energy_j"] / hec["energy_j"])
    assert claims[0]["ours"] == pytest.approx(c["speedup"]) and claims[1]["ours"] == pytest.approx(c["energy_reduction"])


def test_full_le_space_needs_a_proof():
    full = {"status": "timeout", "step_time_s": 84.95, "bound_s": 82.03}
    assert reproduce_tmac.full_le_space(full, {"status": "infeasible", "step_time_s": None, "bound_s": None})
    # the full space's mapping is faster than the restricted space's proven optimum: its optimum is too
    assert reproduce_tmac.full_le_space(full, {"status": "optimal", "step_time_s": 358.2, "bound_s": 358.2})
    # neither way proven: the restricted optimum lies between the full space's bound and its mapping
    assert reproduce_tmac.full_le_space(full, {"status": "optimal", "step_time_s": 83.0, "bound_s": 83.0}) is None
    assert reproduce_tmac.full_le_space({"status": "infeasible", "step_time_s": None, "bound_s": None},
                                        {"status": "infeasible", "step_time_s": None, "bound_s": None}) is None
    proven = {"status": "optimal", "step_time_s": 84.0, "bound_s": 84.0}
    assert reproduce_tmac.full_le_space(proven, {"status": "optimal", "step_time_s": 84.0, "bound_s": 84.0}) is True
    assert reproduce_tmac.full_le_space(proven, {"status": "optimal", "step_time_s": 83.0, "bound_s": 83.0}) is False


def _space_row(model: str, peer: str, status: str, speedup: float | None) -> dict:
    return {"hardware": "tmac-wafer", "model": model, "kind": "space", "method": peer, "status": status,
            "step_time_s": None if speedup is None else 10.0 * speedup, "speedup_of_full": speedup}


def test_a_space_with_no_fitting_mapping_is_further_behind_than_any_that_fits():
    rows = [_space_row("a", "accpar", "infeasible", None), _space_row("b", "accpar", "optimal", 1.1),
            _space_row("a", "deepspeed", "infeasible", None), _space_row("b", "deepspeed", "infeasible", None),
            _space_row("a", "megatron", "optimal", 4.0), _space_row("b", "megatron", "optimal", 9.0)]
    st = reproduce_tmac.standing(rows)
    assert st["accpar"]["models_without_a_fitting_mapping"] == ["a"]
    assert st["accpar"]["geomean_where_it_fits"] == pytest.approx(1.1)
    assert st["megatron"]["geomean_where_it_fits"] == pytest.approx(6.0)  # sqrt(4 * 9)
    assert reproduce_tmac.accpar_and_deepspeed_behind(st) is True
    # with the same count of models that fit, the larger speedup is further behind
    rows[0] = _space_row("a", "accpar", "optimal", 1.2)
    assert reproduce_tmac.accpar_and_deepspeed_behind(reproduce_tmac.standing(rows)) is False
    # a space stopped by the clock without a mapping leaves the order unknown
    rows[4] = _space_row("a", "megatron", "timeout", None)
    assert reproduce_tmac.accpar_and_deepspeed_behind(reproduce_tmac.standing(rows)) is None


def test_the_sensitivity_grid_at_the_preset_bandwidths_scores_the_heuristics_as_the_rows_do():
    """At the preset's own link and DRAM-port bandwidths (4 TB/s each), the grid's ratios are those of
    heuristic_row on the unmodified preset."""
    sens = reproduce_tmac.ordering_sensitivity(["llama2-13b"], [4e12], [4e12])
    (point,) = sens["points"]
    w = models.Workload(model=models.load("llama2-13b"), global_batch=reproduce_tmac.GLOBAL_BATCH)
    h = hw.load(reproduce_tmac.CLAIM_HARDWARE)
    hrows = {p: reproduce_tmac.heuristic_row(p, w, h, None, with_same_degrees=False)[0] for p in reproduce_tmac.PEERS}
    step = {p: r["step_time_s"] for p, r in hrows.items()}
    fits = {p: r["fits"] for p, r in hrows.items()}
    assert sens["points_total"] == 1
    if not all(fits.values()):  # a heuristic that does not fit is never scored
        assert point["accpar_over_megatron"] is None and point["paper_order"] is None
        return
    assert point["accpar_over_megatron"] == pytest.approx(step["accpar"] / step["megatron"], rel=1e-12)
    assert point["deepspeed_over_megatron"] == pytest.approx(step["deepspeed"] / step["megatron"], rel=1e-12)
    assert point["paper_order"] == (min(point["accpar_over_megatron"], point["deepspeed_over_megatron"]) > 1)


def test_reproduce_all_fails_when_a_benchmark_misses(tmp_path, monkeypatch, capsys):
    """A reproduction run can fail: reproduce_all exits 1 and names the benchmark whose main() missed
    (with --compare only when a claim moved) or that crashed."""
    import reproduce_all

    def bench(name: str, code: int | None):
        def run():
            doc = {"benchmark": name, "claims": [{"name": "x", "paper": 1, "ours": 1, "unit": "ratio"}]}
            (tmp_path / f"{name}.json").write_text(json.dumps(doc))
            return code
        return run

    monkeypatch.setattr(reproduce_all, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(reproduce_all, "BENCHMARKS", (("met", bench("met", 0)), ("quiet", bench("quiet", None)),
                                                      ("missed", bench("missed", 1))))
    assert reproduce_all.main(["--only", "met,quiet", "--quiet"]) == 0
    assert reproduce_all.main(["--quiet"]) == 1
    assert "missed their targets (main() returned non-zero): missed" in capsys.readouterr().out
    # with --compare a known miss whose claims did not move passes; a crash fails either way
    assert reproduce_all.main(["--quiet", "--compare"]) == 0

    def crash():
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(reproduce_all, "BENCHMARKS", (("met", bench("met", 0)), ("crash", crash)))
    assert reproduce_all.main(["--quiet", "--compare"]) == 1
    assert "crashed: crash" in capsys.readouterr().out


def _fake_result(path: Path, name: str, speedup: float, paper: float = 3.1) -> None:
    doc = {"benchmark": name, "claims": [{"name": "speedup", "paper": paper, "ours": speedup, "unit": "ratio"},
                                         {"name": "ours_only", "paper": None, "ours": 2.0, "unit": "ratio"}],
           "rows": [{"step_time_s": 1.0, "wall_s": 9.0}]}
    path.mkdir(exist_ok=True)
    (path / f"{name}.json").write_text(json.dumps(doc))


def test_reproduce_all_compare_fails_when_a_claim_moves(tmp_path, monkeypatch, capsys):
    """--compare: a claim that moves by more than its band versus the committed JSON fails the run;
    one inside its band does not, and a claim that misses its target is listed as not met."""
    import reproduce_all
    from claim_bands import DEFAULT_BAND

    committed, fresh = tmp_path / "committed", tmp_path / "fresh"
    _fake_result(committed, "fake", 1.03)
    monkeypatch.setattr(reproduce_all, "RESULTS_DIR", committed)
    monkeypatch.setattr(reproduce_all, "BENCHMARKS", (("fake", lambda: 0),))
    _fake_result(fresh, "fake", 1.03)
    assert reproduce_all.main(["--compare", "--fresh", str(fresh)]) == 0  # as committed
    out = capsys.readouterr().out
    assert "fake: speedup" in out and "ours       1.03  target 3.1 ±15%" in out  # not met, listed
    assert "every claim within its band" in out and "ours_only" not in out.split("not met")[1]
    _fake_result(fresh, "fake", 1.03 * (1 + DEFAULT_BAND / 2))  # inside the band
    assert reproduce_all.main(["--compare", "--fresh", str(fresh)]) == 0
    _fake_result(fresh, "fake", 1.03 * (1 + 2 * DEFAULT_BAND))  # outside: moved
    assert reproduce_all.main(["--compare", "--fresh", str(fresh)]) == 1
    assert "fake: speedup 1.0506 vs committed 1.03 (band ±1.0%)" in capsys.readouterr().out
    (fresh / "fake.json").write_text(json.dumps({"benchmark": "fake", "claims": []}))
    assert reproduce_all.main(["--compare", "--fresh", str(fresh)]) == 1
    assert "fake: speedup disappeared (committed 1.03)" in capsys.readouterr().out


def test_reproduce_all_compare_after_a_rerun(tmp_path, monkeypatch, capsys):
    """--compare without --fresh keeps the committed JSON before the benchmarks rewrite them."""
    import reproduce_all

    _fake_result(tmp_path, "fake", 1.03)
    monkeypatch.setattr(reproduce_all, "RESULTS_DIR", tmp_path)
    same = (("fake", lambda: _fake_result(tmp_path, "fake", 1.03)),)
    monkeypatch.setattr(reproduce_all, "BENCHMARKS", same)
    assert reproduce_all.main(["--compare", "--quiet"]) == 0
    moved = (("fake", lambda: _fake_result(tmp_path, "fake", 1.2)),)
    monkeypatch.setattr(reproduce_all, "BENCHMARKS", moved)
    assert reproduce_all.main(["--compare", "--quiet"]) == 1
    assert "fake: speedup 1.2 vs committed 1.03" in capsys.readouterr().out
    assert reproduce_all.main(["--compare", "--quiet"]) == 0  # the rerun's figures are now the committed ones


def test_the_committed_claims_have_targets_and_bands():
    """Every committed claim with a paper figure has a target, and the limits of validate.py are limits."""
    from claim_bands import MODULES, bands, target

    for name in MODULES:
        doc = json.loads((BENCH / "results" / f"{name}.json").read_text())
        assert all(0 < b < 1 for b in bands(name).values())
        for c in doc["claims"]:
            text, lo, hi = target(name, c, doc)
            assert (lo, hi) == (None, None) if c["paper"] is None else (lo is not None or hi is not None), c
    doc = json.loads((BENCH / "results" / "validation.json").read_text())
    tau = next(c for c in doc["claims"] if c["name"] == "ranking_tau_min")
    assert target("validation", tau, doc)[1:] == (tau["paper"], None)


def test_a_mapping_that_does_not_fit_is_never_scored():
    full = {"step_time_s": 10.0, "bound_s": 10.0, "fits": True, "training_memory_gb": 2.0, "peak_memory_gb": 0.2,
            "footprint_gb": 3.0}
    peer = dict(full, step_time_s=30.0, training_memory_gb=6.0, peak_memory_gb=0.4, footprint_gb=9.0)
    r = reproduce_tmac.ratios(full, peer)
    assert r["speedup_of_full"] == 3.0 and r["memory_ratio"] == 3.0  # the claims' basis: state + activations
    assert r["on_die_ratio"] == 2.0 and r["footprint_ratio"] == 3.0  # the other bases, still reported
    assert set(reproduce_tmac.ratios(full, dict(peer, fits=False)).values()) == {None}
    assert set(reproduce_tmac.ratios(dict(full, fits=False), peer).values()) == {None}
    assert reproduce_hecaton.trio(full, dict(peer, energy_j=1.0, dram_bytes=1.0, fits=False))["speedup"] is None


def test_training_memory_is_the_peak_with_every_class_on_the_die():
    w, h = tight()
    m = baselines.heuristic("deepspeed", w, h, offload=True)
    assert m.offload  # the basis ignores where the DRAM tier keeps a class
    assert peer_fit.training_memory_bytes(m, w, h) == evaluate(m.model_copy(update={"offload": ()}), w, h).peak_memory_bytes
    assert peer_fit.training_memory_bytes(m, w, h) > evaluate(m, w, h).peak_memory_bytes


def test_megatron_1d_spans_the_package_and_keeps_the_per_die_share():
    w, h = models.Workload(model=models.load("llama2-70b"), global_batch=1024), hw.load("hecaton-chiplet")
    m = baselines.megatron_1d(w, h)
    assert tuple(m.tp_shape) == (8, 8) and m.pp == m.dp == 1 and m.schedule == "1f1b" and m.layer_group == 1
    assert tuple(m.ops["fc1"].split) == ("f", "f") and tuple(m.ops["q_proj"].split) == ("a", "a")
    # 8 key/value heads cannot split 64 ways: the attention core keeps 1/64 per die, heads x query sequence
    assert tuple(m.ops["qk"].split) == ("a", "s")
    with pytest.raises(ValueError, match="defects"):
        baselines.megatron_1d(w, hw.load("hecaton-chiplet", defects=[(0, 0)]))


def test_sram_to_fit_returns_a_machine_on_which_the_rule_fits():
    w, _ = tight()
    pick = lambda h: baselines.heuristic("megatron", w, h)  # noqa: E731 -- nothing in DRAM
    got = peer_fit.sram_to_fit(pick, w, "tmac-wafer", 1e6)
    assert got is not None and got["factor"] >= 1
    mach = peer_fit.machine_with("tmac-wafer", sram=got["sram_bytes"], dram_capacity=got["dram_capacity_factor"])
    assert evaluate(pick(mach), w, mach).fits and got["mapping"] == pick(mach).name
    assert not evaluate(pick(hw.load("tmac-wafer")), w, hw.load("tmac-wafer")).fits or got["factor"] == 1


def test_accpar_spilled_keeps_the_fastest_point_that_fits():
    """AccPar's search ignores memory; with offload=True each of its points gets its tensors spilled to DRAM
    and the fastest that then fits wins, so it is never slower than its memory-blind choice spilled."""
    w, h = tight(sram=2e9)
    m = baselines.accpar(w, h, offload=True)
    spilled = baselines.with_least_offload(baselines.accpar(w, h), w, h)
    rm, rs = evaluate(m, w, h), evaluate(spilled, w, h)
    assert rm.fits or not rs.fits
    if rs.fits:
        assert rm.step_time_s <= rs.step_time_s * (1 + 1e-12)
