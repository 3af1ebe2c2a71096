"""Megatron-LM export: pretrain_gpt.py arguments for a mapping (megatron_args) and notes where
Megatron-LM would run them unlike the mapping scored (megatron_caveats)."""

from __future__ import annotations

import math

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import SELECTIVE_RECOMPUTE
from models.schema import Workload

from ...model.evaluate import normalized_choices, prepare
from ...model.mapping import Mapping, OpChoice, chunk_layers
from ...model.tables import Tables
from ...peers.megatron import megatron_ops
from .common import _block_names, _check_no_offload, _recompute_kind
from .layout import pipeline_layout
from .megatron_flags import FSDP_STRATEGY


def _split_words(split: tuple[str | None, str | None], tp: int) -> str:
    a, b = split
    if a is None and b is None:
        return "replicated"
    if a == b:
        return f"split on {a!r} over all {tp} dies"
    return f"split {split}"


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
    other than none / selective / full, a ReLU MLP, fp8, the layer-wise schedule, interleaving on
    one stage."""
    if recompute == "partial":
        rec = [n for n in _block_names(tables) if ch[n].recompute]
        raise ConfigError(f"ops recompute {', '.join(rec)}: Megatron-LM recomputes no op, the attention core "
                          f"(selective: {', '.join(n for n in SELECTIVE_RECOMPUTE if n in ch)}) or every block op "
                          f"(full)")
    if work.model.activation == "relu":
        raise ConfigError("model.activation relu: Megatron-LM has no plain-ReLU MLP (gelu, --swiglu, --squared-relu)")
    if work.dtype == "fp8":
        raise ConfigError("dtype fp8: not exported (Megatron-LM's FP8 needs Transformer Engine recipes)")
    if mapping.schedule == "layerwise":
        raise ConfigError("schedule layerwise: Megatron-LM runs each micro-batch through all layers (1f1b or "
                          "interleaved); it has no layer-wise schedule")
    if mapping.virtual_stages > 1 and mapping.pp < 2:
        raise ConfigError("schedule interleaved: Megatron-LM's interleaved schedule needs pp >= 2")


def _pipeline_args(mapping: Mapping, work: Workload) -> list[str]:
    """Sizes, and how the layers are dealt to the stages: Megatron-LM's even split (num-layers / pp,
    and / virtual stages) when every model chunk holds the same layers, else the chunks as
    --pipeline-model-parallel-layout states them (the embedding with the first, the output layer
    and loss with the last)."""
    args = ["--tensor-model-parallel-size", str(mapping.tp), "--pipeline-model-parallel-size", str(mapping.pp)]
    if mapping.pp == 1:
        return args
    chunks = chunk_layers(mapping, work.model.layers)
    if len(set(chunks)) > 1:
        return args + ["--pipeline-model-parallel-layout", pipeline_layout(chunks)]
    if mapping.virtual_stages > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", str(chunks[0])]
    return args


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
    return args + _moe_args(model)


def _moe_args(model) -> list[str]:
    """A MoE model's flags: experts, top-k, expert and shared-expert FFN sizes, and which layers are
    MoE (--moe-layer-freq as Megatron-LM's 0/1 list pattern when not every layer is)."""
    if not model.moe_layers:
        return []
    args = ["--num-experts", str(model.experts), "--moe-router-topk", str(model.experts_per_token),
            "--moe-ffn-hidden-size", str(model.expert_ffn_size)]
    if model.shared_experts:
        args += ["--moe-shared-expert-intermediate-size", str(model.shared_experts * model.expert_ffn_size)]
    if model.moe_layers < model.layers:
        pattern = ",".join(str(int(model.is_moe_layer(i))) for i in range(model.layers))
        args += ["--moe-layer-freq", f"[{pattern}]"]
    return args


def vocab_padding(vocab: int, tp: int) -> tuple[int, int]:
    """(--make-vocab-size-divisible-by d, the padded vocabulary Megatron-LM builds) for a model
    vocabulary V: Megatron-LM pads the tokenizer's vocabulary up to a multiple of d x tp
    (tokenizer._vocab_size_with_padding); d = gcd(V / tp, 128) makes that V itself whenever tp
    divides V (128 is Megatron-LM's default d), else d = 128 and the embedding is padded."""
    d = math.gcd(vocab // tp, 128) if vocab % tp == 0 else 128
    return d, -(-vocab // (d * tp)) * d * tp


def _data_args(mapping: Mapping, work: Workload) -> list[str]:
    """Synthetic data through Megatron-LM's null tokenizer, sized to the model's vocabulary: the
    NullTokenizer has --vocab-size ids plus its end-of-document id, so V - 1 gives V. For real data
    replace these with --data-path and the tokenizer the model was trained with."""
    d, _ = vocab_padding(work.model.vocab, mapping.tp)
    return ["--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", str(work.model.vocab - 1),
            "--make-vocab-size-divisible-by", str(d)]


def _optimizer_args(mapping: Mapping, work: Workload) -> list[str]:
    """ZeRO and gradient precision: stage 1 = the distributed optimizer; stages 2 and 3 = Megatron-FSDP
    sharding optimizer state and gradients (+ weights), with the flags its user guide requires
    (docs/discussions/megatron-fsdp-user-guide, core_v0.16.1); fp32 or half-precision gradient
    accumulation and reduction as the plan scores them (Mapping.fp32_grad_accumulation)."""
    args = []
    if mapping.zero_stage == 1:
        args.append("--use-distributed-optimizer")
    elif mapping.zero_stage >= 2:
        args += ["--use-megatron-fsdp", "--data-parallel-sharding-strategy", FSDP_STRATEGY[mapping.zero_stage],
                 "--use-distributed-optimizer", "--no-gradient-accumulation-fusion", "--ckpt-format", "fsdp_dtensor"]
    if mapping.fp32_grad_accumulation and work.dtype in ("bf16", "fp16"):
        args.append("--accumulate-allreduce-grads-in-fp32")
    elif work.dtype == "bf16":
        args.append("--grad-reduce-in-bf16")  # else Megatron-LM accumulates bf16 training's gradients in fp32
    return args


def megatron_args(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> list[str]:
    """Megatron-LM (pretrain_gpt.py) arguments for this mapping: parallel sizes and the layers of each
    pipeline chunk, batch, model shape, vocabulary (synthetic data), recomputation, ZeRO, precision.
    Data parallelism is not an argument: Megatron-LM derives it as world size / (tp x pp), so launch
    mapping.devices processes (launch_script writes the torchrun line).

    Raises ConfigError (one line, naming the op or field) for what Megatron-LM cannot express:
    a 2D or non-Megatron split of an op, a recompute set other than none / selective (the attention
    core, models.graph.SELECTIVE_RECOMPUTE) / full (every block op), DRAM offload, the interleaved
    schedule on one stage, the layer-wise schedule, kv heads not divisible by tp, a ReLU MLP, fp8.
    """
    mapping, _machine, tables = prepare(mapping, work, hw)
    _check_no_offload(mapping, "Megatron-LM")
    ch = normalized_choices(mapping, tables)
    sp = _check_megatron_splits(mapping, work, tables, ch)
    recompute = _recompute_kind(tables, ch)
    _check_megatron_expressible(mapping, work, tables, ch, recompute)
    args = _pipeline_args(mapping, work)
    if sp:
        args.append("--sequence-parallel")
    args += [
        "--micro-batch-size", str(mapping.micro_batch),
        "--global-batch-size", str(work.global_batch),
        "--seq-length", str(work.seq_len),
    ]
    args += _model_args(work) + _data_args(mapping, work)
    if recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    elif recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    args += _optimizer_args(mapping, work)
    if work.flash_attention:
        args += ["--attention-backend", "flash"]
    if work.dtype == "bf16":
        args.append("--bf16")
    elif work.dtype == "fp16":
        args.append("--fp16")
    return args


def megatron_caveats(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> list[str]:
    """One-line notes where Megatron-LM would run megatron_args' output unlike the mapping scored:
    a vocabulary tp does not divide is padded (its embedding and output layer grow), and releases
    before core 0.10 need the micro-batches divisible by pp to interleave. Also where the flags
    depart from Megatron-LM's habit to match the plan: bf16 gradients (--grad-reduce-in-bf16) for a
    plan scored without fp32 gradient accumulation. [] if none."""
    mapping, _machine, tables = prepare(mapping, work, hw)
    notes = []
    if mapping.virtual_stages > 1 and tables.m % mapping.pp:
        notes.append(f"Megatron-LM before core 0.10 runs the interleaved schedule only when the micro-batches "
                     f"({tables.m}) are divisible by pp ({mapping.pp})")
    vocab = work.model.vocab
    _, padded = vocab_padding(vocab, mapping.tp)
    if padded != vocab:
        notes.append(f"Megatron-LM pads the vocabulary of {vocab} tokens to {padded} (a multiple of 128 x tp "
                     f"{mapping.tp}); the plan scores {vocab}")
    if work.dtype == "bf16" and not mapping.fp32_grad_accumulation:
        notes.append("gradients are accumulated and reduced in bf16 (--grad-reduce-in-bf16), as the plan scores "
                     "them; Megatron-LM's default for bf16 is fp32 (score the mapping with fp32_grad_accumulation "
                     "to compare)")
    return notes
