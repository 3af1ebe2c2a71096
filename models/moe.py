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

The dispatched tensors are expert-major: xe, u, act, ye have dims (e, c, ·), c = ⌈b·s·k/E⌉ rows
per expert (the average; the rows of one expert are in token order). So the expert ops may be
split on e, experts spread over the dies of a tensor group (expert parallelism inside the
group), or on c (every die holds all experts and runs its tokens' share), or on f (each
expert's FFN split, Megatron-LM's expert tensor parallelism). dispatch and combine map c onto
their loop dim s: splitting them on the sequence splits each expert's rows, so turning the
dispatched tokens from c-split (where the tokens are) to e-split (where their experts are) is
the all-to-all of expert parallelism, which the layout conversions cost on the mesh or fabric
(optimizer/model/sharding.py). Op names fc1/act/fc2 stay those of the dense MLP.
"""

from __future__ import annotations

from .graph import _BSH, MEMORY_BOUND_BACKWARD, Op, Operand, _norm, _residual_add
from .schema import ModelConfig

EXPERT_ROWS = ("e", "c", "h")  # the dispatched tokens: c rows of hidden h per expert
EXPERT_LOOP = ("e", "s", "h")  # how dispatch and combine see them: c is their sequence dim s


def moe_sizes(model: ModelConfig, micro_batch: int, seq_len: int) -> dict[str, int]:
    """The MoE block's own loop dims: f the expert FFN, e the experts, c the rows per expert
    (⌈b·s·k/E⌉: an expert's average share), r the shared experts' FFN."""
    rows = -(-micro_batch * seq_len * model.experts_per_token // model.experts)
    sizes = {"f": model.expert_ffn_size, "e": model.experts, "c": rows}
    if model.shared_experts:
        sizes["r"] = model.shared_experts * model.expert_ffn_size
    return sizes


def moe_tensors(model: ModelConfig, t, glu: int) -> None:
    """The tensors a MoE MLP adds, or resizes (u, act: top-k copies of each token's rows)."""
    t("gate_logits", ("b", "s", "e")); t("gates", ("b", "s", "e"))
    t("xe", EXPERT_ROWS)
    t("u", ("e", "c", "f"), count=glu); t("act", ("e", "c", "f"))
    t("ye", EXPERT_ROWS)
    if model.shared_experts:
        t("us", ("b", "s", "r"), count=glu); t("acts", ("b", "s", "r")); t("ms", _BSH)


def _ffn(model: ModelConfig, names: tuple[str, str, str], rows: tuple[str, str], x: str, dim: str,
         tensors: tuple[str, str, str], flops_rows: float, experts: int, glu: int, h: int, f: int) -> list[Op]:
    """fc1, activation, fc2 of `experts` FFNs of size f (dim `dim`) over the rows `rows` (flops_rows
    of them in the GEMMs); the weights are all experts'."""
    bias = model.bias
    u, a, y = tensors
    e = ("e",) if experts > 1 else ()
    return [
        Op(names[0], "matmul", (*rows, "k", dim), (Operand(x, (*rows, "k")),), (Operand(u, (*rows, dim)),),
           2 * glu * flops_rows * h * f, params=experts * glu * (h * f + (f if bias else 0)), weight=(*e, "k", dim),
           saved=(x,), splittable=(*rows, "k", dim), param_tensors=1 + bias),
        Op(names[1], "activation", (*rows, dim), (Operand(u, (*rows, dim)),), (Operand(a, (*rows, dim)),), 0,
           saved=(u,), splittable=(*rows, dim),
           backward_factor=MEMORY_BOUND_BACKWARD["swiglu" if glu == 2 else "activation"]),
        Op(names[2], "matmul", (*rows, dim, "n"), (Operand(a, (*rows, dim)),), (Operand(y, (*rows, "n")),),
           2 * flops_rows * f * h, params=experts * (f * h + (h if bias else 0)), weight=(*e, dim, "n"),
           saved=(a,), splittable=(*rows, dim, "n"), param_tensors=1 + bias),
    ]


def moe_mlp_ops(model: ModelConfig, sz: dict[str, int], t, glu: int) -> list[Op]:
    """The MoE block's MLP half (module docstring), from ln2 to the residual add."""
    h, e, k = sz["h"], sz["e"], model.experts_per_token
    tokens = sz["b"] * sz["s"]
    routed = e * sz["c"] * model.expert_load_imbalance  # rows the experts' grouped GEMMs run
    ops = [_norm(model, "ln2", "x1", "y2")]
    ops.append(Op("router", "matmul", ("b", "s", "k", "e"), (Operand("y2", ("b", "s", "k")),),
                  (Operand("gate_logits", ("b", "s", "e")),), 2 * tokens * h * e, params=h * e,
                  weight=("k", "e"), saved=("y2",), splittable=("b", "s", "k", "e")))
    ops.append(Op("route", "softmax", ("b", "s", "e"), (Operand("gate_logits", ("b", "s", "e")),),
                  (Operand("gates", ("b", "s", "e")),), 0, saved=("gates",), splittable=("b", "s"),
                  backward_factor=MEMORY_BOUND_BACKWARD["softmax"]))
    # dispatch copies each row to k experts; its backward sums the k gradient copies back: the same bytes
    ops.append(Op("dispatch", "dispatch", ("b", "s", "h", "e"), (Operand("y2", _BSH),),
                  (Operand("xe", EXPERT_LOOP),), 0, splittable=("s", "h"), backward_factor=1.0))
    ops.extend(_ffn(model, ("fc1", "act", "fc2"), ("e", "c"), "xe", "f", ("u", "act", "ye"), routed, e, glu, h,
                    sz["f"]))
    combine_in = [Operand("ye", EXPERT_LOOP), Operand("gates", ("b", "s", "e"))]
    if model.shared_experts:
        ops.extend(_ffn(model, ("shared_fc1", "shared_act", "shared_fc2"), ("b", "s"), "y2", "r",
                        ("us", "acts", "ms"), tokens, 1, glu, h, sz["r"]))
        combine_in.append(Operand("ms", _BSH))
    # combine's backward reads dm, the k expert rows and the gates and writes their k gradient rows
    # against the forward's k reads and one write: (2k + 1)/(k + 1) of its bytes
    ops.append(Op("combine", "combine", ("b", "s", "h", "e"), tuple(combine_in), (Operand("m", _BSH),), 0,
                  saved=("ye", "gates"), splittable=("s", "h"), backward_factor=(2 * k + 1) / (k + 1)))
    _residual_add(model, t, ops, "mlp_dropout", "m", "x1", "add2", "x2")
    return ops
