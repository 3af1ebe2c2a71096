"""The MLP half of a mixture-of-experts block: router, dispatch, the experts, combine.

A MoE layer (Shazeer et al. 2017; GShard, Lepikhin et al. 2021; Mixtral, Jiang et al. 2024;
DeepSeekMoE, Dai et al. 2024) replaces the FFN by `experts` FFNs of `expert_ffn` each. Per token:

- router: logits = y·W_r, a GEMM hidden × experts (2·h·E FLOPs per token, h·E weights);
- route: softmax and top-k over the E logits (memory-bound), keeping the gate weights;
- dispatch: each token is copied to its k experts (a permutation: k·h elements per token);
- fc1, act, fc2: the experts' FFNs on the tokens they received. On average an expert gets
  tokens·k/E tokens; the busiest gets `expert_load_imbalance` times that, and a grouped GEMM
  runs as long as its largest group, so the experts' FLOPs are 2·glu·h·f·k·imbalance per token;
- shared_fc1, shared_act, shared_fc2 (DeepSeekMoE): `shared_experts` FFNs every token uses,
  one FFN of shared_experts·expert_ffn;
- combine: m = Σ_k gate_k·expert_k(y) (+ the shared experts' output), un-permuting the tokens.

Without expert parallelism every die of a tensor group holds all E experts' weights (their FFN
dim f split like a dense FFN's under tensor parallelism) and computes the top-k share of them.
Op names fc1/act/fc2 stay those of the dense MLP, so the spaces split the experts on f as
Megatron-LM splits an expert's FFN under tensor parallelism (--expert-tensor-parallel-size).
"""

from __future__ import annotations

from .graph import _BSH, MASK_BYTES, MEMORY_BOUND_BACKWARD, Op, Operand, _add, _dropout, _norm
from .schema import ModelConfig


def moe_sizes(model: ModelConfig) -> dict[str, int]:
    """The MoE block's own loop dims: f the expert FFN, e the experts, r the shared experts' FFN."""
    sizes = {"f": model.expert_ffn_size, "e": model.experts}
    if model.shared_experts:
        sizes["r"] = model.shared_experts * model.expert_ffn_size
    return sizes


def moe_tensors(model: ModelConfig, t, glu: int) -> None:
    """The tensors a MoE MLP adds, or resizes (u, act: top-k copies of each token's rows)."""
    k = model.experts_per_token
    t("gate_logits", ("b", "s", "e")); t("gates", ("b", "s", "e"))
    t("xe", _BSH, count=k)
    t("u", ("b", "s", "f"), count=glu * k); t("act", ("b", "s", "f"), count=k)
    t("ye", _BSH, count=k)
    if model.shared_experts:
        t("us", ("b", "s", "r"), count=glu); t("acts", ("b", "s", "r")); t("ms", _BSH)


def _ffn(model: ModelConfig, names: tuple[str, str, str], dim: str, x: str, tensors: tuple[str, str, str],
         tokens: float, experts: int, glu: int, h: int, f: int) -> list[Op]:
    """fc1, activation, fc2 of `experts` FFNs of size f over `tokens` rows (weights: all experts)."""
    bias = model.bias
    u, a, y = tensors
    return [
        Op(names[0], "matmul", ("b", "s", "k", dim), (Operand(x, ("b", "s", "k")),), (Operand(u, ("b", "s", dim)),),
           2 * glu * tokens * h * f, params=experts * glu * (h * f + (f if bias else 0)), weight=("k", dim),
           saved=(x,), splittable=("b", "s", "k", dim), param_tensors=1 + bias),
        Op(names[1], "activation", ("b", "s", dim), (Operand(u, ("b", "s", dim)),), (Operand(a, ("b", "s", dim)),), 0,
           saved=(u,), splittable=("b", "s", dim),
           backward_factor=MEMORY_BOUND_BACKWARD["swiglu" if glu == 2 else "activation"]),
        Op(names[2], "matmul", ("b", "s", dim, "n"), (Operand(a, ("b", "s", dim)),), (Operand(y, ("b", "s", "n")),),
           2 * tokens * f * h, params=experts * (f * h + (h if bias else 0)), weight=(dim, "n"),
           saved=(a,), splittable=("b", "s", dim, "n"), param_tensors=1 + bias),
    ]


def moe_mlp_ops(model: ModelConfig, sz: dict[str, int], t, glu: int) -> list[Op]:
    """The MoE block's MLP half (module docstring), from ln2 to the residual add."""
    h, e, k = sz["h"], sz["e"], model.experts_per_token
    tokens = sz["b"] * sz["s"]
    routed = tokens * k * model.expert_load_imbalance  # rows the experts' grouped GEMMs run
    ops = [_norm(model, "ln2", "x1", "y2")]
    ops.append(Op("router", "matmul", ("b", "s", "k", "e"), (Operand("y2", ("b", "s", "k")),),
                  (Operand("gate_logits", ("b", "s", "e")),), 2 * tokens * h * e, params=h * e,
                  weight=("k", "e"), saved=("y2",), splittable=("b", "s", "k", "e")))
    ops.append(Op("route", "softmax", ("b", "s", "e"), (Operand("gate_logits", ("b", "s", "e")),),
                  (Operand("gates", ("b", "s", "e")),), 0, saved=("gates",), splittable=("b", "s"),
                  backward_factor=MEMORY_BOUND_BACKWARD["softmax"]))
    # dispatch copies each row to k experts; its backward sums the k gradient copies back: the same bytes
    ops.append(Op("dispatch", "dispatch", _BSH, (Operand("y2", _BSH),), (Operand("xe", _BSH),), 0,
                  splittable=("b", "s", "h"), backward_factor=1.0))
    ops.extend(_ffn(model, ("fc1", "act", "fc2"), "f", "xe", ("u", "act", "ye"), routed, e, glu, h, sz["f"]))
    combine_in = [Operand("ye", _BSH), Operand("gates", ("b", "s", "e"))]
    if model.shared_experts:
        ops.extend(_ffn(model, ("shared_fc1", "shared_act", "shared_fc2"), "r", "y2", ("us", "acts", "ms"),
                        tokens, 1, glu, h, sz["r"]))
        combine_in.append(Operand("ms", _BSH))
    # combine's backward reads dm, the k expert rows and the gates and writes their k gradient rows
    # against the forward's k reads and one write: (2k + 1)/(k + 1) of its bytes
    ops.append(Op("combine", "combine", ("b", "s", "h", "e"), tuple(combine_in), (Operand("m", _BSH),), 0,
                  saved=("ye", "gates"), splittable=("b", "s", "h"), backward_factor=(2 * k + 1) / (k + 1)))
    res2 = "m"
    if model.dropout:
        t("m_d", _BSH); t("mask_m", _BSH, MASK_BYTES)
        ops.append(_dropout("mlp_dropout", "m", "m_d", "mask_m", _BSH))
        res2 = "m_d"
    ops.append(_add("add2", "x1", res2, "x2"))
    return ops
