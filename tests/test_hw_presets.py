"""Hardware presets: they load, every number carries a source or an assumption, memory is sized
for the models the papers train, and keyword overrides work."""

from __future__ import annotations

import math

import pytest
import yaml

import hw
from hw.loader import PRESET_DIR

EXPECTED = {"wse2", "wse3", "dojo-tile", "hecaton-chiplet", "tmac-wafer", "dgx-a100", "dgx-h100", "t3-gpu"}
WRAPPER_KEYS = {"value", "source", "assumption", "unit"}

# Parameter counts (DESIGN.md, validation data): Llama2-70B exactly 68,976,648,192 weights (Meta
# config.json); GPT-3 175B ~ 174.6e9. Mixed-precision Adam keeps 16 B per parameter (ZeRO).
LLAMA2_70B_PARAMS = 68_976_648_192
GPT3_175B_PARAMS = 174.6e9
BYTES_PER_PARAM_TRAINING = 16


def _is_number(x) -> bool:
    """A YAML number, or a string PyYAML left unparsed that still reads as one (e.g. '1.0e12')."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, str):
        try:
            float(x)
        except ValueError:
            return False
        return True
    return False


def _unsourced_numbers(node, path=""):
    """Yield (path, problem) for numbers not wrapped as {value: x, source|assumption: "..."[, unit]}."""
    if isinstance(node, dict):
        if "value" in node:
            extra = set(node) - WRAPPER_KEYS
            if extra:
                yield path, f"wrapper has unexpected keys {sorted(extra)}"
            note = node.get("source") or node.get("assumption")
            if not (isinstance(note, str) and note.strip()):
                yield path, "no source/assumption"
            value = node["value"]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                yield path, f"value {value!r} is not a YAML number (write exponents with a sign: 1.0e+12)"
            return
        for key, value in node.items():
            yield from _unsourced_numbers(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _unsourced_numbers(value, f"{path}[{i}]")
    elif _is_number(node):
        yield path, f"bare number {node!r}"


def test_expected_presets_present():
    assert EXPECTED <= set(hw.presets())


@pytest.mark.parametrize("name", hw.presets())
def test_preset_loads(name):
    hardware = hw.load(name)
    assert isinstance(hardware, hw.Hardware)
    assert hardware.name == name
    assert hardware.num_dies >= 1
    assert hardware.die.area_mm2 > 0 and hardware.die.power_w > 0


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_number_has_a_source(path):
    data = yaml.safe_load(path.read_text())
    assert data.get("name") == path.stem
    problems = list(_unsourced_numbers(data))
    assert not problems, f"{path.name}: {problems}"


def test_walker_catches_bare_and_unsourced_numbers():
    bad = {"a": 1, "b": {"value": 2}, "c": [{"value": 3, "source": "x"}, "4e9"], "d": {"value": "5e9", "assumption": "y"}}
    paths = [p for p, _ in _unsourced_numbers(bad)]
    assert paths == ["a", "b", "c[1]", "d"]
    assert list(_unsourced_numbers({"kind": "mesh2d", "flag": True, "x": {"value": 1.0, "unit": "s", "source": "s"}})) == []


def test_hecaton_dram_holds_llama2_70b_training_state():
    hardware = hw.load("hecaton-chiplet")
    assert hardware.dram_capacity >= BYTES_PER_PARAM_TRAINING * LLAMA2_70B_PARAMS


def test_tmac_dram_holds_gpt3_175b_training_state():
    hardware = hw.load("tmac-wafer")
    assert hardware.dram_capacity >= BYTES_PER_PARAM_TRAINING * GPT3_175B_PARAMS


def test_override_nodes_on_switched_cluster():
    assert hw.load("dgx-a100", nodes=128).num_dies == 1024
    assert hw.load("dgx-h100", nodes=16).num_dies == 128


def test_override_grid_growth_and_defects():
    # Only growth: the DRAM ports must stay inside the grid, so shrinking below them is rejected.
    hardware = hw.load("hecaton-chiplet", rows=16, cols=16, defects=[(0, 3)])
    assert hardware.num_dies == 255
    assert not hardware.usable((0, 3))


def test_wse2_regions():
    hardware = hw.load("wse2")
    assert hardware.num_dies == 84
    assert (hardware.rows, hardware.cols) == (7, 12)
    assert math.isclose(hardware.die.sram_bytes * 84, 40e9, rel_tol=1e-9)  # Cerebras: 40 GB SRAM
    assert hardware.die.hbm_bytes is None
    assert hardware.features.weight_streaming
    assert hardware.dram_ports and all(p.row == 0 for p in hardware.dram_ports)  # MemoryX on the edge


def test_wse3_regions():
    hardware = hw.load("wse3")
    assert hardware.num_dies == 84
    assert math.isclose(hardware.die.sram_bytes * 84, 44e9, rel_tol=1e-9)  # Cerebras: 44 GB SRAM
    assert math.isclose(hardware.peak("fp16") * 84, 125e15, rel_tol=1e-4)  # 125 PFLOPS FP16


def test_dojo_tile_totals():
    hardware = hw.load("dojo-tile")
    assert hardware.num_dies == 25
    assert math.isclose(hardware.peak("bf16") * 25, 9.05e15, rel_tol=1e-3)  # 9 PFLOPS per tile
    assert math.isclose(hardware.die.sram_bytes * 25, 11e9, rel_tol=0.01)  # 11 GB per tile
    assert all(p.capacity_bytes == 32e9 and p.bandwidth == 800e9 for p in hardware.dram_ports)  # V1 DIP
    assert {p.col for p in hardware.dram_ports} <= {0, hardware.cols - 1}


def test_t3_gpu_ring():
    hardware = hw.load("t3-gpu")
    assert hardware.topology.kind == "torus2d" and (hardware.rows, hardware.cols) == (1, 8)
    assert hardware.topology.link.bandwidth == 150e9 and hardware.topology.link.latency_s == 500e-9
    assert hardware.die.hbm_bandwidth == 1e12
    assert hardware.features.fused_collectives and hardware.features.near_memory_reduction
    assert hw.load("t3-gpu", cols=32).num_dies == 32


def test_dgx_h100_has_its_own_calibration():
    """Each GPU preset is fitted on its own GPU's published runs (benchmarks/validate.py FIT_SPLIT)."""
    h100 = hw.load("dgx-h100")
    text = (PRESET_DIR / "dgx-h100.yaml").read_text()
    assert "same calibration as dgx-a100" not in text
    assert h100.die.compute_units == 132
    assert h100.peak("bf16") == 989e12
    assert h100.topology.levels[0].bandwidth == 450e9 and h100.topology.levels[1].bandwidth == 50e9
