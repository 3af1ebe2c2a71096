"""A backend-neutral mixed-integer linear model: variables, rows, objective.

Every backend (CP-SAT, CBC through PuLP, HiGHS and SCIP through OR-Tools) is built from this one
description. Each row has a unit scale (`scale`): the factor by which its coefficients are
multiplied to become integers for CP-SAT (e.g. 1e9 for rows in seconds = nanosecond resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Var:
    name: str
    lb: float
    ub: float
    integer: bool
    scale: float = 1.0  # CP-SAT: integer units per model unit (1e9 = ns for seconds)


@dataclass
class Row:
    coeffs: dict[int, float]
    sense: str  # "<=", ">=", "=="
    rhs: float
    scale: float  # CP-SAT: integer units per model unit of this row
    name: str = ""


@dataclass
class LinearModel:
    vars: list[Var] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    objective: dict[int, float] = field(default_factory=dict)
    objective_const: float = 0.0
    objective_scale: float = 1e9  # CP-SAT objective units per model unit
    hint: dict[int, float] = field(default_factory=dict)

    def binary(self, name: str) -> int:
        self.vars.append(Var(name, 0.0, 1.0, True))
        return len(self.vars) - 1

    def continuous(self, name: str, ub: float, scale: float = 1e9) -> int:
        self.vars.append(Var(name, 0.0, ub, False, scale))
        return len(self.vars) - 1

    def add(self, coeffs: dict[int, float], sense: str, rhs: float, scale: float = 1e9, name: str = "") -> None:
        coeffs = {k: v for k, v in coeffs.items() if v != 0.0}
        self.rows.append(Row(coeffs, sense, rhs, scale, name))

    def minimize(self, coeffs: dict[int, float], const: float = 0.0) -> None:
        self.objective = {k: v for k, v in coeffs.items() if v != 0.0}
        self.objective_const = const

    def value(self, values: list[float]) -> float:
        return self.objective_const + sum(c * values[i] for i, c in self.objective.items())


@dataclass
class Result:
    status: str  # optimal | feasible | infeasible | timeout
    values: list[float] | None
    objective: float | None  # as the backend reports it (model units)
    bound: float | None  # proven lower bound (model units)
    wall_s: float


def add_expr(target: dict[int, float], source: dict[int, float], k: float = 1.0) -> None:
    """target += k * source (sparse linear expressions)."""
    for i, c in source.items():
        target[i] = target.get(i, 0.0) + k * c
