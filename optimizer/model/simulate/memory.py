"""Bytes one die of a stage holds: the model state (static over the step) and what each layer's
forward stores until its backward, from each operator's weights and each tensor's bytes in its
producer's layout (Tables.option_cost, Tables.tensor_bytes), never from a stage's sums.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.graph import stored_tensors

from .. import cost
from .ops import OpPrograms


@dataclass(frozen=True)
class LayerBytes:
    activations: float  # one layer of one micro-batch, kept from its forward to its backward
    buffer: float  # the recomputed ops' outputs while one layer is recomputed and run backward
    head: float  # tensors the output layer and loss keep for their backward (last stage)


def layer_bytes(ops: OpPrograms) -> LayerBytes:
    t, g = ops.tables, ops.tables.graph
    opt = {k: v.split for k, v in ops.ch.items()}
    acts = sum(t.tensor_bytes(x, opt) for x in stored_tensors(g, ops.rec))
    buffer = sum(t.recompute_buffer(o, opt[o.name]) for o in g.block if o.name in ops.rec)
    head = sum(t.tensor_bytes(x, opt) for o in g.post for x in o.saved)
    return LayerBytes(acts, buffer, head)


def stage_params(ops: OpPrograms, layers: int, first: bool, last: bool) -> float:
    """Weights on one die of a stage with `layers` layers (the embedding on the first, the output
    layer on the last, with a tied output layer's own copy of the embedding when p > 1)."""
    g = ops.tables.graph
    params = layers * sum(ops.oc[o.name].params for o in g.block)
    if first:
        params += sum(ops.oc[o.name].params for o in g.pre)
    if last:
        params += sum(ops.oc[o.name].params for o in g.post)
        params += ops.tables.tied_head_params(ops.ch["lm_head"].split)
    return params


def model_state(ops: OpPrograms, params: float) -> dict[str, float]:
    """Weights, gradients and Adam state on one die (ZeRO's split of cost.zero_state_bytes)."""
    t = ops.tables
    return cost.zero_state_bytes(params, t.dp, t.zero_stage, t.fp32_grads, t.work.dtype_bytes)
