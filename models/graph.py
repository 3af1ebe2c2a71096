"""The operator graph of one transformer block, plus the embedding, head and loss.

Every operator is an einsum over named loop dimensions. Dimension names:
  b batch (micro-batch), s query sequence, z key sequence, h hidden, k contracted hidden,
  n output hidden, a attention heads, g key/value heads, d head dim, f ffn, v vocab.
Tensors carry their own canonical dims; an operand maps each tensor axis to a loop dim of the
op, so a layout chosen on loop dims translates to a layout of the tensor.

Each op knows its forward FLOPs (2 per multiply-add of a matmul; 0 for memory-bound ops, which
are costed by bytes moved), its weights, the tensors its backward needs (`saved`), and which
loop dims it may be split on. Activation accounting follows Korthikanti et al. 2022, op by op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from math import prod

from .schema import ModelConfig

MASK_BYTES = 1  # dropout masks are stored as one byte per element (Korthikanti et al. 2022)
LOSS_BYTES = 4  # logits are upcast to fp32 for the softmax cross-entropy (Megatron-LM)


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[str, ...]
    elem_bytes: int
    count: int = 1  # number of same-shaped tensors fused under this name (e.g. SwiGLU gate + up)

    def numel(self, sizes: dict[str, int]) -> int:
        return self.count * prod(sizes[d] for d in self.dims)

    def nbytes(self, sizes: dict[str, int]) -> int:
        return self.numel(sizes) * self.elem_bytes


@dataclass(frozen=True)
class Operand:
    """A tensor as an op sees it: `loop[i]` is the op's loop dim for the tensor's axis i."""

    tensor: str
    loop: tuple[str, ...]


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # matmul | norm | softmax | activation | dropout | add | embedding | loss
    loop: tuple[str, ...]
    inputs: tuple[Operand, ...]
    outputs: tuple[Operand, ...]
    flops: int  # forward FLOPs of the whole op (matmul only; memory-bound ops have 0)
    params: int = 0  # weights incl. bias
    weight: tuple[str, ...] = ()  # loop dims the weight matrix spans (for sharding it)
    saved: tuple[str, ...] = ()  # tensors its backward needs
    splittable: tuple[str, ...] = ()
    reduced: tuple[str, ...] = ()  # loop dims reduced inside the op (norm over h, softmax over z ...)
    stats: int = 0  # fp32 statistics per reduced row, all-reduced if a reduced dim is split
    backward_factor: float = 2.0  # backward FLOPs / forward FLOPs (2 for a GEMM: input and weight gradients)
    param_tensors: int = 1  # parameter tensors of the op (a weight, its bias, a norm's γ and β)


@dataclass(frozen=True)
class Graph:
    """Operators of one block (`block`), of the first stage (`pre`) and of the last (`post`)."""

    model: ModelConfig
    sizes: dict[str, int]
    tensors: dict[str, Tensor]
    block: tuple[Op, ...]
    pre: tuple[Op, ...]
    post: tuple[Op, ...]
    block_input: str = "x0"
    block_output: str = "x2"
    consumers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def op(self, name: str) -> Op:
        return self._ops_by_name[name]  # KeyError for an unknown name

    @cached_property
    def _ops_by_name(self) -> dict[str, Op]:
        out: dict[str, Op] = {}
        for o in self.block + self.pre + self.post:
            out.setdefault(o.name, o)
        return out

    def producer(self, tensor: str) -> Op | None:
        for o in self.block + self.pre + self.post:
            if any(x.tensor == tensor for x in o.outputs):
                return o
        return None


def _sizes(model: ModelConfig, micro_batch: int, seq_len: int) -> dict[str, int]:
    return {
        "b": micro_batch, "s": seq_len, "z": seq_len, "h": model.hidden, "k": model.hidden,
        "n": model.hidden, "a": model.heads, "g": model.n_kv_heads, "d": model.dim_per_head,
        "f": model.ffn_size, "v": model.vocab,
    }


# Bytes the backward kernel of a memory-bound op moves per byte of its forward (inputs + outputs):
# norm, softmax, GeLU read x (or y) and dy and write dx against the forward's read x, write y: 3/2;
# SwiGLU reads gate, up and d(act) and writes d(gate), d(up) against reading two and writing one:
# 5/3; dropout reads dy and the 1-byte mask and writes dx, the forward's own bytes (2 + 2 + 1 per
# element): 1; a residual add's backward is the one sum of the two gradient branches: 1.
MEMORY_BOUND_BACKWARD = {"norm": 1.5, "softmax": 1.5, "activation": 1.5, "swiglu": 5 / 3, "dropout": 1.0, "add": 1.0}
# The block's linear layers: the modules Megatron-LM / NeMo build with Transformer Engine, so they
# run in FP8 under FP8 training and overlap their TP collectives with --tp-comm-overlap; the
# attention core (cuDNN / FlashAttention, FP8 attention is opt-in) and the output layer stay BF16
# (Megatron-Core builds the output layer without Transformer Engine).
BLOCK_LINEARS = ("q_proj", "kv_proj", "out_proj", "fc1", "fc2", "shared_fc1", "shared_fc2")
LSE_BYTES = 4  # FlashAttention keeps one fp32 log-sum-exp per query row and head (Dao et al. 2022)
# FlashAttention's backward runs five GEMMs of the forward's size (S = QKᵀ again, dV, dP, dQ, dK)
# against the forward's two (Dao et al. 2022, Sec. 3.1 and Alg. 4): 2.5x the forward FLOPs.
FLASH_BACKWARD_FACTOR = 2.5
# A causal FlashAttention kernel skips the score tiles above the diagonal (Dao 2023, FlashAttention-2,
# Sec. 3.1.1): it executes half of QKᵀ and attention·V. The unfused core computes all s×s scores and
# masks them. Model FLOPs (step_flops, MFU) count the full s×s either way, as SC21 does.
CAUSAL_SHARE = 0.5

_BSH = ("b", "s", "h")  # dims of the residual stream: batch, sequence, hidden


def build_graph(model: ModelConfig, micro_batch: int = 1, seq_len: int | None = None, dtype_bytes: int = 2,
                flash_attention: bool = False, moe: bool | None = None) -> Graph:
    """The operator graph for one micro-batch of `micro_batch` sequences of `seq_len` tokens.

    flash_attention: the attention core (QKᵀ, softmax, dropout, attention·V) is one fused op,
    `attention` (FlashAttention, Dao et al. 2022): it reads q, k, v and writes the context and a
    per-row log-sum-exp, executing the causal half of the scores (CAUSAL_SHARE); the s×s scores
    live only as tiles in on-chip memory and are never stored,
    its backward recomputes them tile by tile (FLASH_BACKWARD_FACTOR) and regenerates the dropout
    mask from the RNG state.

    moe: the block is a mixture-of-experts block (models.moe); None = MoE if the model has any MoE
    layer. The graph holds one kind of block: models.counts counts a model that mixes dense and
    MoE layers from both graphs; the solver costs every layer as the block built here."""
    from .moe import moe_mlp_ops, moe_sizes, moe_tensors

    moe = model.moe_layers > 0 if moe is None else moe
    seq_len = seq_len or model.seq_len
    sz = _sizes(model, micro_batch, seq_len) | (moe_sizes(model, micro_batch, seq_len) if moe else {})
    glu = 2 if model.activation == "swiglu" else 1
    T: dict[str, Tensor] = {}

    def t(name: str, dims: tuple[str, ...], eb: int = dtype_bytes, count: int = 1) -> str:
        T[name] = Tensor(name, dims, eb, count)
        return name

    _block_tensors(t, glu)
    if moe:
        moe_tensors(model, t, glu)
    mlp = moe_mlp_ops(model, sz, t, glu) if moe else _mlp_ops(model, sz, t, glu)
    ops = _attention_ops(model, sz, t, flash_attention) + mlp
    pre = _pre_ops(model, sz, t)
    post = _post_ops(model, sz, t)
    consumers: dict[str, list[str]] = {}
    for o in (*ops, *post):
        for x in o.inputs:
            consumers.setdefault(x.tensor, []).append(o.name)
    return Graph(model, sz, T, tuple(ops), pre, post,
                 consumers={k: tuple(v_) for k, v_ in consumers.items()})


def _norm(model: ModelConfig, name: str, x: str, y: str) -> Op:
    """A layer norm (or RMS norm) over h, keeping its input for the backward."""
    norm_params = 2 * model.hidden if model.norm == "layernorm" else model.hidden
    norm_stats = 2 if model.norm == "layernorm" else 1
    return Op(name, "norm", ("b", "s", "h"), (Operand(x, _BSH),), (Operand(y, _BSH),), 0,
              params=norm_params, weight=("h",), saved=(x,), splittable=("b", "s", "h"),
              reduced=("h",), stats=norm_stats, backward_factor=MEMORY_BOUND_BACKWARD["norm"],
              param_tensors=norm_stats)


def _dropout(name: str, x: str, y: str, mask: str, dims: tuple[str, ...]) -> Op:
    """A dropout writing its output and the mask its backward needs."""
    return Op(name, "dropout", dims, (Operand(x, dims),), (Operand(y, dims), Operand(mask, dims)), 0,
              saved=(mask,), splittable=tuple(x for x in dims if x != "z"),
              backward_factor=MEMORY_BOUND_BACKWARD["dropout"])


def _add(name: str, x: str, y: str, out: str) -> Op:
    """A residual add."""
    return Op(name, "add", _BSH, (Operand(x, _BSH), Operand(y, _BSH)), (Operand(out, _BSH),), 0,
              splittable=("b", "s", "h"), backward_factor=MEMORY_BOUND_BACKWARD["add"])


def _block_tensors(t, glu: int) -> None:
    """The tensors every block has, whatever its dropouts and attention core."""
    t("x0", _BSH); t("y1", _BSH)
    t("q", ("b", "s", "a", "d")); t("kv", ("b", "s", "g", "d"), count=2)
    t("scores", ("b", "a", "s", "z")); t("probs", ("b", "a", "s", "z"))
    t("ctx", ("b", "s", "a", "d")); t("o", _BSH)
    t("x1", _BSH); t("y2", _BSH)
    t("u", ("b", "s", "f"), count=glu); t("act", ("b", "s", "f"))
    t("m", _BSH); t("x2", _BSH)


def _attention_ops(model: ModelConfig, sz: dict[str, int], t, flash_attention: bool) -> list[Op]:
    """The block's attention half: norm, projections, attention core, output projection, residual add."""
    micro_batch, s = sz["b"], sz["s"]
    h, a, g, d = sz["h"], sz["a"], sz["g"], sz["d"]
    bias = model.bias
    tokens = micro_batch * s
    ops = [_norm(model, "ln1", "x0", "y1")]
    ops.append(Op("q_proj", "matmul", ("b", "s", "k", "a", "d"),
                  (Operand("y1", ("b", "s", "k")),), (Operand("q", ("b", "s", "a", "d")),),
                  2 * tokens * h * a * d, params=h * a * d + (a * d if bias else 0), weight=("k", "a", "d"),
                  saved=("y1",), splittable=("b", "s", "k", "a"), param_tensors=1 + bias))
    ops.append(Op("kv_proj", "matmul", ("b", "s", "k", "g", "d"),
                  (Operand("y1", ("b", "s", "k")),), (Operand("kv", ("b", "s", "g", "d")),),
                  2 * 2 * tokens * h * g * d, params=2 * (h * g * d + (g * d if bias else 0)), weight=("k", "g", "d"),
                  saved=("y1",), splittable=("b", "s", "k", "g"), param_tensors=1 + bias))
    if flash_attention:
        t("lse", ("b", "a", "s"), LSE_BYTES)
        ops.append(Op("attention", "attention", ("b", "a", "s", "z", "d"),
                      (Operand("q", ("b", "s", "a", "d")), Operand("kv", ("b", "z", "a", "d"))),
                      (Operand("ctx", ("b", "s", "a", "d")), Operand("lse", ("b", "a", "s"))),
                      CAUSAL_SHARE * 4 * micro_batch * a * s * s * d, saved=("q", "kv", "ctx", "lse"),
                      splittable=("b", "a", "s"),
                      backward_factor=FLASH_BACKWARD_FACTOR))
    else:
        ops.extend(_attention_core(model, sz, t))
    ops.append(Op("out_proj", "matmul", ("b", "s", "a", "d", "n"),
                  (Operand("ctx", ("b", "s", "a", "d")),), (Operand("o", ("b", "s", "n")),),
                  2 * tokens * a * d * h, params=a * d * h + (h if bias else 0), weight=("a", "d", "n"),
                  saved=("ctx",), splittable=("b", "s", "a", "n"), param_tensors=1 + bias))
    _residual_add(model, t, ops, "out_dropout", "o", "x0", "add1", "x1")
    return ops


def _residual_add(model: ModelConfig, t, ops: list[Op], dropout: str, branch: str, residual: str, add: str,
                  out: str) -> None:
    """ops += the branch's dropout (named `dropout`, GPT-style models only) and the residual add
    residual + branch -> out (named `add`)."""
    if model.dropout:
        t(f"{branch}_d", _BSH)
        t(f"mask_{branch}", _BSH, MASK_BYTES)
        ops.append(_dropout(dropout, branch, f"{branch}_d", f"mask_{branch}", _BSH))
        branch = f"{branch}_d"
    ops.append(_add(add, residual, branch, out))


def _attention_core(model: ModelConfig, sz: dict[str, int], t) -> list[Op]:
    """The unfused attention core: QKᵀ, softmax, dropout (GPT), attention·V, each storing its s×s output."""
    micro_batch, s, d, a = sz["b"], sz["s"], sz["d"], sz["a"]
    ops: list[Op] = []
    # Scores: queries of head a attend to keys of kv head g(a); splitting heads a splits kv heads g alike.
    ops.append(Op("qk", "matmul", ("b", "a", "s", "z", "d"),
                  (Operand("q", ("b", "s", "a", "d")), Operand("kv", ("b", "z", "a", "d"))),
                  (Operand("scores", ("b", "a", "s", "z")),),
                  2 * micro_batch * a * s * s * d, saved=("q", "kv"), splittable=("b", "a", "s")))
    ops.append(Op("softmax", "softmax", ("b", "a", "s", "z"), (Operand("scores", ("b", "a", "s", "z")),),
                  (Operand("probs", ("b", "a", "s", "z")),), 0, saved=("probs",), splittable=("b", "a", "s"),
                  backward_factor=MEMORY_BOUND_BACKWARD["softmax"]))
    attn_in = "probs"
    if model.dropout:
        t("probs_d", ("b", "a", "s", "z")); t("mask_attn", ("b", "a", "s", "z"), MASK_BYTES)
        ops.append(_dropout("attn_dropout", "probs", "probs_d", "mask_attn", ("b", "a", "s", "z")))
        attn_in = "probs_d"
    ops.append(Op("av", "matmul", ("b", "a", "s", "z", "d"),
                  (Operand(attn_in, ("b", "a", "s", "z")), Operand("kv", ("b", "z", "a", "d"))),
                  (Operand("ctx", ("b", "s", "a", "d")),),
                  2 * micro_batch * a * s * s * d, saved=(attn_in, "kv"), splittable=("b", "a", "s")))
    return ops


def _mlp_ops(model: ModelConfig, sz: dict[str, int], t, glu: int) -> list[Op]:
    """The block's MLP half: norm, fc1, activation (GeLU or SwiGLU), fc2, residual add."""
    h, f = sz["h"], sz["f"]
    bias = model.bias
    tokens = sz["b"] * sz["s"]
    ops = [_norm(model, "ln2", "x1", "y2")]
    ops.append(Op("fc1", "matmul", ("b", "s", "k", "f"), (Operand("y2", ("b", "s", "k")),),
                  (Operand("u", ("b", "s", "f")),),
                  2 * glu * tokens * h * f, params=glu * (h * f + (f if bias else 0)), weight=("k", "f"),
                  saved=("y2",), splittable=("b", "s", "k", "f"), param_tensors=1 + bias))
    ops.append(Op("act", "activation", ("b", "s", "f"), (Operand("u", ("b", "s", "f")),),
                  (Operand("act", ("b", "s", "f")),), 0, saved=("u",), splittable=("b", "s", "f"),
                  backward_factor=MEMORY_BOUND_BACKWARD["swiglu" if glu == 2 else "activation"]))
    ops.append(Op("fc2", "matmul", ("b", "s", "f", "n"), (Operand("act", ("b", "s", "f")),),
                  (Operand("m", ("b", "s", "n")),),
                  2 * tokens * f * h, params=f * h + (h if bias else 0), weight=("f", "n"),
                  saved=("act",), splittable=("b", "s", "f", "n"), param_tensors=1 + bias))
    _residual_add(model, t, ops, "mlp_dropout", "m", "x1", "add2", "x2")
    return ops


def _pre_ops(model: ModelConfig, sz: dict[str, int], t) -> tuple[Op, ...]:
    # First stage: token (+ learned position) embedding. Vocab-parallel lookup yields partial sums.
    h, v = sz["h"], sz["v"]
    t("emb", _BSH)
    emb_params = v * h + (model.seq_len * h if model.position == "learned" else 0)
    return (Op("embedding", "embedding", ("b", "s", "v", "n"), (), (Operand("emb", ("b", "s", "n")),), 0,
               params=emb_params, weight=("v", "n"), splittable=("b", "s", "v", "n"),
               param_tensors=1 + (model.position == "learned")),)


def _post_ops(model: ModelConfig, sz: dict[str, int], t) -> tuple[Op, ...]:
    # Last stage: final norm, LM head (weights shared with the embedding when tied), loss.
    h, v = sz["h"], sz["v"]
    tokens = sz["b"] * sz["s"]
    t("xf", _BSH); t("logits", ("b", "s", "v"), LOSS_BYTES)
    head_params = 0 if model.tied_embeddings else v * h
    return (
        _norm(model, "final_norm", "x2", "xf"),
        Op("lm_head", "matmul", ("b", "s", "k", "v"), (Operand("xf", ("b", "s", "k")),),
           (Operand("logits", ("b", "s", "v")),), 2 * tokens * h * v, params=head_params, weight=("k", "v"),
           saved=("xf",), splittable=("b", "s", "k", "v")),
        Op("loss", "loss", ("b", "s", "v"), (Operand("logits", ("b", "s", "v")),), (), 0,
           saved=("logits",), splittable=("b", "s", "v"), reduced=("v",), stats=2),
    )


SELECTIVE_RECOMPUTE = ("qk", "softmax", "attn_dropout")  # Korthikanti et al. 2022: the attention core
TP_SPLIT_TENSORS = ("q", "kv", "scores", "probs", "probs_d", "mask_attn", "ctx", "lse", "u", "act", "us", "acts")


def stored_tensors(graph: Graph, recomputed: set[str]) -> set[str]:
    """Checkmate's rule for one block: a tensor is kept if a backward or a recomputation needs it
    and its producer is not recomputed; the block input is always kept."""
    need = {t for o in graph.block for t in o.saved}
    for o in graph.block:
        if o.name in recomputed:
            need |= {x.tensor for x in o.inputs}
    prod = {x.tensor: o.name for o in graph.block for x in o.outputs}
    return {t for t in need if t == graph.block_input or prod.get(t) not in recomputed}


RECOMPUTE_POLICIES = ("none", "selective", "full")  # Megatron-LM's activation recomputation policies


def recompute_set(graph: Graph, recompute: str) -> set[str]:
    """Ops recomputed under Megatron's policies: none, selective (attention core), full (all)."""
    names = {o.name for o in graph.block}
    if recompute == "none":
        return set()
    if recompute == "selective":
        return set(SELECTIVE_RECOMPUTE) & names
    if recompute == "full":
        return names
    raise ValueError(f"recompute must be one of none, selective, full; got {recompute!r}")


def block_activation_bytes(model: ModelConfig, micro_batch: int, seq_len: int | None = None, tp: int = 1,
                           sequence_parallel: bool = False, recompute: str = "none", dtype_bytes: int = 2,
                           flash_attention: bool = False) -> float:
    """Activation bytes one block keeps for backward on one die under Megatron-style tensor
    parallelism t (heads and ffn split; norms, dropouts, residuals replicated, or split on the
    sequence with sequence_parallel). For GPT blocks this equals Korthikanti et al. 2022:
    sbh(34 + 5as/h) for t = 1; sbh(10 + 24/t + 5as/(ht)); sbh/t(34 + 5as/h) with SP;
    34sbh/t with SP + selective recompute; 2sbh (2sbh/t with SP) with full recompute.
    With flash_attention no s×s tensor is kept: the core keeps q, k, v, the context and one fp32
    log-sum-exp per head and query row (4·a·s·b bytes, split by t)."""
    gr = build_graph(model, micro_batch, seq_len or model.seq_len, dtype_bytes, flash_attention)
    stored = stored_tensors(gr, recompute_set(gr, recompute))
    total = 0.0
    for name in stored:
        split = tp if (name in TP_SPLIT_TENSORS or sequence_parallel) else 1
        total += gr.tensors[name].nbytes(gr.sizes) / split
    return total
