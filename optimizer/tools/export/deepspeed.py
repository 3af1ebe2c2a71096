"""DeepSpeed export: a DeepSpeed config for a mapping."""

from __future__ import annotations

from typing import Any

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ...model.evaluate import normalized_choices, prepare
from ...model.mapping import Mapping
from .common import _check_no_offload, _recompute_kind


def deepspeed_config(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> dict[str, Any]:
    """A DeepSpeed config (https://www.deepspeed.ai/docs/config-json/) for this mapping.

    train_batch_size = train_micro_batch_size_per_gpu x gradient_accumulation_steps x dp, where
    DeepSpeed's "number of GPUs" is the data-parallel size when a model-parallel unit is given.
    Tensor/pipeline sizes and op splits are not config keys: they come from the model code
    (e.g. Megatron-DeepSpeed with megatron_args). The optimizer params are placeholders to tune.
    data_types.grad_accum_dtype is the plan's: fp32 with Mapping.fp32_grad_accumulation, else the
    training dtype. activation_checkpointing configures deepspeed.checkpointing, which recomputes
    whatever the model code wraps in it: which ops are recomputed (every layer, or the attention core
    only) is the model code's flag, not a DeepSpeed key (deepspeed_notes says which). The section
    differs where DeepSpeed's keys do: a full recomputation saves each layer's input, partitioned over
    the tensor group when the plan splits it (sequence parallelism); a selective one saves the
    attention core's inputs, already split over the heads, so they are not partitioned again.
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
    if work.dtype in ("bf16", "fp16"):
        cfg["data_types"] = {"grad_accum_dtype": "fp32" if mapping.fp32_grad_accumulation else work.dtype}
    recompute = _recompute_kind(tables, ch)
    if recompute != "none":
        block_input_split = tuple(ch["add2"].split) != (None, None)  # saved layer inputs split over the group
        cfg["activation_checkpointing"] = {
            "partition_activations": bool(recompute == "full" and mapping.tp > 1 and block_input_split),
            "contiguous_memory_optimization": False,
            "cpu_checkpointing": False,
        }
    cfg["optimizer"] = {"type": "Adam", "params": {"lr": 1e-4, "betas": [0.9, 0.95], "eps": 1e-8,
                                                    "weight_decay": 0.1}}
    cfg["gradient_clipping"] = 1.0
    return cfg


def deepspeed_notes(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> list[str]:
    """One-line notes on what the model code must do for deepspeed_config to run the plan: the
    recomputation it wraps in deepspeed.checkpointing (Megatron-DeepSpeed's flags). [] if none."""
    mapping, _machine, tables = prepare(mapping, work, hw)
    recompute = _recompute_kind(tables, normalized_choices(mapping, tables))
    if recompute == "none":
        return []
    what = {"full": "every layer (--recompute-granularity full --recompute-method uniform --recompute-num-layers 1)",
            "selective": "the attention core only (--recompute-granularity selective)"}.get(recompute)
    if what is None:
        return ["the plan recomputes a set of ops that neither Megatron-DeepSpeed's full nor selective "
                "recomputation names; DeepSpeed's config cannot state it"]
    return [f"DeepSpeed's activation_checkpointing sets how checkpointed inputs are kept; the model code chooses "
            f"what is recomputed: the plan recomputes {what}, with --deepspeed-activation-checkpointing in "
            f"Megatron-DeepSpeed"]
