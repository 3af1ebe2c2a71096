"""Where a command's mapping, workload and hardware come from: the options, a plan file saved by
`meshmap solve --out` (what it records, options win), or a Megatron-LM mapping built from flags."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import yaml

import hw
import models
from models.graph import RECOMPUTE_POLICIES

from ... import baselines
from ...model.mapping import Mapping
from .common import UsageError, _check_choice, _check_count, _require
from .options import DEFAULT_BATCH


def _hw_overrides(nodes: Optional[int] = None, rows: Optional[int] = None, cols: Optional[int] = None,
                  sram_bytes: Optional[float] = None) -> dict[str, Any]:
    """The hardware overrides the user gave (only those), each checked to be > 0."""
    given = {"nodes": nodes, "rows": rows, "cols": cols, "sram_bytes": sram_bytes}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if not (value > 0) or (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"--{key.replace('_', '-')} must be > 0, got {value}")
        out[key] = value
    if "nodes" in out and "rows" in out:
        raise UsageError("give either --nodes or --rows (both set the grid rows), not both")
    return out


def _hardware(name: str, overrides: dict[str, Any]) -> hw.Hardware:
    return hw.load(name, **overrides)


def _read_plan_context(path: Path) -> dict[str, Any]:
    """What a plan file saved by `meshmap solve --out` records besides the mapping (model, hw, batch, …).

    A bare mapping file records nothing: {}. Call after Mapping.load, which reports unreadable files.
    """
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict) or "mapping" not in data or "pp" in data:
        return {}
    return data


def _plan_overrides(plan: Path, ctx: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The plan's hardware overrides updated by the ones given."""
    plan_overrides = ctx.get("hw_overrides") or {}
    if not isinstance(plan_overrides, dict):
        raise UsageError(f"plan file {plan}: hw_overrides must be a mapping, got {plan_overrides!r}")
    if "nodes" in overrides:  # --nodes and --rows both set the grid rows: the option given wins
        plan_overrides = {k: v for k, v in plan_overrides.items() if k != "rows"}
    if "rows" in overrides:
        plan_overrides = {k: v for k, v in plan_overrides.items() if k != "nodes"}
    return {**plan_overrides, **overrides}


def _plan_names(plan: Path, ctx: dict[str, Any], model: Optional[str], hardware: Optional[str],
                overrides: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """The model and hardware names and the overrides: the options given, else the plan's."""
    model = model if model is not None else ctx.get("model")
    if hardware is None:
        hardware = ctx.get("hw")
        overrides = _plan_overrides(plan, ctx, overrides)
    return model, hardware, overrides


def plan_context(plan: Optional[Path], model: Optional[str], hardware: Optional[str], overrides: dict[str, Any],
                 work: models.Workload) -> dict[str, Any]:
    """What a plan file records besides its mapping and report, for --out: the model and hardware
    names, the hardware overrides, batch, sequence length and FlashAttention (what a command
    given the plan reads back)."""
    if plan is not None:
        model, hardware, overrides = _plan_names(plan, _read_plan_context(plan), model, hardware, overrides)
    return {"model": model, "hw": hardware, "hw_overrides": overrides, "global_batch": work.global_batch,
            "seq_len": work.seq_len, "flash_attention": work.flash_attention}


def _plan_workload(plan: Path, model: Optional[str], hardware: Optional[str], batch: Optional[int],
                   seq: Optional[int], overrides: dict[str, Any], flash_attention: bool = False
                   ) -> tuple[Mapping, models.Workload, hw.Hardware]:
    """The mapping of a plan file and its workload and hardware: what the plan records, options win."""
    mapping = Mapping.load(plan)
    ctx = _read_plan_context(plan)
    model, hardware, overrides = _plan_names(plan, ctx, model, hardware, overrides)
    hint = " or a plan file saved by `meshmap solve --out`"
    _require(model, "--model", hint)
    _require(hardware, "--hw", hint)
    batch = batch if batch is not None else ctx.get("global_batch", DEFAULT_BATCH)
    seq = seq if seq is not None else ctx.get("seq_len")
    _check_count("--batch", batch, required=True)
    _check_count("--seq", seq)
    flash = flash_attention or ctx.get("flash_attention", False)
    if not isinstance(flash, bool):
        raise UsageError(f"plan file {plan}: flash_attention must be true or false, got {flash!r}")
    work = models.Workload(model=models.load(str(model)), global_batch=batch, seq_len=seq, flash_attention=flash)
    return mapping, work, _hardware(str(hardware), overrides)


def _mapping_and_workload(plan: Optional[Path], model: Optional[str], hardware: Optional[str],
                          batch: Optional[int], seq: Optional[int], overrides: dict[str, Any],
                          tp: Optional[int], pp: Optional[int], dp: Optional[int], micro_batch: Optional[int],
                          recompute: Optional[str], sequence_parallel: bool, flash_attention: bool = False
                          ) -> tuple[Mapping, models.Workload, hw.Hardware]:
    """The mapping to score — a plan file, or Megatron-LM's built from --tp/--pp/--dp/… — with its
    workload and hardware (`evaluate` and `check`)."""
    if recompute is not None:
        _check_choice("--recompute", recompute, RECOMPUTE_POLICIES)
    megatron_flags = {"--tp": tp, "--pp": pp, "--dp": dp, "--micro-batch": micro_batch, "--recompute": recompute}
    given = [k for k, v in megatron_flags.items() if v is not None] + (["--sequence-parallel"] if sequence_parallel else [])
    if plan is not None and given:
        raise UsageError(f"give either a plan file or {', '.join(given)}, not both")
    if plan is not None:
        return _plan_workload(plan, model, hardware, batch, seq, overrides, flash_attention)
    _require(model, "--model", " or a plan file")
    _require(hardware, "--hw", " or a plan file")
    batch = batch if batch is not None else DEFAULT_BATCH
    _check_count("--batch", batch)
    _check_count("--seq", seq)
    for flag, v in (("--tp", tp), ("--pp", pp), ("--dp", dp), ("--micro-batch", micro_batch)):
        _check_count(flag, v)
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq, flash_attention=flash_attention)
    machine = _hardware(hardware, overrides)
    tp_, pp_ = tp or 1, pp or 1
    dp_ = dp if dp is not None else machine.num_dies // (tp_ * pp_)
    if dp_ <= 0:
        raise UsageError(f"tp x pp = {tp_ * pp_} exceeds the {machine.num_dies} usable dies of {machine.name}")
    mapping = baselines.megatron(work, machine, tp=tp_, pp=pp_, dp=dp_, micro_batch=micro_batch or 1,
                                 recompute=recompute or "full", sequence_parallel=sequence_parallel)
    return mapping, work, machine
