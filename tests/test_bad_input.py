"""Bad input is rejected early, with one clear message naming the field (DESIGN.md: "Bad input
never crashes deep inside"). Direct construction raises pydantic's ValidationError; loaders,
evaluate() and baselines raise hw.loader.ConfigError (one line). Both subclass ValueError."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

import hw
import models
import optimizer
from hw.loader import ConfigError
from hw.schema import Die, DramPort, Energy, Hardware, Level, Link, Topology
from optimizer import Mapping, OpChoice, StageGroup, baselines, evaluate

GPT = models.load("megatron-1.7b")  # 24 layers, hidden 2304, 24 heads (SC21 Table 1)
WORK = models.Workload(model=GPT, global_batch=8, seq_len=256)
DGX = hw.load("dgx-a100")  # 4 nodes × 8 GPUs by default
WAFER = hw.load("tmac-wafer")  # 8×8 mesh


def rejects(fn, exc, *words):
    """fn() raises exc; its message names every one of `words`; a ConfigError is one line."""
    with pytest.raises(exc) as info:
        fn()
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    if isinstance(info.value, ConfigError):
        assert "\n" not in msg and "Traceback" not in msg
    return msg


def small(**kw):
    base = dict(layers=2, hidden=96, heads=12, vocab=100)
    return models.ModelConfig(**{**base, **kw})


def die(**kw):
    base = dict(peak_flops={"bf16": 1e14}, matmul_efficiency=0.5, sram_bytes=1e9, sram_bandwidth=1e12,
                area_mm2=100, power_w=100)
    return Die(**{**base, **kw})


ENERGY = Energy(flop_j=0, sram_byte_j=0, link_byte_hop_j=0, dram_byte_j=0)
MESH = Topology(kind="mesh2d", rows=2, cols=2, link=Link(bandwidth=1e12, latency_s=0))


# --- models ---------------------------------------------------------------------------------------

def test_heads_must_divide_hidden():
    rejects(lambda: small(hidden=100, heads=3), ValidationError, "heads", "hidden")


def test_kv_heads_must_divide_heads():
    rejects(lambda: small(kv_heads=5), ValidationError, "kv_heads", "heads")
    rejects(lambda: small(kv_heads=24), ValidationError, "kv_heads")


@pytest.mark.parametrize("field,value", [("layers", 0), ("layers", -3), ("hidden", 0), ("hidden", -96),
                                         ("vocab", 0), ("heads", 0), ("seq_len", 0), ("ffn", -1)])
def test_non_positive_sizes(field, value):
    rejects(lambda: small(**{field: value}), ValidationError, field, "greater than 0")


def test_unknown_activation_lists_allowed():
    rejects(lambda: small(activation="tanh"), ValidationError, "activation", "swiglu")


def test_model_yaml_with_bad_heads(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nlayers: 2\nhidden: 100\nheads: 3\nvocab: 10\n")
    rejects(lambda: models.load(p), ConfigError, "heads (3) must divide hidden (100)")


def test_model_yaml_with_unknown_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nlayers: 2\nhidden: 96\nheads: 12\nvocab: 10\nexperts: 8\n")
    rejects(lambda: models.load(p), ConfigError, "experts")


def test_unknown_model_preset_lists_known():
    msg = rejects(lambda: models.load("gpt-5"), ConfigError, "gpt-5", "known")
    assert all(name in msg for name in models.presets())


def test_missing_model_file(tmp_path):
    rejects(lambda: models.load(tmp_path / "nope.yaml"), ConfigError, "not found", "nope.yaml")
    rejects(lambda: models.load(tmp_path / "config.json"), ConfigError, "not found", "config.json")


def test_workload_unknown_dtype_lists_allowed():
    rejects(lambda: models.Workload(model=GPT, global_batch=8, dtype="int3"), ValidationError, "dtype", "bf16")


def test_workload_zero_batch_and_seq():
    rejects(lambda: models.Workload(model=GPT, global_batch=0), ValidationError, "global_batch")
    rejects(lambda: models.Workload(model=GPT, global_batch=8, seq_len=0), ValidationError, "seq_len")


def test_activation_bytes_unknown_recompute():
    rejects(lambda: models.block_activation_bytes(GPT, 1, 256, recompute="bogus"), ValueError,
            "recompute", "none", "selective", "full")


# --- hardware -------------------------------------------------------------------------------------

def test_negative_link_bandwidth():
    rejects(lambda: hw.load("tmac-wafer", link_bandwidth=-1.0), ConfigError, "topology.link.bandwidth")
    rejects(lambda: Link(bandwidth=-1.0, latency_s=0), ValidationError, "bandwidth")


def test_zero_rows():
    rejects(lambda: hw.load("tmac-wafer", rows=0), ConfigError, "topology.rows")
    rejects(lambda: hw.load("dgx-a100", nodes=0), ConfigError, "topology.rows")
    rejects(lambda: Topology(kind="mesh2d", rows=0, cols=2, link=MESH.link), ValidationError, "rows")


def test_override_of_wrong_type():
    rejects(lambda: hw.load("tmac-wafer", cols="many"), ConfigError, "topology.cols")


def test_mesh_without_link():
    rejects(lambda: Topology(kind="mesh2d", rows=2, cols=2), ValidationError, "topology.link")


def test_switched_first_level_must_match_cols():
    lvl = Level(name="nvlink", size=4, bandwidth=1e11, latency_s=0)
    rejects(lambda: Topology(kind="switched", rows=2, cols=8, levels=(lvl,)), ValidationError, "levels[0].size")
    rejects(lambda: Topology(kind="switched", rows=2, cols=8), ValidationError, "levels")


def test_defect_outside_grid():
    rejects(lambda: hw.load("tmac-wafer", defects=[(8, 0)]), ConfigError, "defects", "(8, 0)", "8x8")


def test_duplicate_defect():
    rejects(lambda: hw.load("tmac-wafer", defects=[(1, 1), (1, 1)]), ConfigError, "defects", "(1, 1)", "twice")


def test_all_dies_defective():
    rejects(lambda: hw.load("t3-gpu", defects=[(0, j) for j in range(8)]), ConfigError, "defects", "zero usable")
    rejects(lambda: Hardware(name="x", die=die(), topology=MESH, energy=ENERGY,
                             defects=((0, 0), (0, 1), (1, 0), (1, 1))), ValidationError, "defects")


def test_dram_port_outside_grid(tmp_path):
    # a hardware file whose ports sit on row 7 of a grid of 4 rows (rows/cols overrides move the
    # ports onto the resized grid's edge instead)
    data = hw.raw_preset("tmac-wafer")
    data["topology"]["rows"] = 4
    p = tmp_path / "short-wafer.yaml"
    p.write_text(yaml.safe_dump(data))
    rejects(lambda: hw.load(p), ConfigError, "dram_ports[", "outside the 4x8 grid")
    port = DramPort(row=2, col=0, bandwidth=1e11, capacity_bytes=1e9)
    rejects(lambda: Hardware(name="x", die=die(), topology=MESH, energy=ENERGY, dram_ports=(port,)),
            ValidationError, "dram_ports[0]")


def test_unknown_dtype_in_peak_flops():
    rejects(lambda: die(peak_flops={"int4": 1e15}), ValidationError, "peak_flops", "int4", "bf16")
    rejects(lambda: die(peak_flops={"bf16": 0.0}), ValidationError, "peak_flops[bf16]")


def test_hbm_bytes_and_bandwidth_together():
    rejects(lambda: die(hbm_bytes=8e10), ValidationError, "hbm_bytes", "hbm_bandwidth")


def test_unknown_hardware_preset_lists_known():
    msg = rejects(lambda: hw.load("wse9"), ConfigError, "wse9", "known")
    assert all(name in msg for name in hw.presets())


def test_unknown_override_lists_allowed():
    rejects(lambda: hw.load("wse2", bogus=1), ConfigError, "bogus", "allowed", "rows", "nodes", "defects")


def test_missing_hardware_file(tmp_path):
    rejects(lambda: hw.load(tmp_path / "nope.yaml"), ConfigError, "hardware file not found", "nope.yaml")


def test_unsupported_dtype_on_hardware():
    rejects(lambda: WAFER.peak("fp8"), ValueError, "fp8", "bf16")


# --- mappings -------------------------------------------------------------------------------------

def test_batch_not_divisible_by_dp_times_micro_batch():
    rejects(lambda: evaluate(Mapping(dp=3, micro_batch=1), WORK, DGX), ConfigError,
            "global_batch", "dp", "micro_batch")
    rejects(lambda: evaluate(Mapping(dp=2, micro_batch=3), WORK, DGX), ConfigError, "global_batch")


def test_more_dies_than_exist():
    rejects(lambda: evaluate(Mapping(pp=8, dp=8), WORK, DGX), ConfigError, "64 dies", "32 usable")
    hurt = hw.load("dgx-a100", defects=[(0, 0)])
    rejects(lambda: evaluate(Mapping(dp=8, tp_shape=(1, 4)), WORK, hurt), ConfigError, "31 usable")


def test_pp_exceeds_layers():
    rejects(lambda: evaluate(Mapping(pp=25), WORK, hw.load("dgx-a100", nodes=4)), ConfigError, "pp (25)", "layers (24)")


def test_tp_shape_without_placement():
    rejects(lambda: evaluate(Mapping(tp_shape=(9, 3)), WORK, WAFER), ConfigError, "tp_shape", "(9, 3)")
    rejects(lambda: evaluate(Mapping(tp_shape=(3, 3), pp=5), WORK, WAFER), ConfigError, "tp_shape", "(3, 3)")
    rejects(lambda: Mapping(tp_shape=(0, 2)), ValidationError, "tp_shape")


def test_group_on_defective_die():
    hurt = hw.load("tmac-wafer", defects=[(0, 1)])
    m = Mapping(tp_shape=(1, 2), groups=(StageGroup(stage=0, replica=0, origin=(0, 0)),))
    rejects(lambda: evaluate(m, WORK, hurt), ConfigError, "groups", "defective die (0, 1)")


def test_group_outside_grid():
    m = Mapping(tp_shape=(2, 2), groups=(StageGroup(stage=0, replica=0, origin=(7, 7)),))
    rejects(lambda: evaluate(m, WORK, WAFER), ConfigError, "groups", "outside the 8x8 grid")


def test_overlapping_groups():
    m = Mapping(dp=2, tp_shape=(1, 2), groups=(StageGroup(stage=0, replica=0, origin=(0, 0)),
                                              StageGroup(stage=0, replica=1, origin=(0, 1))))
    rejects(lambda: evaluate(m, WORK, WAFER), ConfigError, "groups", "(0, 1)", "two groups")


def test_groups_must_cover_every_stage_and_replica():
    rejects(lambda: Mapping(pp=2, groups=(StageGroup(stage=0, replica=0, origin=(0, 0)),)), ValidationError,
            "groups", "pp*dp = 2")
    dup = (StageGroup(stage=0, replica=0, origin=(0, 0)), StageGroup(stage=0, replica=0, origin=(0, 1)))
    rejects(lambda: Mapping(pp=2, groups=dup), ValidationError, "groups", "(stage, replica)")


def test_unknown_op_name():
    m = Mapping(ops={"attention": OpChoice()})
    rejects(lambda: evaluate(m, WORK, DGX), ConfigError, "ops", "'attention'", "qk", "fc1")


def test_invalid_split():
    m = Mapping(tp_shape=(1, 8), ops={"fc1": OpChoice(split=("zz", "zz"))})
    rejects(lambda: evaluate(m, WORK, DGX), ConfigError, "ops.fc1.split", "('zz', 'zz')", "allowed", "('f', 'f')")
    # heads (24) do not split 16 ways
    m = Mapping(tp_shape=(2, 8), ops={"qk": OpChoice(split=("a", "a"))})
    rejects(lambda: evaluate(m, WORK, DGX), ConfigError, "ops.qk.split", "allowed")


def test_recompute_outside_the_block():
    m = Mapping(ops={"lm_head": OpChoice(recompute=True)})
    rejects(lambda: evaluate(m, WORK, DGX), ConfigError, "ops.lm_head.recompute")


def test_layers_per_stage_must_sum_to_layers():
    rejects(lambda: evaluate(Mapping(pp=2, layers_per_stage=(10, 10)), WORK, DGX), ConfigError,
            "layers_per_stage", "20", "24")
    rejects(lambda: Mapping(pp=2, layers_per_stage=(24,)), ValidationError, "layers_per_stage")
    rejects(lambda: Mapping(pp=2, layers_per_stage=(24, 0)), ValidationError, "layers_per_stage")


def test_virtual_stages_need_interleaved_schedule():
    rejects(lambda: Mapping(virtual_stages=2), ValidationError, "virtual_stages", "interleaved")
    # 24 layers on pp 2 hold 12 per stage: 5 chunks each run (uneven chunks), 13 would leave one empty
    evaluate(Mapping(pp=2, schedule="interleaved", virtual_stages=5), WORK, DGX)
    m = Mapping(pp=2, schedule="interleaved", virtual_stages=13)
    rejects(lambda: evaluate(m, WORK, DGX), ConfigError, "virtual_stages (13)", "layers_per_chunk")
    chunks = m.model_copy(update={"virtual_stages": 2, "layers_per_chunk": (6, 6, 6, 5)})
    rejects(lambda: evaluate(chunks, WORK, DGX), ConfigError, "layers_per_chunk sums to 23")


def test_zero_stage_and_schedule_literals():
    rejects(lambda: Mapping(zero_stage=4), ValidationError, "zero_stage")
    rejects(lambda: Mapping(schedule="gpipe"), ValidationError, "schedule", "1f1b")


def test_mapping_load_missing_file(tmp_path):
    rejects(lambda: Mapping.load(tmp_path / "plan.json"), ConfigError, "mapping file not found", "plan.json")
    rejects(lambda: evaluate(str(tmp_path / "plan.json"), WORK, DGX), ConfigError, "mapping file not found")


def test_mapping_load_invalid_json(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text("{pp: 2,")
    rejects(lambda: Mapping.load(p), ConfigError, "plan.json", "not valid JSON")


def test_mapping_load_invalid_field(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text('{"pp": 0, "dp": 1}')
    rejects(lambda: Mapping.load(p), ConfigError, "invalid mapping", "pp")
    p.write_text('{"pp": 1, "tensor_parallel": 8}')
    rejects(lambda: Mapping.load(p), ConfigError, "tensor_parallel")


def test_evaluate_unknown_hardware_name():
    rejects(lambda: evaluate(Mapping(), WORK, "a100-pod"), ConfigError, "a100-pod", "known")


# --- baselines ------------------------------------------------------------------------------------

def test_megatron_tp_must_tile_the_grid():
    rejects(lambda: baselines.megatron(WORK, WAFER, tp=3), ConfigError, "tp (3)", "8x8")


def test_megatron_bogus_recompute():
    rejects(lambda: baselines.megatron(WORK, DGX, tp=8, recompute="bogus"), ConfigError,
            "recompute", "none", "selective", "full", "'bogus'")


@pytest.mark.parametrize("field", ["tp", "pp", "dp", "micro_batch"])
def test_megatron_non_positive_degrees(field):
    rejects(lambda: baselines.megatron(WORK, DGX, **{field: 0}), ConfigError, field)


def test_megatron_too_many_dies():
    rejects(lambda: baselines.megatron(WORK, DGX, tp=8, pp=4, dp=2), ConfigError, "64 dies", "32 usable")


def test_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError) and issubclass(ValidationError, ValueError)
    assert optimizer.evaluate is evaluate
