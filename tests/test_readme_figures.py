"""benchmarks/readme_figures.py: every figure README.md and docs/*.md quote from a committed run is the
one its benchmarks/results/*.json holds, and the check fails when one is edited by hand."""

from __future__ import annotations

import re

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures  # noqa: E402


def copy_docs(tmp_path: Path) -> Path:
    for name in readme_figures.DOCUMENTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_committed_figures_match_their_json(capsys):
    text = (ROOT / "README.md").read_text()
    assert len(readme_figures.figures(text)) >= 40  # the explore, Table 1, validation and solver figures
    assert readme_figures.main(["--check"]) == 0, capsys.readouterr().out


def test_a_figure_edited_by_hand_fails_the_check(tmp_path, capsys):
    root = copy_docs(tmp_path)
    readme = root / "README.md"
    found = re.search(r"<!-- fig explore:speed\.ratio \.2f -->([^<]*)<!-- /fig -->", readme.read_text())
    assert found, "README.md marks the explore pool ratio"
    marked, value = found.group(0), found.group(1)
    edited = f"{float(value) + 0.08:.2f}"
    readme.write_text(readme.read_text().replace(marked, marked.replace(f"-->{value}<", f"-->{edited}<")))
    assert readme_figures.main(["--check"], root=root) == 1
    out = capsys.readouterr().out
    assert "README.md line" in out and f"explore:speed.ratio is '{edited}', the JSON gives '{value}'" in out
    # without --check the script writes the JSON's figure back
    assert readme_figures.main([], root=root) == 0
    assert marked in readme.read_text() and readme_figures.main(["--check"], root=root) == 0


def test_a_result_that_moves_fails_the_check(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "x.json").write_text('{"rows": [{"model": "a-1.7b", "v": 0.0123}, {"model": "b", "v": -0.5}]}')
    text = ("<!-- fig x:rows[model=a-1.7b].v .1% -->1.2%<!-- /fig --> and "
            "<!-- fig x:rows[*].v#absmax .2f -->0.50<!-- /fig -->, <!-- fig x:rows[1].v +.0% -->\u221250%<!-- /fig -->")
    assert readme_figures.mismatches(text, results) == []
    (results / "x.json").write_text('{"rows": [{"model": "a-1.7b", "v": 0.02}, {"model": "b", "v": -0.5}]}')
    assert readme_figures.mismatches(text, results) == [
        "line 1: x:rows[model=a-1.7b].v is '1.2%', the JSON gives '2.0%'"]


def test_a_marker_that_cannot_be_read_names_itself(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(readme_figures.FigureError, match="x:b"):
        readme_figures.figures("<!-- fig x:b d -->1<!-- /fig -->", tmp_path)
    with pytest.raises(readme_figures.FigureError, match="no y.json"):
        readme_figures.figures("<!-- fig y:a d -->1<!-- /fig -->", tmp_path)
