"""Checks and lookups the Megatron-LM and DeepSpeed exports share."""

from __future__ import annotations

from hw.loader import ConfigError

from ...model.mapping import Mapping
from ...model.tables import Tables


def _check_no_offload(mapping: Mapping, target: str) -> None:
    if mapping.offload:
        raise ConfigError(f"offload {', '.join(mapping.offload)}: tensors kept in DRAM behind the die's ports "
                          f"are not expressible in {target}")


def _block_names(tables: Tables) -> list[str]:
    return [o.name for o in tables.graph.block]
