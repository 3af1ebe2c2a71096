"""The figures README.md and docs/*.md quote from committed runs, generated from benchmarks/results/*.json.

A figure is written between two HTML comments (invisible once rendered):

    <!-- fig explore:speed.ratio .2f -->0.65<!-- /fig -->

`explore` names benchmarks/results/explore.json, `speed.ratio` the value inside it (a key may hold
spaces), `.2f` the Python format spec it is printed with (no spaces). A path is keys joined by dots,
with `[i]` for the i-th item of a list, `[key=value,...]` for the first item whose fields equal those
values, `[*key=value,...]` for all of them (`[*]`: every item; the next key then applies to each),
and a final `#len`, `#min`, `#max` or `#absmax` (the largest magnitude) over a list; `path/path`
is the ratio of two values (`path/1e9`: over a number). A spec with `+` prints a negative sign as `−` (U+2212); a spec ending in
`%` scales a fraction to percent.

    python benchmarks/readme_figures.py           # rewrite every marked figure from its JSON
    python benchmarks/readme_figures.py --check   # exit 1 naming each figure that differs

Figures that no JSON holds and a command prints are asserted against the command in
tests/test_readme_tour.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = ("README.md", "docs/architecture.md", "docs/cost-model.md", "docs/reproduction.md")
MARKER = re.compile(r"<!-- fig (?P<source>[\w-]+):(?P<path>.+?) (?P<spec>\S+) -->(?P<text>.*?)<!-- /fig -->",
                    flags=re.S)
TOKEN = re.compile(r"\[(?P<select>[^\]]*)\]|#(?P<reduce>len|min|max|absmax)$|\.?(?P<key>[^.\[#]+)")


class FigureError(ValueError):
    """A marker whose source, path or spec cannot be read."""


def _select(items: list, select: str) -> Any:
    if select.lstrip("-").isdigit():
        return items[int(select)]
    every = select.startswith("*")
    conds = [c.split("=", 1) for c in select.lstrip("*").split(",") if c]
    hits = [x for x in items if isinstance(x, dict) and all(str(x.get(k)) == v for k, v in conds)]
    if every:
        return hits
    if not hits:
        raise FigureError(f"no item with {select}")
    return hits[0]


def lookup(doc: Any, path: str) -> Any:
    """The value at `path` in a JSON document (syntax in the module docstring); `a/b` divides two."""
    if "/" in path:
        num, den = path.split("/", 1)
        return lookup(doc, num) / (float(den) if re.fullmatch(r"[\d.e+-]+", den) else lookup(doc, den))
    value, many = doc, False
    pos = 0
    while pos < len(path):
        m = TOKEN.match(path, pos)
        if not m or m.end() == pos:
            raise FigureError(f"cannot read path {path!r} at {path[pos:]!r}")
        pos = m.end()
        if m["reduce"]:
            fn = {"len": len, "min": min, "max": max, "absmax": lambda xs: max(abs(x) for x in xs)}[m["reduce"]]
            value, many = fn(value), False
        elif m["select"] is not None:
            value = _select(value, m["select"])
            many = many or m["select"].startswith("*")
        elif many:
            value = [v[m["key"]] for v in value]
        else:
            if not isinstance(value, dict) or m["key"] not in value:
                raise FigureError(f"no key {m['key']!r} in path {path!r}")
            value = value[m["key"]]
    return value


def render(value: Any, spec: str) -> str:
    """`value` formatted by `spec`."""
    text = format(value, spec)
    return text.replace("-", "\u2212", 1) if "+" in spec and text.startswith("-") else text


def figures(text: str, results: Path = RESULTS) -> list[tuple[re.Match, str]]:
    """Every marker of `text` with the figure its JSON gives."""
    cache: dict[str, Any] = {}
    out = []
    for m in MARKER.finditer(text):
        src = m["source"]
        if src not in cache:
            path = results / f"{src}.json"
            if not path.exists():
                raise FigureError(f"fig {src}:{m['path']}: no {path.name} in benchmarks/results")
            cache[src] = json.loads(path.read_text())
        try:
            out.append((m, render(lookup(cache[src], m["path"]), m["spec"])))
        except (FigureError, KeyError, IndexError, TypeError, ValueError) as err:
            raise FigureError(f"fig {src}:{m['path']} {m['spec']}: {err}") from None
    return out


def mismatches(text: str, results: Path = RESULTS) -> list[str]:
    """One line per marked figure whose text differs from its JSON: 'line N: source:path is X, JSON gives Y'."""
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m['source']}:{m['path']} is {m['text']!r}, "
            f"the JSON gives {want!r}" for m, want in figures(text, results) if m["text"] != want]


def rewrite(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked figure replaced by its JSON's."""
    out, last = [], 0
    for m, want in figures(text, results):
        out += [text[last:m.start("text")], want]
        last = m.end("text")
    return "".join(out) + text[last:]


def main(argv: list[str] | None = None, root: Path = ROOT, results: Path = RESULTS) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 naming each figure that differs from its JSON")
    args = ap.parse_args(argv)
    bad = 0
    for name in DOCUMENTS:
        path = root / name
        if not path.exists():
            continue
        text = path.read_text()
        try:
            if args.check:
                for line in mismatches(text, results):
                    print(f"{name} {line}")
                    bad += 1
            else:
                new = rewrite(text, results)
                if new != text:
                    path.write_text(new)
                    print(f"rewrote {name}")
        except FigureError as err:
            print(f"{name}: {err}")
            bad += 1
    if args.check:
        print(f"{bad} figure(s) differ from benchmarks/results" if bad else "every marked figure matches its JSON")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
