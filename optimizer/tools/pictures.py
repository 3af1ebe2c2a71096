"""Pictures of a mapping, a step-time breakdown and an exploration's Pareto front (matplotlib).

Each function writes one file, PNG or SVG by the path's suffix, and returns the path. Figures are
built with matplotlib's object API on the Agg canvas (SVG through matplotlib's SVG writer), so
nothing here touches pyplot's global state or needs a display.

    grid_picture(mapping, hw, "grid.png")          the die grid: tensor groups, defects, DRAM ports
    breakdown_picture(report, "breakdown.svg")     where the step time goes
    pareto_picture(points, "front.png")            throughput vs area, energy as colour; the front marked
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hw.loader import ConfigError
from hw.schema import Hardware

from ..model.mapping import Mapping, Report

if TYPE_CHECKING:  # pragma: no cover
    from .explore import DesignPoint

SUFFIXES = (".png", ".svg")
DPI = 120  # PNG resolution; assumption: legible on a laptop screen at the figure sizes below
HATCHES = ("", "//", "\\\\", "xx", "..", "++", "--", "||", "oo", "**")  # replica r uses HATCHES[r % 10]
# Breakdown keys that are sums of others (not drawn as their own segment of the bar)
DERIVED = ("exposed_comm", "tp_comm", "pp_comm", "dp_comm", "zero_comm")  # and each part run alone


def _target(path: str | Path) -> Path:
    """The output path, checked: a .png or .svg file in an existing directory."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        got = f"'{p.suffix}'" if p.suffix else "no suffix"
        raise ConfigError(f"picture path {str(p)!r}: the file name must end in .png or .svg (got {got})")
    if not p.parent.is_dir():
        raise ConfigError(f"picture path {str(p)!r}: directory {str(p.parent)!r} does not exist")
    return p


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=DPI, bbox_inches="tight")
    return path


def _groups(mapping: Mapping, hw: Hardware) -> tuple:
    if mapping.groups:
        return mapping.groups
    from ..model.tables import default_groups

    groups = default_groups(hw, mapping.pp, mapping.dp, mapping.tp_shape)
    if groups is None:
        raise ConfigError(f"tp_shape {tuple(mapping.tp_shape)}: no placement of pp x dp = {mapping.pp * mapping.dp} "
                          f"groups on the {hw.rows}x{hw.cols} grid of {hw.name}; give the mapping's groups")
    return groups


def _port_sides(row: int, col: int, rows: int, cols: int) -> list[str]:
    sides = [s for s, on in (("N", row == 0), ("W", col == 0), ("S", row == rows - 1), ("E", col == cols - 1)) if on]
    return sides or ["in"]


def _draw_dram_ports(ax: Any, hw: Hardware) -> None:
    """Each DRAM port of `hw` as a small square on the die edge it attaches to (inside the die if it
    is not on an edge); coordinates in dies, column right and row down."""
    from matplotlib.patches import Rectangle

    per_die: dict[tuple[int, int], int] = {}
    m = 0.16  # port marker size, in dies
    for p in hw.dram_ports:
        k = per_die.get((p.row, p.col), 0)
        per_die[(p.row, p.col)] = k + 1
        sides = _port_sides(p.row, p.col, hw.rows, hw.cols)
        side = sides[k % len(sides)]
        shift = (k // len(sides)) * 1.3 * m  # more ports on the same side: side by side
        x, y = {"N": (p.col + 0.5 - m / 2 + shift, p.row - m - 0.04),
                "S": (p.col + 0.5 - m / 2 + shift, p.row + 1 + 0.04),
                "W": (p.col - m - 0.04, p.row + 0.5 - m / 2 + shift),
                "E": (p.col + 1 + 0.04, p.row + 0.5 - m / 2 + shift),
                "in": (p.col + 0.08 + shift, p.row + 0.08)}[side]
        ax.add_patch(Rectangle((x, y), m, m, facecolor="#1f4e9c", edgecolor="none"))


def _grid_legend(mapping: Mapping, hw: Hardware, colour: Callable[[int], Any]) -> list:
    """grid_picture's legend: the first stages' colours, the first replicas' hatches, defective
    dies and DRAM ports."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colour(s), edgecolor="black", label=f"stage {s}") for s in range(min(mapping.pp, 12))]
    if mapping.pp > 12:
        handles.append(Patch(facecolor="white", edgecolor="white", label=f"… {mapping.pp} stages"))
    if mapping.dp > 1:
        handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[d % len(HATCHES)],
                          label=f"replica {d}") for d in range(min(mapping.dp, 4))]
        if mapping.dp > 4:
            handles.append(Patch(facecolor="white", edgecolor="white", label=f"… {mapping.dp} replicas"))
    if hw.defects:
        handles.append(Patch(facecolor="#777777", edgecolor="red", label="defective die"))
    if hw.dram_ports:
        handles.append(Patch(facecolor="#1f4e9c", label=f"DRAM port ({len(hw.dram_ports)})"))
    return handles


def grid_picture(mapping: Mapping, hw: Hardware, path: str | Path) -> Path:
    """The die grid of `hw` with each (stage, replica) tensor group of `mapping` drawn: stage as
    colour, replica as hatch and label 's<stage> r<replica>'; defective dies crossed out in grey;
    DRAM ports as small squares on the die edge they attach to (inside the die if it is not on an
    edge). Rows go down, columns right; die (0, 0) is top left."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    out = _target(path)
    rows, cols = hw.rows, hw.cols
    groups = _groups(mapping, hw)
    for g in groups:
        for d in mapping.group_dies(g):
            if not (0 <= d[0] < rows and 0 <= d[1] < cols):
                raise ConfigError(f"groups: stage {g.stage} replica {g.replica} uses die {d}, outside the "
                                  f"{rows}x{cols} grid of {hw.name}")
    cell = max(0.12, min(0.6, 9.0 / max(rows, cols)))  # inches per die, figure at most ~9 in wide
    fig = _figure(max(4.0, cols * cell + 2.6), max(3.0, rows * cell + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab10" if mapping.pp <= 10 else "tab20" if mapping.pp <= 20 else "viridis"]
    ncolors = cmap.N if mapping.pp <= 20 else mapping.pp

    def colour(stage: int) -> Any:
        return cmap(stage % ncolors if mapping.pp <= 20 else stage / max(1, mapping.pp - 1))

    for r in range(rows):  # the empty grid
        for c in range(cols):
            ax.add_patch(Rectangle((c, r), 1, 1, facecolor="white", edgecolor="#bbbbbb", linewidth=0.5))
    label_groups = len(groups) <= 64 and mapping.tp_shape[1] * cell >= 0.35
    for g in groups:
        (r0, c0), (h, w) = g.origin, mapping.tp_shape
        hatch = HATCHES[g.replica % len(HATCHES)] if mapping.dp > 1 else ""
        ax.add_patch(Rectangle((c0, r0), w, h, facecolor=colour(g.stage), edgecolor="black", linewidth=1.0,
                               hatch=hatch, alpha=0.85))
        if label_groups:
            ax.text(c0 + w / 2, r0 + h / 2, f"s{g.stage} r{g.replica}", ha="center", va="center",
                    fontsize=7 if w * cell < 0.8 else 9,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0})
    for (r, c) in hw.defects:
        ax.add_patch(Rectangle((c, r), 1, 1, facecolor="#777777", edgecolor="black", linewidth=0.8))
        ax.plot([c + 0.15, c + 0.85], [r + 0.15, r + 0.85], color="red", linewidth=1.5)
        ax.plot([c + 0.15, c + 0.85], [r + 0.85, r + 0.15], color="red", linewidth=1.5)
    _draw_dram_ports(ax, hw)
    ax.set_xlim(-0.35, cols + 0.35)
    ax.set_ylim(rows + 0.35, -0.35)
    ax.set_aspect("equal")
    step = max(1, max(rows, cols) // 16)
    ax.set_xticks([c + 0.5 for c in range(0, cols, step)], [str(c) for c in range(0, cols, step)], fontsize=7)
    ax.set_yticks([r + 0.5 for r in range(0, rows, step)], [str(r) for r in range(0, rows, step)], fontsize=7)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    name = mapping.name or "mapping"
    ax.set_title(f"{name} on {hw.name} ({rows}x{cols}): pp {mapping.pp}, dp {mapping.dp}, "
                 f"tensor group {mapping.tp_shape[0]}x{mapping.tp_shape[1]}", fontsize=9)
    handles = _grid_legend(mapping, hw, colour)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    return _save(fig, out)


def breakdown_picture(report: Report, path: str | Path) -> Path:
    """One horizontal bar of the step time split into Report.breakdown's parts (seconds): compute,
    recompute, tp_comm_exposed, pp_comm_exposed, dram, bubble, dp_comm_exposed, optimizer …;
    'exposed_comm' (their sum) and the *_comm times run alone are not drawn. Each part is labelled
    with its seconds and share."""
    from matplotlib import colormaps

    out = _target(path)
    parts = [(k, v) for k, v in report.breakdown.items() if k not in DERIVED and v > 0]
    total = sum(v for _, v in parts)
    fig = _figure(9.0, 1.9)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab20"]
    left = 0.0
    for i, (k, v) in enumerate(parts):
        ax.barh([0], [v], left=left, height=0.8, color=cmap(i % 20), edgecolor="white",
                label=f"{k}: {v:.4g} s ({v / total:.1%})" if total else k)
        if total and v / total >= 0.08:
            ax.text(left + v / 2, 0, k, ha="center", va="center", fontsize=8)
        left += v
    if abs(total - report.step_time_s) > 1e-9 * max(1.0, report.step_time_s):
        ax.axvline(report.step_time_s, color="black", linestyle="--", linewidth=1)
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlim(0, max(total, report.step_time_s) * 1.02 or 1.0)
    ax.set_xlabel("seconds per training step")
    ax.set_title(f"step time {report.step_time_s:.4g} s: {report.tokens_per_s:,.0f} tokens/s, "
                 f"MFU {report.mfu:.1%}, {report.devices} dies", fontsize=9)
    for s in ("top", "right", "left"):
        ax.spines[s].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=3, fontsize=7, frameon=False)
    return _save(fig, out)


def _label_front(ax: Any, best: list, xs: list[float], ys: list[float]) -> None:
    """Label each front point; points that sit close together (6% of both axes' spans) get one
    stacked label instead of overlapping ones."""
    xspan = (max(xs) - min(xs)) or 1.0
    yspan = (max(ys) - min(ys)) or 1.0
    clusters: list[list] = []
    for p in best:
        for cl in clusters:
            q = cl[0]
            if abs(p.area_mm2 - q.area_mm2) / xspan < 0.06 and abs(p.tokens_per_s - q.tokens_per_s) / yspan < 0.06:
                cl.append(p)
                break
        else:
            clusters.append([p])
    # the front rises to the right: labels go above-left of it, the leftmost one below-right
    for i, cl in enumerate(sorted(clusters, key=lambda c: min(p.area_mm2 for p in c))):
        x = sum(p.area_mm2 for p in cl) / len(cl)
        y = sum(p.tokens_per_s for p in cl) / len(cl)
        first = i == 0
        ax.annotate("\n".join(p.label() for p in cl), (x, y), textcoords="offset points",
                    xytext=(8, -6) if first else (-8, 6), ha="left" if first else "right",
                    va="top" if first else "bottom", fontsize=7)


def pareto_picture(front: Iterable["DesignPoint"], path: str | Path) -> Path:
    """Throughput (tokens/s) against area (mm²) with energy per step as colour, for the points of
    an exploration — all of them or just pareto(points): the Pareto-optimal ones (throughput ↑,
    energy ↓, area ↓) are drawn as labelled stars joined by a line, the others as dots; points
    without a mapping (infeasible) are left out and counted in the title."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    from .explore import pareto

    out = _target(path)
    pts = list(front)
    solved = [p for p in pts if p.solved]
    best = pareto(solved)
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    if solved:
        energies = [p.energy_j for p in solved]
        norm = Normalize(vmin=min(energies), vmax=max(energies) if max(energies) > min(energies) else min(energies) + 1)
        cmap = colormaps["viridis"]
        on = {id(p) for p in best}
        rest = [p for p in solved if id(p) not in on]
        if rest:
            ax.scatter([p.area_mm2 for p in rest], [p.tokens_per_s for p in rest], c=[p.energy_j for p in rest],
                       cmap=cmap, norm=norm, s=30, marker="o", alpha=0.7, label="dominated")
        sc = ax.scatter([p.area_mm2 for p in best], [p.tokens_per_s for p in best], c=[p.energy_j for p in best],
                        cmap=cmap, norm=norm, s=140, marker="*", edgecolors="black", linewidths=0.7,
                        label="Pareto front", zorder=3)
        ax.plot([p.area_mm2 for p in best], [p.tokens_per_s for p in best], color="black", linewidth=0.8,
                alpha=0.5, zorder=2)
        _label_front(ax, best[:24], [p.area_mm2 for p in solved], [p.tokens_per_s for p in solved])
        fig.colorbar(sc, ax=ax, label="energy per step (J)")
        ax.margins(x=0.08, y=0.15)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no design point has a mapping", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("area (mm², Σ die area)")
    ax.set_ylabel("throughput (tokens/s)")
    missing = len(pts) - len(solved)
    ax.set_title(f"{len(best)} Pareto-optimal of {len(solved)} design points"
                 + (f" ({missing} without a mapping)" if missing else ""), fontsize=9)
    ax.grid(True, alpha=0.3)
    return _save(fig, out)


__all__ = ["grid_picture", "breakdown_picture", "pareto_picture", "SUFFIXES"]
