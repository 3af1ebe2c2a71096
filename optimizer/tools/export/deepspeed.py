"""DeepSpeed export: a DeepSpeed config for a mapping."""

from __future__ import annotations

from typing import Any

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ...model.evaluate import normalized_choices, prepare
from ...model.mapping import Mapping
from .common import _block_names, _check_no_offload


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
