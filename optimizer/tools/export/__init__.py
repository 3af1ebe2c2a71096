"""Exports of a mapping: Megatron-LM arguments and a torchrun launch script, a DeepSpeed config, a
Chrome/Perfetto trace of one step.

Pure functions of (mapping, workload, hardware). Each first checks the mapping exactly as
evaluate() does; a mapping the target cannot express raises hw.loader.ConfigError with one line
naming the operator or field. The trace is drawn from the same per-stage scores evaluate() sums,
so its timeline adds up to the modelled step time.
"""

from .deepspeed import deepspeed_config, deepspeed_notes
from .launch import launch_script
from .layout import pipeline_layout
from .megatron import megatron_args, megatron_caveats
from .megatron_flags import MEGATRON_FLAGS, parse_megatron_args
from .trace import chrome_trace

__all__ = ["megatron_args", "megatron_caveats", "parse_megatron_args", "launch_script", "pipeline_layout",
           "deepspeed_config", "deepspeed_notes", "chrome_trace", "MEGATRON_FLAGS"]
