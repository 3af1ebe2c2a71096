"""The exports checked by their real consumers (slow; needs the `validate` extra and MEGATRON_LM, a
Megatron-LM checkout at the tag of the installed megatron-core): Megatron-LM's own parse_args +
validate_args, torchrun's own parser and DeepSpeed's own DeepSpeedConfig accept every exported
flag and key, and every degree they parse equals the plan's. The cases are those of
benchmarks/validate_exports.py (CASES, LAYOUTS): add a row there for a new degree.

Run:  MEGATRON_LM=path/to/Megatron-LM python -m pytest -m slow tests/test_export_consumers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import validate_exports as vx  # noqa: E402

pytestmark = [pytest.mark.slow]
REASON = vx.missing()
needs_consumers = pytest.mark.skipif(REASON is not None, reason=f"real consumers unavailable: {REASON}")


@needs_consumers
@pytest.mark.parametrize("case", vx.CASES, ids=[c.name for c in vx.CASES])
def test_megatron_lm_accepts_the_launch(case):
    row = vx.check_megatron(case)
    assert row["status"] == "accepted" and row["mismatches"] == [], row
    m, _, _ = case.build()
    assert row["cuda_device_max_connections"] == ("1" if m.tp > 1 and m.zero_stage < 2 else
                                                  None if m.zero_stage >= 2 else "8")


@needs_consumers
@pytest.mark.parametrize("case", vx.CASES, ids=[c.name for c in vx.CASES])
def test_deepspeed_accepts_the_config(case):
    row = vx.check_deepspeed(case)
    if row["status"] == "not expressible":  # refused by the exporter itself, with its reason
        m, _, _ = case.build()
        assert m.virtual_stages > 1 or (m.pp > 1 and m.zero_stage >= 2), row
        return
    assert row["mismatches"] == [], row
    got = row["parsed"]
    assert got["train_batch_size"] == got["micro_batch"] * got["grad_accum"] * got["dp"]


@needs_consumers
@pytest.mark.parametrize("layout", vx.LAYOUTS, ids=[row[0] for row in vx.LAYOUTS])
def test_megatron_core_reads_the_pipeline_layout(layout):
    row = vx.check_layout(*layout)
    assert row["mismatches"] == [] and row["virtual"] == len(layout[3]) // layout[2], row
    assert row.get("validated_with") == layout[4]


@needs_consumers
def test_the_check_can_fail():
    """The real parser rejects an unknown flag; validate_args stops a tp > 1 launch without
    CUDA_DEVICE_MAX_CONNECTIONS=1; the tokenizer stops without the vocabulary flags."""
    from optimizer.tools.export import megatron_args

    m, work, machine = vx.CASES[0].build()  # tp 2
    args = megatron_args(m, work, machine)
    with pytest.raises(ValueError, match="--no-such-flag"):
        vx.parse_with_megatron(args + ["--no-such-flag"], m.devices, "1", 9)
    with pytest.raises(AssertionError, match="CUDA_DEVICE_MAX_CONNECTIONS"):
        vx.parse_with_megatron(args, m.devices, None, 9)
    vx.parse_with_megatron(args, m.devices, None, 10)  # Blackwell: no longer required
    data = args.index("--mock-data")
    with pytest.raises(AssertionError):  # pretrain_gpt.py's default GPT2BPETokenizer needs a vocab file
        vx.parse_with_megatron(args[:data] + args[data + 7:], m.devices, "1", 9)
