"""The Megatron-LM flags megatron_args writes (MEGATRON_FLAGS) and reading them back (parse_megatron_args)."""

from __future__ import annotations

from typing import Any

from hw.loader import ConfigError

from .layout import expand_layout

# Every flag below exists, with this spelling and meaning, in megatron/training/arguments.py of
# Megatron-LM core_v0.16.1 (https://github.com/NVIDIA/Megatron-LM; checked with its own parse_args
# and validate_args by benchmarks/validate_exports.py). Newer than core_v0.9.0: the pipeline layout,
# Megatron-FSDP (--use-megatron-fsdp, --data-parallel-sharding-strategy, --ckpt-format fsdp_dtensor)
# and --grad-reduce-in-bf16. The MoE flags: --num-experts and --moe-layer-freq (_add_moe_args);
# --moe-router-topk, --moe-ffn-hidden-size, --moe-shared-expert-intermediate-size (TransformerConfig
# fields, made flags by ArgumentGroupFactory).
# flag -> (key in parse_megatron_args' result, value type; bool = store_true flag)
MEGATRON_FLAGS: dict[str, tuple[str, type]] = {
    "--tensor-model-parallel-size": ("tp", int),
    "--pipeline-model-parallel-size": ("pp", int),
    "--num-layers-per-virtual-pipeline-stage": ("layers_per_virtual_stage", int),
    "--pipeline-model-parallel-layout": ("pipeline_layout", str),
    "--sequence-parallel": ("sequence_parallel", bool),
    "--micro-batch-size": ("micro_batch", int),
    "--global-batch-size": ("global_batch", int),
    "--seq-length": ("seq_len", int),
    "--max-position-embeddings": ("max_position_embeddings", int),
    "--num-layers": ("layers", int),
    "--hidden-size": ("hidden", int),
    "--ffn-hidden-size": ("ffn", int),
    "--num-attention-heads": ("heads", int),
    "--group-query-attention": ("group_query_attention", bool),
    "--num-query-groups": ("query_groups", int),
    "--kv-channels": ("kv_channels", int),
    "--swiglu": ("swiglu", bool),
    "--normalization": ("normalization", str),
    "--position-embedding-type": ("position_embedding_type", str),
    "--untie-embeddings-and-output-weights": ("untie_embeddings", bool),
    "--disable-bias-linear": ("disable_bias_linear", bool),
    "--attention-dropout": ("attention_dropout", float),
    "--hidden-dropout": ("hidden_dropout", float),
    "--tokenizer-type": ("tokenizer_type", str),
    "--vocab-size": ("vocab_size", int),
    "--make-vocab-size-divisible-by": ("vocab_divisible_by", int),
    "--mock-data": ("mock_data", bool),
    "--recompute-granularity": ("recompute_granularity", str),
    "--recompute-method": ("recompute_method", str),
    "--recompute-num-layers": ("recompute_num_layers", int),
    "--use-distributed-optimizer": ("distributed_optimizer", bool),
    "--use-megatron-fsdp": ("megatron_fsdp", bool),
    "--data-parallel-sharding-strategy": ("sharding_strategy", str),
    "--no-gradient-accumulation-fusion": ("no_gradient_accumulation_fusion", bool),
    "--ckpt-format": ("ckpt_format", str),
    "--accumulate-allreduce-grads-in-fp32": ("grads_in_fp32", bool),
    "--grad-reduce-in-bf16": ("grad_reduce_in_bf16", bool),
    "--attention-backend": ("attention_backend", str),
    "--num-experts": ("experts", int),
    "--moe-router-topk": ("experts_per_token", int),
    "--moe-ffn-hidden-size": ("expert_ffn", int),
    "--moe-shared-expert-intermediate-size": ("shared_expert_ffn", int),
    "--moe-layer-freq": ("moe_layer_freq", str),
    "--bf16": ("bf16", bool),
    "--fp16": ("fp16", bool),
}

# Megatron-FSDP's --data-parallel-sharding-strategy for each ZeRO stage it runs (arguments.py choices;
# "optim" = optimizer state only, which the distributed optimizer also does)
FSDP_STRATEGY = {2: "optim_grads", 3: "optim_grads_params"}


def _read(args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {key: False for key, typ in MEGATRON_FLAGS.values() if typ is bool}
    out.update(tp=1, pp=1)
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        if flag not in MEGATRON_FLAGS:
            raise ConfigError(f"unknown Megatron-LM argument {args[i]!r}")
        key, typ = MEGATRON_FLAGS[flag]
        if typ is bool:
            out[key] = True
            i += 1
            continue
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(args):
            value, i = args[i + 1], i + 2
        else:
            raise ConfigError(f"Megatron-LM argument {flag} needs a value")
        try:
            out[key] = typ(value)
        except ValueError:
            raise ConfigError(f"Megatron-LM argument {flag}: {value!r} is not a {typ.__name__}") from None
    return out


def _zero_stage(out: dict[str, Any]) -> int:
    if out["megatron_fsdp"]:
        stages = {v: k for k, v in FSDP_STRATEGY.items()}
        return stages.get(out.get("sharding_strategy", "no_shard"), 1 if out["distributed_optimizer"] else 0)
    return 1 if out["distributed_optimizer"] else 0


def parse_megatron_args(args: list[str], world_size: int | None = None) -> dict[str, Any]:
    """Read back arguments written by megatron_args (Megatron-LM's defaults for absent flags).

    Returns tp, pp, virtual (model chunks per stage), chunk_layers (transformer layers of each
    chunk in layout order, when a pipeline layout is given), micro_batch, global_batch, recompute
    ('none' | 'selective' | 'full'), zero_stage (0; 1 distributed optimizer; 2, 3 Megatron-FSDP),
    sequence_parallel, bf16, … and, given the world size (processes), dp and micro_batches as
    Megatron-LM derives them.
    """
    out = _read(args)
    out["recompute"] = out.get("recompute_granularity") or "none"
    out["zero_stage"] = _zero_stage(out)
    out["virtual"] = 1
    layout = out.get("pipeline_layout")
    if layout:
        chunks = expand_layout(layout)
        if len(chunks) % out["pp"]:
            raise ConfigError(f"--pipeline-model-parallel-layout: {len(chunks)} chunks, not a multiple of "
                              f"pp = {out['pp']}")
        out["virtual"] = len(chunks) // out["pp"]
        out["chunk_layers"] = tuple(c.count("t") for c in chunks)
    elif out.get("layers_per_virtual_stage") and "layers" in out:
        out["virtual"] = out["layers"] // out["pp"] // out["layers_per_virtual_stage"]
    if world_size is not None:
        if world_size % (out["tp"] * out["pp"]):
            raise ConfigError(f"world size {world_size} is not divisible by tp x pp = {out['tp'] * out['pp']}")
        dp = world_size // (out["tp"] * out["pp"])
        per_step = out.get("micro_batch", 1) * dp
        gb = out.get("global_batch", per_step)
        if gb % per_step:
            raise ConfigError(f"global batch {gb} is not divisible by micro-batch x dp = {per_step}")
        out["dp"], out["micro_batches"] = dp, gb // per_step
    return out
