"""What is trained: model configurations, the workload of a step, and the operator graph."""

from .counts import active_parameter_count, forward_flops_per_token, parameter_count, step_flops
from .graph import block_activation_bytes, build_graph
from .loader import load, presets
from .schema import ModelConfig, Workload

__all__ = ["load", "presets", "ModelConfig", "Workload", "block_activation_bytes", "build_graph",
           "parameter_count", "step_flops", "active_parameter_count", "forward_flops_per_token"]
