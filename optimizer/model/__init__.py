"""The cost model and its referee: what one training step of a mapping costs.

cost (pure formulas: compute, memory, collectives), sharding (an operator's partition options and
the layouts they leave), overlap (a collective beside the GEMM it feeds or drains), tables (per
operator and per edge costs of one outer point, shared by the solver and the referee; op_cost prices
an operator under an option, edges finds the edges between operators and their layout conversions,
rings the dies each collective runs on), mapping (Mapping, Report), stage (one pipeline stage's
score from the tables), evaluate (the referee: a mapping's step time, memory and energy) and simulate
(the second referee: one step replayed event by event from per-operator costs)."""
