"""Checks and lookups the Megatron-LM and DeepSpeed exports share."""

from __future__ import annotations

from hw.loader import ConfigError
from models.graph import SELECTIVE_RECOMPUTE

from ...model.mapping import Mapping, OpChoice
from ...model.tables import Tables


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
