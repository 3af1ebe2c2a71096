"""Progress bars on stderr, fed by the callbacks of solve() and explore()."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ...search.solve import Progress as SolveProgress
from .common import _fmt_opt


class _Bar:
    """A transient rich progress bar on stderr (a no-op when disabled): `verb`, the bar, done/total,
    then `fields_text` with its task fields."""

    verb, fields_text, fields = "", "", {}

    def __init__(self, enabled: bool, total: Optional[int] = None) -> None:
        self.enabled, self.total = enabled, total
        self.progress: Optional[Progress] = None
        self.task: Any = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            self.progress = Progress(SpinnerColumn(), TextColumn(self.verb), BarColumn(bar_width=16),
                                     MofNCompleteColumn(), TextColumn(self.fields_text), TimeElapsedColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.verb, total=self.total, **self.fields)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class _SolveBar(_Bar):
    """Fed by solve()'s progress callback: outer points solved, incumbent, bound."""

    verb, fields = "solving", {"incumbent": "-", "bound": "-"}
    fields_text = "points  best {task.fields[incumbent]}  bound {task.fields[bound]}"

    def __call__(self, p: SolveProgress) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=p.total, completed=p.solved,
                                 incumbent=_fmt_opt(p.incumbent_s, "s"), bound=_fmt_opt(p.bound_s, "s"))


class _ExploreBar(_Bar):
    """Fed by explore()'s progress callback: designs solved and the last one's outcome."""

    verb, fields, fields_text = "exploring", {"last": "-"}, "designs  last {task.fields[last]}"

    def __call__(self, done: int, total: int, point: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total, last=f"{point.label()}: {point.status}")
