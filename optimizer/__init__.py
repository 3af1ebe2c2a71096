"""Mapping search: strategy space, cost model, evaluator, solver and baselines."""

from . import baselines
from .evaluate import evaluate
from .mapping import Mapping, OpChoice, Report, StageGroup

__all__ = ["baselines", "evaluate", "Mapping", "OpChoice", "Report", "StageGroup"]

from .solve import Solution, solve  # noqa: E402
from . import export  # noqa: E402

__all__ += ["Solution", "solve", "export"]
from .check import check, CheckResult  # noqa: E402
from .explore import Budget, Template, explore  # noqa: E402

__all__ += ["explore", "Template", "Budget"]
