"""Peer systems as fixed mappings their own heuristics would pick.

  megatron(...)            a given Megatron-LM launch config; megatron_heuristic() picks one as
                           Megatron users do (Narayanan et al., SC21); megatron_1d() is 1D tensor
                           parallelism over the whole package, Hecaton's baseline
  deepspeed(...)           ZeRO data parallelism (Rajbhandari et al., SC20)
  accpar(...)              AccPar's per-layer partition types by dynamic programming (Song et al., HPCA 2020)
  hecaton(...)             Hecaton's 2D weight-stationary method on the whole grid (Huang et al., arXiv 2407.05784)
  heuristic(name, ...)     any of them by name
  with_least_offload(...)  a mapping with the smallest set of tensor classes in DRAM that makes it fit

Each returns an optimizer.Mapping inside the strategy space of the same name (optimizer.search.space);
a mapping that cannot fit is still returned (the most memory-frugal the heuristic knows) and
evaluate() reports fits=False.

The DRAM tier (`offload`): every heuristic takes `offload`, False (nothing in DRAM; the default,
except for Hecaton, whose method relies on its DRAM chiplets), True (the least set of
Mapping.offload classes that makes the mapping fit, with_least_offload) or a tuple of classes
(exactly those in DRAM). True lets a peer use the DRAM behind the machine's ports the way it can:
DeepSpeed has ZeRO-Offload / ZeRO-Infinity (Ren et al., USENIX ATC 2021; Rajbhandari et al., SC21),
Megatron-LM and AccPar could stream weights as a wafer's weight-streaming mode does. A heuristic
whose own choices depend on memory (Megatron-LM's pipeline depth, DeepSpeed's ZeRO stage,
micro-batch and checkpointing, Hecaton's micro-batch) first looks for a choice that fits with
nothing in DRAM and only then uses the DRAM tier (offloading is the peers' last resort: it adds
port traffic); AccPar's search ignores memory, so every point of it gets its tensors spilled to
DRAM and the fastest point that then fits is kept.

Memory accounting: the Megatron-LM baseline uses Megatron's own (fp32 gradient accumulation
buffer: 18 B/param: 2 weights + 4 grads + 12 Adam); the others use ZeRO's 16 B/param.
"""
from __future__ import annotations

import inspect
from typing import Any

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from .model.mapping import Mapping
from .peers.accpar import accpar
from .peers.common import Offload, best_options, offload_sets, squarest, with_least_offload
from .peers.deepspeed import _block_ops, deepspeed
from .peers.hecaton import hecaton
from .peers.megatron import (ASYNC_TP_OPS, megatron, megatron_1d, megatron_groups, megatron_heuristic,
                             megatron_ops, megatron_shape)


HEURISTICS = ("megatron", "deepspeed", "accpar", "hecaton")


def heuristic(name: str, work: Workload, hw: Hardware, **kw: Any) -> Mapping:
    """The fixed mapping peer `name` (one of HEURISTICS) would pick. Keywords go to that function;
    "megatron" without keywords (or with `offload` only) is megatron_heuristic(), with others
    megatron(...). `offload` (every peer): see the module docstring."""
    funcs = {"megatron": megatron, "deepspeed": deepspeed, "accpar": accpar, "hecaton": hecaton}
    if name not in funcs:
        raise ConfigError(f"unknown heuristic {name!r}; allowed: {', '.join(HEURISTICS)}")
    if name == "megatron" and set(kw) <= {"offload"}:
        return megatron_heuristic(work, hw, **kw)
    # `offload` is every peer's (module docstring); the message lists each peer's own options
    allowed = [p for p in inspect.signature(funcs[name]).parameters if p not in ("work", "hw", "offload")]
    for key in kw:
        if key not in allowed and key != "offload":
            raise ConfigError(f"{name}: unknown option {key!r}; allowed: {', '.join(allowed) or 'none'}")
    return funcs[name](work, hw, **kw)

__all__ = ["HEURISTICS", "Offload", "megatron", "megatron_heuristic", "megatron_1d", "megatron_ops", "megatron_shape",
           "megatron_groups", "ASYNC_TP_OPS", "deepspeed", "accpar", "hecaton", "heuristic", "with_least_offload",
           "offload_sets", "best_options", "squarest"]
