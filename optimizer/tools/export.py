"""Exports of a mapping: Megatron-LM arguments, a DeepSpeed config, a Chrome/Perfetto trace of one step.

Pure functions of (mapping, workload, hardware). Each first checks the mapping exactly as
evaluate() does; a mapping the target cannot express raises hw.loader.ConfigError with one line
naming the operator or field. The trace is drawn from the same per-stage scores evaluate() sums,
so its timeline adds up to the modelled step time.
"""

from __future__ import annotations

from typing import Any

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import SELECTIVE_RECOMPUTE
from models.schema import Workload

from ..model import cost
from ..baselines import megatron_ops
from ..model.evaluate import StageScore, assemble, evaluate, normalized_choices, prepare, stage_scores
from ..model.mapping import Mapping, OpChoice
from ..model.tables import Tables

# ------------------------------------------------------------------------------------- Megatron-LM
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


def _check_no_offload(mapping: Mapping, target: str) -> None:
    if mapping.offload:
        raise ConfigError(f"offload {', '.join(mapping.offload)}: tensors kept in DRAM behind the die's ports "
                          f"are not expressible in {target}")


def _block_names(tables: Tables) -> list[str]:
    return [o.name for o in tables.graph.block]


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
    model = work.model
    ch = normalized_choices(mapping, tables)
    sp = _check_megatron_splits(mapping, work, tables, ch)
    recompute = _recompute_kind(tables, ch)
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
        "--max-position-embeddings", str(max(work.seq_len, model.seq_len)),
        "--num-layers", str(L),
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


# ---------------------------------------------------------------------------------------- DeepSpeed

def deepspeed_config(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> dict[str, Any]:
    """A DeepSpeed config (https://www.deepspeed.ai/docs/config-json/) for this mapping.

    train_batch_size = train_micro_batch_size_per_gpu x gradient_accumulation_steps x dp, where
    DeepSpeed's "number of GPUs" is the data-parallel size when a model-parallel unit is given.
    Tensor/pipeline sizes and op splits are not config keys: they come from the model code
    (e.g. Megatron-DeepSpeed with megatron_args). The optimizer params are placeholders to tune.
    Raises ConfigError for ZeRO stage >= 2 with pipeline parallelism (DeepSpeed's pipeline engine
    rejects it), the interleaved and layer-wise schedules (its engine runs 1F1B only), DRAM offload and fp8.
    """
    mapping, _machine, tables = prepare(mapping, work, hw)
    _check_no_offload(mapping, "a DeepSpeed config")
    if mapping.pp > 1 and mapping.zero_stage >= 2:
        raise ConfigError(f"zero_stage {mapping.zero_stage} with pp={mapping.pp}: DeepSpeed's pipeline engine "
                          f"supports ZeRO stage 0-1 only")
    if mapping.schedule != "1f1b":
        raise ConfigError(f"schedule {mapping.schedule}: DeepSpeed's pipeline engine runs the plain 1F1B schedule")
    if work.dtype == "fp8":
        raise ConfigError("dtype fp8: DeepSpeed's config has no fp8 training mode")
    ch = normalized_choices(mapping, tables)
    cfg: dict[str, Any] = {
        "train_batch_size": work.global_batch,
        "train_micro_batch_size_per_gpu": mapping.micro_batch,
        "gradient_accumulation_steps": tables.m,
    }
    if work.dtype == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif work.dtype == "fp16":
        cfg["fp16"] = {"enabled": True}
    zero: dict[str, Any] = {"stage": mapping.zero_stage}
    if mapping.zero_stage >= 1:
        # the cost model reduce-scatters gradients after the pipeline, not overlapped with backward
        zero.update(reduce_scatter=True, overlap_comm=False)
    cfg["zero_optimization"] = zero
    if any(ch[n].recompute for n in _block_names(tables)):
        block_input_split = tuple(ch["add2"].split) != (None, None)  # saved layer inputs split over the group
        cfg["activation_checkpointing"] = {
            "partition_activations": bool(mapping.tp > 1 and block_input_split),
            "contiguous_memory_optimization": False,
            "cpu_checkpointing": False,
        }
    cfg["optimizer"] = {"type": "Adam", "params": {"lr": 1e-4, "betas": [0.9, 0.95], "eps": 1e-8,
                                                    "weight_decay": 0.1}}
    cfg["gradient_clipping"] = 1.0
    return cfg


# ------------------------------------------------------------------------------------------- trace

def _pieces(tables: Tables, ch: dict[str, OpChoice], stage: int, st: StageScore) -> tuple[list, list]:
    """(forward, backward) events of one micro-batch on one stage: [(name, seconds)], summing to st.time_s.

    Forward and backward compute come from the cost tables; the stage's tensor-parallel collectives
    (and DRAM traffic, if any) are split between them in the same ratio, its pipeline transfers
    half and half.
    """
    g = tables.graph
    first, last = stage == 0, stage == tables.pp - 1
    layers = tables.layers_per_stage[stage]
    fwd = layers * sum(tables.option_cost(o, ch[o.name].split).fwd_s for o in g.block)
    extra = (g.pre if first else ()) + (g.post if last else ())
    fwd += sum(tables.option_cost(o, ch[o.name].split).fwd_s for o in extra)
    p = dict(st.parts)
    compute, recompute = p.pop("compute"), p.pop("recompute")
    fwd = min(fwd, compute)
    r = fwd / compute if compute > 0 else 0.5
    pp = p.pop("pp_comm")
    forward = [("forward", fwd)]
    backward = [("recompute", recompute), ("backward", compute - fwd)]
    for name, t in p.items():  # tp_comm, and any other per-micro-batch part (e.g. dram): in the same ratio
        forward.append((name, r * t))
        backward.append((name, t - r * t))
    forward.append(("pp_comm", pp / 2))
    backward.append(("pp_comm", pp - pp / 2))
    return forward, backward


def _orders(p: int, m: int, v: int) -> list[list[tuple[str, int, int]]]:
    """Per stage, its (F|B, chunk, micro-batch) in 1F1B order (Megatron-LM's, interleaved when v > 1)."""
    if v == 1:
        fseq = bseq = [(0, i) for i in range(m)]
        warm = [min(p - s - 1, m) for s in range(p)]
    else:
        fseq, bseq = [], []
        for g0 in range(0, m, p):
            group = range(g0, min(g0 + p, m))
            fseq += [(c, i) for c in range(v) for i in group]
            bseq += [(c, i) for c in reversed(range(v)) for i in group]
        warm = [min((p - s - 1) * 2 + (v - 1) * p, m * v) for s in range(p)]
    n = len(fseq)
    orders = []
    for s in range(p):
        w = warm[s]
        o = [("F", *fseq[k]) for k in range(w)]
        for k in range(n - w):
            o += [("F", *fseq[w + k]), ("B", *bseq[k])]
        o += [("B", *bseq[k]) for k in range(n - w, n)]
        orders.append(o)
    return orders


def _deps(kind: str, s: int, c: int, i: int, p: int, v: int) -> list[tuple]:
    if kind == "F":
        if s > 0:
            return [("F", s - 1, c, i)]
        return [("F", p - 1, c - 1, i)] if c > 0 else []
    own = ("F", s, c, i)
    if s < p - 1:
        return [("B", s + 1, c, i), own]
    return [("B", 0, c + 1, i), own] if c < v - 1 else [own]


def _simulate(p: int, m: int, v: int, f: list[float], b: list[float]) -> list[list[tuple]] | None:
    """1F1B with data dependencies: per stage [(F|B, chunk, micro-batch, start_s, end_s)]; None on deadlock."""
    orders = _orders(p, m, v)
    end: dict[tuple, float] = {}
    free, ptr = [0.0] * p, [0] * p
    out: list[list[tuple]] = [[] for _ in range(p)]
    progress = True
    while progress:
        progress = False
        for s in range(p):
            while ptr[s] < len(orders[s]):
                kind, c, i = orders[s][ptr[s]]
                deps = _deps(kind, s, c, i, p, v)
                if any(d not in end for d in deps):
                    break
                start = max([free[s]] + [end[d] for d in deps])
                stop = start + (f[s] if kind == "F" else b[s])
                end[(kind, s, c, i)] = free[s] = stop
                out[s].append((kind, c, i, start, stop))
                ptr[s] += 1
                progress = True
    return out if all(ptr[s] == len(orders[s]) for s in range(p)) else None


def _flow_shop(p: int, m: int, v: int, f: list[float], b: list[float]) -> list[list[tuple]]:
    """The cost model's own pipeline: m·v chunk units cross the stages in order, each stage taking one
    unit at a time (makespan Σ T_s / v + (m − 1/v)·max T_s, cost.pipeline_time). Per stage
    [(U, chunk, micro-batch, start_s, end_s)]."""
    units = [(c, i) for g0 in range(0, m, p) for c in range(v) for i in range(g0, min(g0 + p, m))]
    out: list[list[tuple]] = [[] for _ in range(p)]
    prev = [0.0] * len(units)
    for s in range(p):
        free = 0.0
        for k, (c, i) in enumerate(units):
            start = max(free, prev[k])
            free = prev[k] = start + f[s] + b[s]
            out[s].append(("U", c, i, start, free))
    return out


def chrome_trace(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> dict[str, Any]:
    """A Chrome/Perfetto trace of one step (open in https://ui.perfetto.dev): one process per
    pipeline stage (one data-parallel replica shown; all are alike), "X" events with ts/dur in µs.

    Each micro-batch (chunk, when interleaved) is a forward (forward, tp_comm, pp_comm) and a
    backward (recompute, backward, tp_comm, pp_comm) with the durations evaluate() charges, placed
    by simulating 1F1B with its data dependencies; gaps are "bubble", and so is the rest up to the
    cost model's pipeline time (cost.pipeline_time). Where the simulated span exceeds that time
    (uneven stages, interleaving with micro-batches not a multiple of pp) the units are laid out as
    the formula counts them instead, a flow shop; otherData.layout says which.
    Then each stage's sync parts (dp_comm, optimizer, …) and "idle" until the slowest stage's sync
    ends: every stage's events sum to evaluate(...).step_time_s.
    """
    mapping, machine, tables = prepare(mapping, work, hw)
    ch = normalized_choices(mapping, tables)
    stages = stage_scores(mapping, tables)
    p, m, v = tables.pp, tables.m, tables.virtual
    times = [st.time_s for st in stages]
    pipe = cost.pipeline_time(times, m, v)
    step = pipe + max(st.sync_s for st in stages)
    pieces = [_pieces(tables, ch, s, st) for s, st in enumerate(stages)]
    f = [sum(d for _, d in fw) / v for fw, _ in pieces]
    b = [sum(d for _, d in bw) / v for _, bw in pieces]
    sched = _simulate(p, m, v, f, b)
    layout = "1f1b"
    if sched is None or max(e[4] for row in sched for e in row) > pipe * (1 + 1e-12):
        sched, layout = _flow_shop(p, m, v, f, b), "cost-model flow shop"

    us, eps = 1e6, 1e-12 * step
    events: list[dict[str, Any]] = []
    first_layer = 0
    for s, (st, row) in enumerate(zip(stages, sched)):
        L = tables.layers_per_stage[s]
        events.append({"name": "process_name", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"name": f"stage {s} (layers {first_layer}-{first_layer + L - 1})"}})
        events.append({"name": "process_sort_index", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"sort_index": s}})
        events.append({"name": "thread_name", "ph": "M", "ts": 0, "pid": s, "tid": 0,
                       "args": {"name": f"replica 0, tensor group of {mapping.tp} dies"}})
        first_layer += L
        cursor = 0.0

        def emit(name: str, cat: str, dur: float, **args: Any) -> None:
            nonlocal cursor
            if dur <= 0:
                return
            events.append({"name": name, "cat": cat, "ph": "X", "ts": cursor * us, "dur": dur * us,
                           "pid": s, "tid": 0, "args": args})
            cursor += dur

        fw, bw = pieces[s]
        for kind, c, i, start, _stop in row:
            if start - cursor > eps:  # smaller gaps are float noise: the next event starts at once
                emit("bubble", "idle", start - cursor)
            parts = fw if kind == "F" else bw if kind == "B" else fw + bw
            for name, d in parts:
                cat = "comm" if name.endswith("_comm") else "compute"
                emit(name, cat, d / v, micro_batch=i, **({"chunk": c} if v > 1 else {}))
        emit("bubble", "idle", pipe - cursor)
        for name, t in st.sync_parts.items():  # dp_comm, optimizer (and optimizer_dram, if any)
            emit(name, "comm" if name.endswith("_comm") else "compute", t)
        emit("idle", "idle", step - cursor, reason="waits for the slowest stage's gradient sync")
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"model": work.model.name, "hw": machine.name, "mapping": mapping.name,
                      "global_batch": work.global_batch, "seq_len": work.seq_len, "micro_batches": m,
                      "step_time_s": step, "pipeline_s": pipe, "layout": layout},
    }


__all__ = ["megatron_args", "megatron_caveats", "parse_megatron_args", "deepspeed_config", "chrome_trace",
           "MEGATRON_FLAGS"]
