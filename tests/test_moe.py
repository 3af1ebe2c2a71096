"""Mixture-of-experts models: fields, presets, Hugging Face import, counts, the MoE block, evaluate()."""

from __future__ import annotations

import json

import pytest

import hw
import models
from hw.loader import ConfigError
from models import Workload, active_parameter_count, forward_flops_per_token, parameter_count, step_flops
from models.graph import build_graph
from models.loader import build_model
import optimizer
from optimizer.model.evaluate import evaluate
from optimizer.search.space import OuterPoint, Space
from optimizer.model.mapping import Mapping, OpChoice
from optimizer.tools.export import megatron_args, parse_megatron_args

# The fields the importer reads, as in mistralai/Mixtral-8x7B-v0.1 and
# deepseek-ai/deepseek-moe-16b-base config.json.
MIXTRAL_HF = {
    "model_type": "mixtral", "_name_or_path": "mistralai/Mixtral-8x7B-v0.1", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000, "max_position_embeddings": 32768,
    "tie_word_embeddings": False, "hidden_act": "silu",
}
DEEPSEEK_HF = {
    "model_type": "deepseek", "_name_or_path": "deepseek-ai/deepseek-moe-16b-base", "hidden_size": 2048,
    "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2,
    "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1, "vocab_size": 102400,
    "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu",
}
MOE_FIELDS = ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "experts", "experts_per_token",
              "expert_ffn", "shared_experts", "moe_layer_freq", "first_dense_layers", "activation", "norm", "bias")


def _billions(n: float) -> float:
    return round(n / 1e9, 1)


def test_mixtral_parameter_counts_equal_the_hand_derivation_and_the_published_figures():
    """Mixtral-8x7B (h 4096, f 14336, 32 layers, 8 KV heads of 128, E 8, k 2, V 32000, untied):
    per layer 2h² (q, o) + 2·h·1024 (k, v) + E·3hf (SwiGLU experts) + hE (router) + 2h (norms);
    total 32·that + 2Vh + h (final norm). Active: the same with k = 2 experts instead of E = 8.
    Published (Jiang et al. 2024): 46.7B total, 12.9B active."""
    m = models.load("mixtral-8x7b")
    h, f, v, kv = 4096, 14336, 32000, 8 * 128
    total = 32 * (2 * h * h + 2 * h * kv + 8 * 3 * h * f + 8 * h + 2 * h) + 2 * v * h + h
    active = 32 * (2 * h * h + 2 * h * kv + 2 * 3 * h * f + 8 * h + 2 * h) + 2 * v * h + h
    assert parameter_count(m) == total == 46_702_792_704
    assert active_parameter_count(m) == active
    assert (_billions(total), _billions(active)) == (46.7, 12.9)


def test_deepseek_moe_parameter_counts_equal_the_hand_derivation_and_the_published_figures():
    """DeepSeekMoE-16B (h 2048, 28 layers, MHA, dense FFN 10944 in layer 0, then 27 MoE layers of
    64 routed + 2 shared experts of 1408, top-6, V 102400, untied): 28·(4h² + 2h) + 3h·10944
    + 27·(66·3h·1408 + 64h) + 2Vh + h. Active: 27 MoE layers use 6 + 2 experts.
    Published (Dai et al. 2024): 16.4B total, 2.8B activated."""
    m = models.load("deepseek-moe-16b")
    h, e = 2048, 3 * 2048 * 1408  # e: weights of one SwiGLU expert
    common = 28 * (4 * h * h + 2 * h) + 3 * h * 10944 + 27 * 64 * h + 2 * 102400 * h + h
    assert m.moe_layers == 27
    assert parameter_count(m) == common + 27 * 66 * e
    assert active_parameter_count(m) == common + 27 * 8 * e
    assert (_billions(parameter_count(m)), _billions(active_parameter_count(m))) == (16.4, 2.8)


def test_dense_models_have_all_parameters_active():
    m = models.load("llama2-7b")
    assert active_parameter_count(m) == parameter_count(m) == 6_738_415_616


@pytest.mark.parametrize("s", [4096, 32768])
def test_mixtral_flops_per_token_equal_the_hand_derivation(s):
    """Forward matmul FLOPs per token at context s (2 per multiply-add; the s×s scores counted in
    full, as SC21 does): per layer 2·(2h² + 2·h·1024) projections + 4sh (QKᵀ and attention·V)
    + 2hE router + 2·k·3hf top-2 experts; plus 2hV the head. Training: 3x per token."""
    m = models.load("mixtral-8x7b")
    h, f, v = 4096, 14336, 32000
    layer = 2 * (2 * h * h + 2 * h * 1024) + 4 * s * h + 2 * h * 8 + 2 * 2 * 3 * h * f
    assert forward_flops_per_token(m, s) == 32 * layer + 2 * h * v
    assert step_flops(m, 16, s) == 3 * 16 * s * (32 * layer + 2 * h * v)


def test_deepseek_moe_flops_per_token_equal_the_hand_derivation():
    """Per token at s = 4096: 28·(8h² + 4sh) attention, 6h·10944 the dense layer's FFN, 27·(2h·64
    router + 2·6·3h·1408 routed + 2·3h·2816 shared), 2hV head."""
    m = models.load("deepseek-moe-16b")
    h, s = 2048, 4096
    expected = 28 * (8 * h * h + 4 * s * h) + 6 * h * 10944 + 27 * (2 * h * 64 + 2 * 6 * 3 * h * 1408
                                                                    + 2 * 3 * h * 2816) + 2 * h * 102400
    assert forward_flops_per_token(m, s) == expected


def test_moe_block_has_router_dispatch_and_combine_sized_by_top_k():
    m = models.load("mixtral-8x7b")
    g = build_graph(m, 2, 4096)
    names = [o.name for o in g.block]
    assert names[names.index("ln2"):] == ["ln2", "router", "route", "dispatch", "fc1", "act", "fc2", "combine", "add2"]
    tokens, h, f = 2 * 4096, 4096, 14336
    assert g.op("router").flops == 2 * tokens * h * 8 and g.op("router").params == h * 8
    assert g.op("fc1").flops == 2 * 2 * tokens * 2 * h * f  # SwiGLU gate + up, top-2 rows per token
    assert g.op("fc1").params == 8 * 2 * h * f  # every expert's weights
    assert g.tensors["xe"].numel(g.sizes) == 2 * tokens * h  # each token dispatched to 2 experts


def test_load_imbalance_scales_the_experts_compute_but_not_the_model_flops():
    m = models.load("mixtral-8x7b")
    skew = m.model_copy(update={"expert_load_imbalance": 1.25})
    assert build_graph(skew, 1, 4096).op("fc2").flops == 1.25 * build_graph(m, 1, 4096).op("fc2").flops
    assert step_flops(skew, 4, 4096) == step_flops(m, 4, 4096)


def test_dense_block_is_unchanged():
    g = build_graph(models.load("llama2-7b"), 1, 4096)
    assert [o.name for o in g.block] == ["ln1", "q_proj", "kv_proj", "qk", "softmax", "av", "out_proj", "add1",
                                         "ln2", "fc1", "act", "fc2", "add2"]
    assert "e" not in g.sizes


def test_deepseek_shared_experts_form_one_ffn_beside_the_routed_ones():
    g = build_graph(models.load("deepseek-moe-16b"), 1, 4096)
    assert g.sizes["f"] == 1408 and g.sizes["r"] == 2 * 1408 and g.sizes["e"] == 64
    assert g.op("shared_fc1").params == 2 * 2048 * 2816
    assert [x.tensor for x in g.op("combine").inputs] == ["ye", "gates", "ms"]
    assert "router" not in {o.name for o in build_graph(models.load("deepseek-moe-16b"), 1, 4096, moe=False).block}


@pytest.mark.parametrize("fields, named", [
    ({"experts": 8}, "experts_per_token"),
    ({"experts": 8, "experts_per_token": 9}, "experts_per_token"),
    ({"experts_per_token": 2}, "experts_per_token"),
    ({"shared_experts": 2}, "shared_experts"),
    ({"experts": 8, "experts_per_token": 2, "first_dense_layers": 5}, "first_dense_layers"),
    ({"experts": -1}, "experts"),
    ({"experts": 8, "experts_per_token": 2, "expert_load_imbalance": 0.5}, "expert_load_imbalance"),
])
def test_bad_expert_fields_name_the_field(fields, named):
    with pytest.raises(ConfigError, match=named):
        build_model({"layers": 4, "hidden": 64, "heads": 4, "vocab": 100, **fields})


@pytest.mark.parametrize("cfg, preset", [(MIXTRAL_HF, "mixtral-8x7b"), (DEEPSEEK_HF, "deepseek-moe-16b")])
def test_hugging_face_import_reads_the_expert_fields(tmp_path, cfg, preset):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    imported, shipped = models.load(path), models.load(preset)
    assert {k: getattr(imported, k) for k in MOE_FIELDS} == {k: getattr(shipped, k) for k in MOE_FIELDS}
    assert parameter_count(imported) == parameter_count(shipped)


def test_hugging_face_dense_deepseek_config_stays_dense(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**DEEPSEEK_HF, "n_routed_experts": None}))
    assert models.load(path).experts == 0


def test_evaluate_runs_mixtral_on_dgx_h100_storing_every_experts_weights():
    """Mixtral on 8 DGX H100 nodes, batch 1024, Megatron-style: TP 8 in a node (heads, kv heads,
    expert FFN split), PP 4, DP 2. Without expert parallelism each GPU holds all 8 experts of its
    layers: its bf16 weights are 2 B x parameter_count / (TP x PP) (replicated norms and router,
    and the first/last stage's embedding or head, within 2%), not the 12.9B active parameters'."""
    m = models.load("mixtral-8x7b")
    work = Workload(model=m, global_batch=1024, seq_len=4096, flash_attention=True)
    splits = {"q_proj": "a", "kv_proj": "g", "attention": "a", "out_proj": "a", "fc1": "f", "act": "f",
              "fc2": "f", "embedding": "v", "lm_head": "v", "loss": "v"}
    mapping = Mapping(pp=4, dp=2, tp_shape=(1, 8), zero_stage=1, ops={k: OpChoice(split=(v, v)) for k, v in splits.items()})
    report = evaluate(mapping, work, hw.load("dgx-h100", nodes=8))
    assert report.devices == 64 and report.fits
    assert report.memory["weights"] == pytest.approx(2 * parameter_count(m) / 32, rel=0.02)
    assert report.memory["weights"] > 3 * 2 * active_parameter_count(m) / 32
    assert 0 < report.mfu < 1


def test_megatron_export_carries_the_expert_flags():
    """Megatron-LM's MoE flags: --num-experts E, --moe-router-topk k, --moe-ffn-hidden-size f_e,
    --moe-shared-expert-intermediate-size n_s·f_e, and --moe-layer-freq as a 0/1 list when the
    first layers stay dense (DeepSeekMoE: [0, 1 × 27])."""
    node = hw.load("dgx-h100", nodes=1)
    mapping = Mapping(pp=1, dp=8, tp_shape=(1, 1))
    mixtral = parse_megatron_args(megatron_args(mapping, Workload(model=models.load("mixtral-8x7b"), global_batch=8,
                                                                  seq_len=4096), node))
    assert (mixtral["experts"], mixtral["experts_per_token"], mixtral["expert_ffn"]) == (8, 2, 14336)
    assert "moe_layer_freq" not in mixtral and "shared_expert_ffn" not in mixtral
    deepseek = parse_megatron_args(megatron_args(mapping, Workload(model=models.load("deepseek-moe-16b"),
                                                                   global_batch=8), node))
    assert (deepseek["experts"], deepseek["experts_per_token"], deepseek["expert_ffn"], deepseek["ffn"]) == \
        (64, 6, 1408, 10944)
    assert deepseek["shared_expert_ffn"] == 2816
    assert deepseek["moe_layer_freq"] == "[" + ",".join(["0"] + ["1"] * 27) + "]"
    dense = parse_megatron_args(megatron_args(mapping, Workload(model=models.load("llama2-7b"), global_batch=8), node))
    assert "experts" not in dense


def test_solver_spreads_the_experts_over_the_group_when_they_do_not_fit_otherwise():
    """A toy MoE whose experts only a split on e divides: h = f = 75 are odd, heads 3, dp = 1 (no
    ZeRO sharding), no DRAM tier. Its expert state, 2 layers x 4 experts x 3·h·f weights x 16 B
    (ZeRO 0: 2 + 2 + 12 B per parameter) = 2,160,000 B, exceeds a 1.5 MB die whatever else is split;
    on a 1x4 group the solver spreads the experts over the 4 dies (expert parallelism 4: 540,000 B
    each) and fits."""
    m = models.ModelConfig(name="toy-moe", layers=2, hidden=75, heads=3, vocab=64, seq_len=64, activation="swiglu",
                           norm="rmsnorm", dropout=False, bias=False, position="rope", experts=4, experts_per_token=1,
                           expert_ffn=75)
    work = Workload(model=m, global_batch=1, seq_len=64)
    space = Space("full", points=(OuterPoint(1, 1, (1, 4), 1, 0, 1),), offload=False)
    sol = optimizer.solve(work, hw.load("tmac-wafer", rows=1, cols=4, sram_bytes=1.5e6), space=space)
    assert sol.status == "optimal" and sol.report.fits
    assert {sol.mapping.ops[name].split for name in ("fc1", "act", "fc2")} == {("e", "e")}


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["dgx-h100", "tmac-wafer"])
def test_solver_proves_a_mixtral_mapping_optimal_and_evaluate_agrees(machine):
    """Issue acceptance: Mixtral-8x7B, batch 1024 of 4096 tokens (FlashAttention), on 8 DGX H100
    nodes and on the TMAC wafer: proven optimal within 60 s, evaluate() equal to the objective."""
    from optimizer import solve

    work = Workload(model=models.load("mixtral-8x7b"), global_batch=1024, seq_len=4096, flash_attention=True)
    machine_hw = hw.load(machine, nodes=8) if machine == "dgx-h100" else hw.load(machine)
    sol = solve(work, machine_hw, time_limit_s=60, threads=2)
    assert sol.status == "optimal" and sol.gap <= 1e-9
    assert evaluate(sol.mapping, work, machine_hw).step_time_s == pytest.approx(sol.objective_s, rel=1e-6)
