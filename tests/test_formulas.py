"""Acceptance tests of the closed-form formulas the cost model must reproduce exactly.

- Step FLOPs: Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters
  Using Megatron-LM", SC21, eq. (3) (and its full-recompute variant in the same section).
- Activation bytes of one block: Korthikanti et al. 2022, "Reducing Activation Recomputation in
  Large Transformer Models", Table 2.
- Model-state bytes per device: Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
  Trillion Parameter Models", SC20, Fig. 1 (K = 12).

Exact means exact: every expected value is computed with integers / fractions.Fraction, and the
code's value (int or float) is converted to a Fraction without rounding before comparing.
Parameter counts (GPT-3 ≈ 174.6e9, Llama2-70B = 68,976,648,192) are asserted in
tests/test_model_presets.py and are not repeated here.
"""

from __future__ import annotations

from fractions import Fraction as F

import pytest

import hw
import models
import optimizer
from models.graph import build_graph
from optimizer import Mapping, baselines
from optimizer.model import cost

GPT_PRESETS = [
    "megatron-1.7b", "megatron-3.6b", "megatron-7.5b", "megatron-18.4b", "megatron-39.1b",
    "megatron-76.1b", "megatron-145.6b", "megatron-310.1b", "megatron-529.6b", "megatron-1t",
    "gpt3-175b", "t-nlg-17b", "mt-nlg-530b", "mega-gpt-2",
]


def exact(x) -> F:
    """The exact rational value of an int or float result (no rounding)."""
    return F(x)


# --- step FLOPs: Narayanan et al. SC21, eq. (3) -------------------------------------------------

def sc21_flops(B: int, s: int, l: int, h: int, V: int, recompute: bool) -> F:
    # SC21 eq. (3): F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) with activation recomputation;
    # without it the backward-only factor 3 replaces 4: 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)).
    if recompute:
        return 96 * B * s * l * h**2 * (1 + F(s, 6 * h) + F(V, 16 * l * h))
    return 72 * B * s * l * h**2 * (1 + F(s, 6 * h) + F(V, 12 * l * h))


@pytest.mark.parametrize("recompute", [False, True], ids=["no-recompute", "full-recompute"])
@pytest.mark.parametrize("name", GPT_PRESETS)
def test_step_flops_equals_sc21_eq3(name, recompute):
    model = models.load(name)
    assert model.ffn_size == 4 * model.hidden and model.heads * model.dim_per_head == model.hidden
    for B, s in ((1, model.seq_len), (1536, model.seq_len), (8, 512)):  # 1536: SC21 Table 1 GPT-3 batch
        got = models.step_flops(model, B, s, recompute=recompute)
        assert isinstance(got, int)
        assert exact(got) == sc21_flops(B, s, model.layers, model.hidden, model.vocab, recompute)


@pytest.mark.parametrize("name", ["megatron-1.7b", "gpt3-175b", "t-nlg-17b"])
def test_layer_forward_flops_sc21(name):
    # SC21 Sec. 5.1: one GPT layer's forward pass is 24·b·s·h² + 4·b·s²·h FLOPs.
    model = models.load(name)
    b, s, h = 2, model.seq_len, model.hidden
    graph = build_graph(model, b, s)
    assert sum(o.flops for o in graph.block) == 24 * b * s * h**2 + 4 * b * s**2 * h
    # logit layer: 2·b·s·h·V (the V/(12lh) term of eq. 3 after ×3 for forward + backward)
    assert sum(o.flops for o in graph.post) == 2 * b * s * h * model.vocab


# --- activations: Korthikanti et al. 2022, Table 2 ----------------------------------------------

def korthikanti(s: int, b: int, h: int, a: int, t: int, case: str) -> F:
    """Korthikanti et al. 2022 Table 2, bytes of activations per transformer layer (bf16)."""
    sbh = s * b * h
    if case == "none":  # no parallelism (t = 1)
        return sbh * (34 + F(5 * a * s, h))
    if case == "tp":  # tensor parallel (baseline)
        return sbh * (10 + F(24, t) + F(5 * a * s, h * t))
    if case == "tp+sp":  # tensor + sequence parallel
        return F(sbh, t) * (34 + F(5 * a * s, h))
    if case == "tp+selective":  # tensor parallel + selective activation recomputation
        return sbh * (10 + F(24, t))
    if case == "tp+sp+selective":  # tensor + sequence parallel + selective recomputation
        return F(34 * sbh, t)
    if case == "full":  # full activation recomputation (block input only)
        return F(2 * sbh)
    if case == "full+sp":  # full recomputation, block input split on the sequence
        return F(2 * sbh, t)
    raise AssertionError(case)


CASES = {  # case -> (sequence_parallel, recompute)
    "tp": (False, "none"), "tp+sp": (True, "none"), "tp+selective": (False, "selective"),
    "tp+sp+selective": (True, "selective"), "full": (False, "full"), "full+sp": (True, "full"),
}
COMBOS = [  # (model, micro_batch, tp): t divides the heads
    ("megatron-1.7b", 1, 1), ("megatron-1.7b", 4, 8), ("megatron-18.4b", 2, 4),
    ("gpt3-175b", 1, 8), ("gpt3-175b", 2, 2), ("t-nlg-17b", 4, 4), ("mt-nlg-530b", 1, 8),
    ("mega-gpt-2", 8, 2), ("megatron-1t", 1, 8),
]


@pytest.mark.parametrize("name,b,t", COMBOS, ids=[f"{n}-b{b}-t{t}" for n, b, t in COMBOS])
def test_block_activation_bytes_korthikanti_table2(name, b, t):
    model = models.load(name)
    s, h, a = model.seq_len, model.hidden, model.heads
    assert a % t == 0
    if t == 1:
        got = models.block_activation_bytes(model, b, s, tp=1)
        assert exact(got) == korthikanti(s, b, h, a, 1, "none")
    for case, (sp, rec) in CASES.items():
        got = models.block_activation_bytes(model, b, s, tp=t, sequence_parallel=sp, recompute=rec)
        assert exact(got) == korthikanti(s, b, h, a, t, case), case
    # t = 1 collapses the tensor-parallel formulas onto the no-parallelism one (sanity of the table)
    assert korthikanti(s, b, h, a, 1, "tp") == korthikanti(s, b, h, a, 1, "none") == \
        korthikanti(s, b, h, a, 1, "tp+sp")


# --- a Llama-style block: rmsnorm, SwiGLU, GQA, no dropout -----------------------------------------

GQA_TOY = models.ModelConfig(
    name="gqa-toy", layers=2, hidden=512, heads=8, kv_heads=2, ffn=1376, vocab=1000,
    activation="swiglu", norm="rmsnorm", dropout=False, bias=False, position="rope", seq_len=256,
)


def llama_block_bytes(s, b, h, a, g, d, f, t=1, sp=False, recompute="none") -> F:
    """Bytes one Llama-style block keeps for backward (bf16 = 2 B), derived op by op in the
    manner of Korthikanti et al. 2022 Sec. 4.1:
      rmsnorm 1   saves its input, the block input x0 ........................ 2sbh   (replicated)
      q/kv proj   save their input, the norm output (shared) ................. 2sbh   (replicated)
      q·kᵀ        saves q (2·s·b·a·d = 2sbh) and k, v (2·2·s·b·g·d) ........... split by t
      softmax     saves its output (no dropout follows) ...................... 2·a·s²·b, split by t
      attn·v      saves the softmax output and v (both counted above)
      out proj    saves the attention context ................................ 2sbh,  split by t
      residual    nothing; rmsnorm 2 saves its input, the residual x1 ........ 2sbh   (replicated)
      gate/up     save their input, the norm output .......................... 2sbh   (replicated)
      SwiGLU      saves gate and up .......................................... 2·2·sbf, split by t
      down proj   saves the activation output ................................ 2sbf,  split by t
    Megatron tensor parallelism splits heads (a, g) and ffn (f) t ways; sequence parallelism also
    splits the replicated sbh tensors t ways. Selective recomputation (q·kᵀ and softmax) drops the
    2·a·s²·b softmax output; full recomputation keeps only the block input."""
    sbh = s * b * h
    replicated = [2 * sbh, 2 * sbh, 2 * sbh, 2 * sbh]  # x0, y1, x1, y2
    split = [2 * s * b * a * d, 2 * 2 * s * b * g * d, 2 * sbh, 2 * 2 * s * b * f, 2 * s * b * f]  # q, kv, ctx, u, act
    softmax = 2 * a * s * s * b
    if recompute == "full":
        return F(2 * sbh, t if sp else 1)
    if recompute == "none":
        split.append(softmax)
    return F(sum(replicated), t if sp else 1) + F(sum(split), t)


@pytest.mark.parametrize("t", [1, 2])
def test_llama_style_gqa_block_hand_computed(t):
    m = GQA_TOY
    s, b = 256, 2
    h, a, g, d, f = 512, 8, 2, 64, 1376
    assert (m.hidden, m.heads, m.n_kv_heads, m.dim_per_head, m.ffn_size) == (h, a, g, d, f)
    # the hand count with no parallelism, term by term (bytes):
    sbh, sbf = s * b * h, s * b * f
    by_hand = (2 * sbh + 2 * sbh + 2 * sbh + 2 * 2 * s * b * g * d + 2 * a * s * s * b + 2 * sbh
               + 2 * sbh + 2 * sbh + 2 * 2 * sbf + 2 * sbf)
    assert by_hand == 12 * sbh + 4 * s * b * g * d + 2 * a * s * s * b + 6 * sbf == 9_732_096
    assert exact(models.block_activation_bytes(m, b, s)) == by_hand
    for sp in (False, True):
        for rec in ("none", "selective", "full"):
            got = models.block_activation_bytes(m, b, s, tp=t, sequence_parallel=sp, recompute=rec)
            assert exact(got) == llama_block_bytes(s, b, h, a, g, d, f, t, sp, rec), (sp, rec)


def test_llama2_70b_block_megatron_split():
    # Llama2-70B (Meta config.json: h 8192, 64 heads, 8 KV heads, ffn 28672) at s = 4096, t = 8
    m = models.load("llama2-70b")
    s, b, t = 4096, 1, 8
    h, a, g, d, f = 8192, 64, 8, 128, 28672
    assert (m.hidden, m.heads, m.n_kv_heads, m.dim_per_head, m.ffn_size, m.dropout) == (h, a, g, d, f, False)
    for sp in (False, True):
        for rec in ("none", "selective", "full"):
            got = models.block_activation_bytes(m, b, s, tp=t, sequence_parallel=sp, recompute=rec)
            assert exact(got) == llama_block_bytes(s, b, h, a, g, d, f, t, sp, rec), (sp, rec)


# --- ZeRO model states: Rajbhandari et al. SC20, Fig. 1 ------------------------------------------

@pytest.mark.parametrize("psi,N", [(7_500_000_000, 64), (1_000_000, 8), (68_976_648_192, 16), (123, 3)])
def test_zero_state_bytes_fig1(psi, N):
    K = 12  # ZeRO Fig. 1: K = 12 bytes/param of fp32 Adam state (master weights, momentum, variance)
    expected = {
        0: (2 + 2 + K) * F(psi),               # baseline: (2 + 2 + K)Ψ
        1: 2 * F(psi) + 2 * F(psi) + F(K * psi, N),  # P_os: 2Ψ + 2Ψ + KΨ/N
        2: 2 * F(psi) + F((2 + K) * psi, N),   # P_os+g: 2Ψ + (2 + K)Ψ/N
        3: F((2 + 2 + K) * psi, N),            # P_os+g+p: (2 + 2 + K)Ψ/N
    }
    for stage, want in expected.items():
        parts = cost.zero_state_bytes(psi, N, stage)
        assert set(parts) == {"weights", "grads", "optimizer"}
        assert sum(exact(v) for v in parts.values()) == want, stage


def test_zero_fig1_printed_values():
    # ZeRO Fig. 1 example: Ψ = 7.5B, N_d = 64, K = 12 -> 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per device
    psi, N = 7.5e9, 64
    printed = {0: 120e9, 1: 31.4e9, 2: 16.6e9, 3: 1.9e9}
    for stage, gb in printed.items():
        total = sum(cost.zero_state_bytes(psi, N, stage).values())
        assert abs(total - gb) <= 0.05e9, stage  # the figure rounds to 0.1 GB


def test_megatron_accounting_18_bytes_per_param():
    # Megatron-LM keeps an fp32 gradient buffer: 2 (bf16 weights) + 4 (fp32 grads) + 12 (Adam) = 18 B/param
    psi = 1_234_567
    parts = cost.zero_state_bytes(psi, 8, 0, fp32_grads=True)
    assert (exact(parts["weights"]), exact(parts["grads"]), exact(parts["optimizer"])) == (2 * psi, 4 * psi, 12 * psi)
    assert sum(exact(v) for v in parts.values()) == 18 * psi


@pytest.mark.parametrize("name", ["megatron-1.7b", "llama2-7b"])  # tied (GPT) and untied (Llama) embeddings
@pytest.mark.parametrize("dp", [1, 4])
def test_evaluate_megatron_baseline_18_bytes_per_param(name, dp):
    # tp = pp = 1: every die holds the whole model, so its model state is 18 × parameter_count
    model = models.load(name)
    work = models.Workload(model=model, global_batch=4 * dp, seq_len=512)
    mapping = baselines.megatron(work, hw.load("dgx-a100"), tp=1, pp=1, dp=dp, micro_batch=1, recompute="full")
    rep = optimizer.evaluate(mapping, work, hw.load("dgx-a100"))
    P = models.parameter_count(model)
    assert exact(rep.memory["weights"]) + exact(rep.memory["grads"]) + exact(rep.memory["optimizer"]) == 18 * P
    assert exact(rep.memory["weights"]) == 2 * P


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_evaluate_zero_stages_match_fig1(stage):
    # ZeRO (16 B/param) data parallelism over N = 4 whole-model replicas: the per-die state evaluate()
    # reports is the Fig. 1 formula for that stage
    model = models.load("megatron-1.7b")
    work = models.Workload(model=model, global_batch=8, seq_len=256)
    N, K, psi = 4, 12, models.parameter_count(model)
    rep = optimizer.evaluate(Mapping(dp=N, zero_stage=stage), work, hw.load("dgx-a100"))
    got = exact(rep.memory["weights"]) + exact(rep.memory["grads"]) + exact(rep.memory["optimizer"])
    want = {0: (4 + K) * F(psi), 1: 4 * F(psi) + F(K * psi, N), 2: 2 * F(psi) + F((2 + K) * psi, N),
            3: F((4 + K) * psi, N)}[stage]
    assert got == want


@pytest.mark.parametrize("offload", [(), ("activations",)])
def test_stages_of_one_kind_scored_once_equal_each_stage_scored(offload):
    """evaluate scores each kind of stage (layers, first?, last?) once and gives the others their own
    micro-batches in flight: every field equals scoring every stage on its own."""
    from optimizer.model.evaluate import normalized_choices, prepare
    from optimizer.model.stage import score_stage, score_stages

    work = models.Workload(model=models.load("llama2-7b"), global_batch=256, seq_len=1024)
    machine = hw.load("hecaton-chiplet")
    mapping = baselines.megatron(work, machine, tp=4, pp=4, dp=4, micro_batch=1, recompute="none",
                                 virtual_stages=2, offload=offload)
    mapping, machine, tables = prepare(mapping, work, machine)
    ch = normalized_choices(mapping, tables)
    once = score_stages(tables, ch, mapping.offload)
    each = [score_stage(tables, ch, s, n, mapping.offload) for s, n in enumerate(tables.layers_per_stage)]
    assert once == each
    kept = "dram" if offload else "memory"
    assert len({getattr(st, kept)["activations"] for st in once}) == 4  # the stages do differ there
