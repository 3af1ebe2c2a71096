"""The README's tour, run verbatim as a new user would, in a fresh directory: its shell blocks'
`meshmap` commands and its Python blocks (each after the tour's imports), in document order."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path


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
