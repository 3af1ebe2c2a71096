"""Mapping search: strategy space, cost model, evaluator, solver, bound checks, baselines and
hardware co-exploration."""

from . import baselines, export
from .check import CheckResult, check
from .evaluate import evaluate
from .explore import Budget, Template, explore
from .mapping import Mapping, OpChoice, Report, StageGroup
from .solve import Solution, solve

__all__ = ["baselines", "export", "evaluate", "solve", "check", "explore", "Mapping", "OpChoice", "Report",
           "StageGroup", "Solution", "CheckResult", "Template", "Budget"]
