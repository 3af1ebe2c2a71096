"""Parameter and FLOP counts of a model: total and active (per token) parameters, model FLOPs.

A model may mix dense and MoE layers (DeepSeekMoE keeps its first layer dense): each kind of
layer is counted from its own block graph (models.graph.build_graph with moe=False / True).
"""

from __future__ import annotations

from .graph import build_graph
from .schema import ModelConfig

EXPERT_OPS = ("fc1", "fc2")  # in a MoE block: the routed experts' weights (all experts')


def _layer_kinds(model: ModelConfig) -> tuple[tuple[int, bool], ...]:
    """(layers, is MoE) for the dense and the MoE layers of the model, those it has."""
    moe = model.moe_layers
    return tuple((n, kind) for n, kind in ((model.layers - moe, False), (moe, True)) if n)


def parameter_count(model: ModelConfig) -> int:
    """Trainable parameters: blocks (every expert of a MoE block), embeddings (+ learned
    positions), final norm, untied head."""
    total = 0
    for n, moe in _layer_kinds(model):
        gr = build_graph(model, 1, model.seq_len, moe=moe)
        total += n * sum(o.params for o in gr.block)
    return total + sum(o.params for o in gr.pre + gr.post)


def active_parameter_count(model: ModelConfig) -> int:
    """Parameters one token uses: parameter_count less, in each MoE layer, the weights of the
    experts - experts_per_token routed experts it is not sent to (the router, shared experts,
    attention, embeddings and head all count). Equals parameter_count for a dense model."""
    total = parameter_count(model)
    if not model.moe_layers:
        return total
    gr = build_graph(model, 1, model.seq_len, moe=True)
    per_expert = sum(gr.op(name).params for name in EXPERT_OPS) // model.experts
    return total - model.moe_layers * (model.experts - model.experts_per_token) * per_expert


def step_flops(model: ModelConfig, global_batch: int, seq_len: int | None = None, recompute: bool = False) -> int:
    """Matmul FLOPs of one training step (forward, backward = 2x forward, + forward again if recompute).

    For GPT-style models equals Narayanan et al. (SC21): 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)),
    and with full recompute 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)). A MoE layer counts the router
    and the top-k experts' share (model FLOPs: the routed tokens, without the load imbalance).
    """
    balanced = model.model_copy(update={"expert_load_imbalance": 1.0})
    layers = 0
    for n, moe in _layer_kinds(balanced):
        gr = build_graph(balanced, global_batch, seq_len or model.seq_len, moe=moe)
        layers += n * sum(o.flops for o in gr.block)
    head = sum(o.flops for o in gr.post)
    return (4 if recompute else 3) * layers + 3 * head


def forward_flops_per_token(model: ModelConfig, seq_len: int | None = None) -> float:
    """Matmul FLOPs of one token's forward pass at context seq_len (training: 3x, step_flops)."""
    s = seq_len or model.seq_len
    return step_flops(model, 1, s) / (3 * s)
