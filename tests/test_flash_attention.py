"""FlashAttention (Dao et al. 2022) as the fused attention core: no s×s tensor is stored, the
backward recomputes the scores (2.5x the forward FLOPs), and the unfused figures stay exact."""

from __future__ import annotations

import pytest

import hw
import models
import optimizer
from models.graph import CAUSAL_SHARE, FLASH_BACKWARD_FACTOR, LSE_BYTES, build_graph


def _llama_fa_bytes(m: models.ModelConfig, b: int, s: int) -> float:
    """Hand derivation, one Llama block (RMSNorm, SwiGLU, no dropout, GQA), bf16, no parallelism.
    Kept for backward: the block input x0 and ln1 output y1 (2sbh each), q (2sbh), k and v
    (2·2·s·b·g·d), the context (2sbh), the log-sum-exp (4·a·s·b, fp32), the residual x1 and ln2
    output y2 (2sbh each), gate and up (2·2·s·b·f) and the activation (2·s·b·f)."""
    h, f, a, g, d = m.hidden, m.ffn_size, m.heads, m.n_kv_heads, m.dim_per_head
    return s * b * (2 * h + 2 * h + 2 * h + 4 * g * d + 2 * h + 2 * h + 2 * h + 4 * f + 2 * f) + LSE_BYTES * a * s * b


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b"])
def test_llama_block_with_flash_attention_matches_the_hand_derivation(name):
    m = models.load(name)
    for s in (1024, 2048, 4096):
        assert models.block_activation_bytes(m, 2, s, flash_attention=True) == _llama_fa_bytes(m, 2, s)


def test_flash_attention_bytes_have_no_quadratic_term():
    m = models.load("llama2-7b")
    per_token = [models.block_activation_bytes(m, 1, s, flash_attention=True) / s for s in (512, 2048, 8192)]
    assert per_token[0] == per_token[1] == per_token[2]
    unfused = [models.block_activation_bytes(m, 1, s) / s for s in (512, 2048)]
    assert unfused[1] > unfused[0]  # the s×s scores grow with s


def test_gpt_block_with_flash_attention_is_selective_recompute_plus_the_log_sum_exp():
    """Korthikanti's SP-free selective form keeps the same tensors but the s×s ones; FlashAttention adds lse."""
    m = models.load("megatron-18.4b")
    b, s, t = 2, 2048, 8
    sel = models.block_activation_bytes(m, b, s, tp=t, recompute="selective")
    fa = models.block_activation_bytes(m, b, s, tp=t, flash_attention=True)
    assert fa == pytest.approx(sel + LSE_BYTES * m.heads * s * b / t)
    h = m.hidden
    assert sel == pytest.approx(s * b * h * (10 + 24 / t))  # Korthikanti et al. 2022, TP + selective


def test_flash_attention_off_keeps_korthikanti_exact():
    m = models.load("megatron-18.4b")
    b, s, h, a = 1, 2048, m.hidden, m.heads
    assert models.block_activation_bytes(m, b, s) == s * b * h * (34 + 5 * a * s / h)
    assert models.block_activation_bytes(m, b, s, flash_attention=False, tp=8) == \
        pytest.approx(s * b * h * (10 + 24 / 8 + 5 * a * s / (h * 8)))


def test_fused_attention_op_replaces_the_core_and_runs_its_causal_half():
    m = models.load("llama2-7b")
    plain, fused = build_graph(m, 1, 2048), build_graph(m, 1, 2048, flash_attention=True)
    core = sum(o.flops for o in plain.block if o.name in ("qk", "av"))
    att = fused.op("attention")
    assert att.flops == core * CAUSAL_SHARE and att.backward_factor == FLASH_BACKWARD_FACTOR  # causal tiles only
    assert {o.name for o in fused.block}.isdisjoint({"qk", "softmax", "av"})
    assert models.step_flops(m, 8, 2048) == sum(o.flops for o in plain.block) * 3 * m.layers * 8 + \
        sum(o.flops for o in plain.post) * 3 * 8


def test_flash_attention_lowers_memory_and_time_of_a_megatron_mapping():
    m = models.load("llama2-7b")
    hardware = hw.load("dgx-a100", nodes=1)
    reps = {}
    for fa in (False, True):
        work = models.Workload(model=m, global_batch=16, seq_len=4096, flash_attention=fa)
        mp = optimizer.baselines.megatron(work, hardware, tp=8, dp=1, micro_batch=1, recompute="none")
        reps[fa] = optimizer.evaluate(mp, work, hardware)
    assert reps[True].memory["activations"] < reps[False].memory["activations"]
    assert reps[True].step_time_s < reps[False].step_time_s  # no s×s traffic through HBM
