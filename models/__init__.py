"""What is trained: model configurations, the workload of a step, and the operator graph."""

from .loader import load, presets
from .schema import ModelConfig, Workload

__all__ = ["load", "presets", "ModelConfig", "Workload"]
