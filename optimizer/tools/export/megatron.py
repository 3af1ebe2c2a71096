"""Megatron-LM export: pretrain_gpt.py arguments for a mapping (megatron_args), notes where
Megatron-LM would run them unlike the mapping scored (megatron_caveats), and reading them back
(parse_megatron_args)."""

from __future__ import annotations

from typing import Any

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import SELECTIVE_RECOMPUTE
from models.schema import Workload

from ...model.evaluate import assemble, evaluate, normalized_choices, prepare
from ...model.mapping import Mapping, OpChoice
from ...model.tables import Tables
from ...peers.megatron import megatron_ops
from .common import _block_names, _check_no_offload


# Every flag below exists, with this spelling and meaning, in megatron/training/arguments.py of
# Megatron-LM core_v0.9.0 and core_v0.15.0 (https://github.com/NVIDIA/Megatron-LM).
# flag -> (key in parse_megatron_args' result, value type; bool = store_true flag)
MEGATRON_FLAGS: dict[str, tuple[str, type]] = {
    "--tensor-model-parallel-size": ("tp", int),
    "--pipeline-model-parallel-size": ("pp", int),
    "--num-layers-per-virtual-pipeline-stage": ("layers_per_virtual_stage", int),
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
    "--recompute-granularity": ("recompute_granularity", str),
    "--recompute-method": ("recompute_method", str),
    "--recompute-num-layers": ("recompute_num_layers", int),
    "--use-distributed-optimizer": ("distributed_optimizer", bool),
    "--attention-backend": ("attention_backend", str),
    "--bf16": ("bf16", bool),
    "--fp16": ("fp16", bool),
}


def _split_words(split: tuple[str | None, str | None], tp: int) -> str:
    a, b = split
    if a is None and b is None:
        return "replicated"
    if a == b:
        return f"split on {a!r} over all {tp} dies"
    return f"split {split}"


def _recompute_kind(tables: Tables, ch: dict[str, OpChoice]) -> str:
    """'none' | 'selective' | 'full' when the recompute set is exactly one of Megatron-LM's."""
    block = _block_names(tables)
    rec = {n for n in block if ch[n].recompute}
    if not rec:
        return "none"
    if rec == set(block):
        return "full"
    if rec == set(SELECTIVE_RECOMPUTE) & set(block):
        return "selective"
    return "partial"


def _check_megatron_splits(mapping: Mapping, work: Workload, tables: Tables,
                           ch: dict[str, OpChoice]) -> bool:
    """Raise ConfigError naming the first op Megatron-LM cannot split as mapped; return sequence-parallel."""
    tp, model = mapping.tp, work.model
    if tp > 1 and model.n_kv_heads % tp:
        raise ConfigError(f"ops.kv_proj: Megatron-LM needs the kv heads ({model.n_kv_heads}) divisible by the "
                          f"tensor-parallel size ({tp})")
    sp = tp > 1 and tuple(ch["ln1"].split) == ("s", "s")
    want = megatron_ops(work, tp, "none", sp)
    g = tables.graph
    ops = g.block + g.pre + g.post
    expected = {o.name: tuple(want[o.name].split) if o.name in want else (None, None) for o in ops}
    r, c = mapping.tp_shape
    for o in ops:  # a 2D split is the most telling reason: report it first
        a, b = ch[o.name].split
        if a is not None and b is not None and a != b:
            raise ConfigError(f"ops.{o.name}.split {(a, b)}: a 2D split on the {r}x{c} tensor group is not "
                              f"expressible in Megatron-LM (it has {o.name} {_split_words(expected[o.name], tp)})")
    mode = " with sequence parallelism" if sp else ""
    for o in ops:
        have = tuple(ch[o.name].split)
        if have != expected[o.name]:
            raise ConfigError(f"ops.{o.name}.split {have} is not expressible in Megatron-LM: tp={tp}{mode} has "
                              f"{o.name} {_split_words(expected[o.name], tp)}")
    return sp


def _check_megatron_expressible(mapping: Mapping, work: Workload, tables: Tables, ch: dict[str, OpChoice],
                                recompute: str) -> None:
    """Raise ConfigError for what Megatron-LM cannot express beyond the op splits: a recompute set
    other than none / selective / full, uneven stages, ZeRO stage 3, a ReLU MLP, fp8, the
    layer-wise schedule."""
    model = work.model
    if recompute == "partial":
        rec = [n for n in _block_names(tables) if ch[n].recompute]
        raise ConfigError(f"ops recompute {', '.join(rec)}: Megatron-LM recomputes no op, the attention core "
                          f"(selective: {', '.join(n for n in SELECTIVE_RECOMPUTE if n in ch)}) or every block op "
                          f"(full)")
    L, pp = model.layers, mapping.pp
    lps = tables.layers_per_stage
    if len(set(lps)) != 1:
        raise ConfigError(f"layers_per_stage {tuple(lps)}: Megatron-LM splits the {L} layers evenly over "
                          f"pp={pp} stages (num-layers must be divisible by pp)")
    if mapping.zero_stage == 3:
        raise ConfigError("zero_stage 3 (weights sharded over data parallelism) is not expressible in "
                          "Megatron-LM; its distributed optimizer is ZeRO stage 1-2")
    if model.activation == "relu":
        raise ConfigError("model.activation relu: Megatron-LM has no plain-ReLU MLP (gelu, --swiglu, --squared-relu)")
    if work.dtype == "fp8":
        raise ConfigError("dtype fp8: not exported (Megatron-LM's FP8 needs Transformer Engine recipes)")

    if mapping.schedule == "layerwise":
        raise ConfigError("schedule layerwise: Megatron-LM runs each micro-batch through all layers (1f1b or "
                          "interleaved); it has no layer-wise schedule")


def _model_args(work: Workload) -> list[str]:
    """The model's flags: positions, shape, query groups, head size, MLP, norm, position
    embedding, embedding tying, bias and dropout."""
    model = work.model
    args = [
        "--max-position-embeddings", str(max(work.seq_len, model.seq_len)),
        "--num-layers", str(model.layers),
        "--hidden-size", str(model.hidden),
        "--ffn-hidden-size", str(model.ffn_size),
        "--num-attention-heads", str(model.heads),
    ]
    if model.n_kv_heads != model.heads:
        args += ["--group-query-attention", "--num-query-groups", str(model.n_kv_heads)]
    if model.head_dim is not None:
        args += ["--kv-channels", str(model.head_dim)]
    if model.activation == "swiglu":
        args.append("--swiglu")
    if model.norm == "rmsnorm":
        args += ["--normalization", "RMSNorm"]
    if model.position == "rope":
        args += ["--position-embedding-type", "rope"]
    if not model.tied_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not model.bias:
        args.append("--disable-bias-linear")
    if not model.dropout:
        args += ["--attention-dropout", "0.0", "--hidden-dropout", "0.0"]
    return args


def megatron_args(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> list[str]:
    """Megatron-LM (pretrain_gpt.py) arguments for this mapping: parallel sizes, batch, model shape,
    recomputation, precision. Data parallelism is not an argument: Megatron-LM derives it as
    world size / (tp x pp), so launch mapping.devices processes. The vocabulary comes from the
    tokenizer. ZeRO stages 1 and 2 map to --use-distributed-optimizer (Megatron shards optimizer
    state and reduce-scatters gradients; its gradient buffer stays whole, as in stage 1).

    Raises ConfigError (one line, naming the op or field) for what Megatron-LM cannot express:
    a 2D or non-Megatron split of an op, a recompute set other than none / selective (the attention
    core, models.graph.SELECTIVE_RECOMPUTE) / full (every block op), uneven stages, ZeRO stage 3,
    DRAM offload, the interleaved schedule on one stage, the layer-wise schedule, kv heads not
    divisible by tp, a ReLU MLP, fp8.
    """
    mapping, _machine, tables = prepare(mapping, work, hw)
    _check_no_offload(mapping, "Megatron-LM")
    ch = normalized_choices(mapping, tables)
    sp = _check_megatron_splits(mapping, work, tables, ch)
    recompute = _recompute_kind(tables, ch)
    _check_megatron_expressible(mapping, work, tables, ch, recompute)
    pp, lps = mapping.pp, tables.layers_per_stage
    args = [
        "--tensor-model-parallel-size", str(mapping.tp),
        "--pipeline-model-parallel-size", str(pp),
    ]
    if mapping.virtual_stages > 1:
        if pp < 2:
            raise ConfigError("schedule interleaved: Megatron-LM's interleaved schedule needs pp >= 2")
        args += ["--num-layers-per-virtual-pipeline-stage", str(lps[0] // mapping.virtual_stages)]
    if sp:
        args.append("--sequence-parallel")
    args += [
        "--micro-batch-size", str(mapping.micro_batch),
        "--global-batch-size", str(work.global_batch),
        "--seq-length", str(work.seq_len),
    ]
    args += _model_args(work)
    if recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    elif recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    if mapping.zero_stage >= 1:
        args.append("--use-distributed-optimizer")
    if work.flash_attention:
        args += ["--attention-backend", "flash"]
    if work.dtype == "bf16":
        args.append("--bf16")
    elif work.dtype == "fp16":
        args.append("--fp16")
    return args


def megatron_caveats(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> list[str]:
    """One-line notes where Megatron-LM would run megatron_args' output unlike the mapping scored:
    ZeRO stage 2 runs as stage 1 (its distributed optimizer keeps whole gradient buffers) and bf16
    training keeps fp32 gradients (18 B/param, Mapping.fp32_grad_accumulation) — the note gives the
    peak memory and step time evaluate() finds for the mapping as Megatron-LM runs it; and older
    releases need the micro-batches divisible by pp to interleave. [] if none."""
    mapping, machine, tables = prepare(mapping, work, hw)
    notes = []
    if mapping.virtual_stages > 1 and tables.m % mapping.pp:
        notes.append(f"Megatron-LM before core 0.10 runs the interleaved schedule only when the micro-batches "
                     f"({tables.m}) are divisible by pp ({mapping.pp})")
    changes: dict[str, Any] = {}
    reasons = []
    if mapping.zero_stage == 2:
        changes["zero_stage"] = 1
        reasons.append("unsharded gradients (its distributed optimizer shards optimizer state only, ZeRO stage 1)")
    if work.dtype == "bf16" and not mapping.fp32_grad_accumulation:
        changes["fp32_grad_accumulation"] = True
        reasons.append("fp32 gradients (bf16 training accumulates and reduces them in fp32)")
    if changes:
        plan = assemble(mapping, work, machine, tables)
        as_run = evaluate(mapping.model_copy(update=changes), work, machine)
        fits = "fits" if as_run.fits else "does not fit"
        notes.append(f"Megatron-LM runs this mapping with {' and '.join(reasons)}: peak memory "
                     f"{as_run.peak_memory_bytes / 1e9:.1f} GB of {as_run.memory_capacity_bytes / 1e9:.0f} GB, "
                     f"{fits} (the plan: {plan.peak_memory_bytes / 1e9:.1f} GB); step {as_run.step_time_s:.4g} s "
                     f"(the plan: {plan.step_time_s:.4g} s)")
    return notes


def parse_megatron_args(args: list[str], world_size: int | None = None) -> dict[str, Any]:
    """Read back arguments written by megatron_args (Megatron-LM's defaults for absent flags).

    Returns tp, pp, virtual (model chunks per stage), micro_batch, global_batch, recompute
    ('none' | 'selective' | 'full'), sequence_parallel, distributed_optimizer, bf16, … and, given
    the world size (processes), dp and micro_batches as Megatron-LM derives them.
    """
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
    out["recompute"] = out.get("recompute_granularity") or "none"
    lpvs = out.get("layers_per_virtual_stage")
    out["virtual"] = 1
    if lpvs and "layers" in out:
        out["virtual"] = out["layers"] // out["pp"] // lpvs
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
