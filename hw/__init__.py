"""What the machine is: dies, topology, memory ports, energy; presets in YAML."""

from .loader import ConfigError, load, presets, raw_preset
from .schema import DTYPE_BYTES, Die, DramPort, Energy, Features, Hardware, Level, Link, Overlap, Topology

__all__ = [
    "ConfigError", "load", "presets", "raw_preset", "DTYPE_BYTES", "Die", "DramPort", "Energy",
    "Features", "Hardware", "Level", "Link", "Overlap", "Topology",
]
