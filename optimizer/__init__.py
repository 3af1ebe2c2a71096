"""Mapping search: strategy space, cost model, evaluator, solver, bound checks, baselines and
hardware co-exploration."""

from . import baselines
from .tools import export
from .tools.check import CheckResult, check
from .model.evaluate import evaluate
from .tools.explore import Budget, Template, explore
from .model.mapping import Mapping, OpChoice, Report, StageGroup
from .search.solve import Solution, solve

__all__ = ["baselines", "export", "evaluate", "solve", "check", "explore", "Mapping", "OpChoice", "Report",
           "StageGroup", "Solution", "CheckResult", "Template", "Budget"]
