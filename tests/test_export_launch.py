"""Megatron-LM exports that launch: the pipeline layout string, the vocabulary flags, the torchrun
launch script (run by bash with a stand-in torchrun) and `meshmap export --format launch`."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.model.mapping import Mapping, chunk_layers
from optimizer.tools.cli import app
from optimizer.tools.cli.export import launch_path
from optimizer.tools.export import launch_script, megatron_args, parse_megatron_args, pipeline_layout
from optimizer.tools.export.launch import torchrun_shape
from optimizer.tools.export.layout import expand_layout
from optimizer.tools.export.megatron import _pipeline_args, vocab_padding

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from validate_exports import run_launch_script  # noqa: E402

NODE = hw.load("dgx-a100", nodes=1)


def work(name: str = "megatron-1.7b", batch: int = 64) -> models.Workload:
    return models.Workload(model=models.load(name), global_batch=batch)


# ----------------------------------------------------------------------------------- layout string

def test_pipeline_layout_of_the_issue_example():
    """Llama 3.1 405B's 126 layers in 32 chunks (pp 16 x v 2), the first and last holding 3 beside
    the embedding and the output layer: Megatron-LM's own example string."""
    assert pipeline_layout((3,) + (4,) * 30 + (3,)) == "Et*3|(t*4|)*30t*3L"
    assert pipeline_layout((24,)) == "Et*24L"
    assert pipeline_layout((1, 2, 2, 1)) == "Et|(t*2|)*2tL"


@pytest.mark.parametrize("chunks", [(10, 14), (7,) + (8,) * 14 + (7,), (3, 4, 4, 4, 4, 4, 4, 3), (5, 5, 6, 5, 5, 6),
                                    (1, 1, 1), (2, 3, 3, 2, 2, 3, 3, 2)])
def test_pipeline_layout_round_trip(chunks):
    """Unrolled as Megatron-LM's parser does: one chunk per entry, the embedding first, the loss last."""
    parts = expand_layout(pipeline_layout(chunks))
    assert [p.count("t") for p in parts] == list(chunks)
    assert parts[0].startswith("E") and parts[-1].endswith("L")
    assert "".join(parts).count("E") == 1 and "".join(parts).count("L") == 1
    assert set("".join(parts)) <= set("ELt")


def test_uneven_interleaved_chunks_export_as_a_layout():
    """Uneven chunks of an interleaved Mapping (chunk k on stage k % pp) become the layout; even
    chunks keep Megatron-LM's even split flags."""
    w = models.Workload(model=models.ModelConfig(name="l30", layers=30, hidden=1024, heads=16, vocab=32000,
                                                 seq_len=1024), global_batch=16)
    m = Mapping(pp=4, dp=2, schedule="interleaved", virtual_stages=2, layers_per_chunk=(3, 4, 4, 4, 4, 4, 4, 3))
    args = _pipeline_args(m, w)
    got = parse_megatron_args(args + ["--num-layers", "30"])
    assert (got["pp"], got["virtual"], got["chunk_layers"]) == (4, 2, m.layers_per_chunk)
    assert tuple(sum(got["chunk_layers"][s::4]) for s in range(4)) == (7, 8, 8, 7)  # the stages' layers
    even = Mapping(pp=4, dp=2, schedule="interleaved", virtual_stages=2)
    assert _pipeline_args(even, work()) == ["--tensor-model-parallel-size", "1", "--pipeline-model-parallel-size",
                                            "4", "--num-layers-per-virtual-pipeline-stage", "3"]


def test_even_interleaved_export_reads_back_its_chunks():
    w = work(batch=16)
    m = optimizer.baselines.megatron(w, NODE, tp=1, pp=4, dp=2, micro_batch=1, virtual_stages=2)
    got = parse_megatron_args(megatron_args(m, w, NODE))
    assert got["virtual"] == 2 and got["layers_per_virtual_stage"] == 3 == chunk_layers(m, 24)[0]


# ----------------------------------------------------------------------------------------- vocabulary

@pytest.mark.parametrize("vocab, tp", [(32000, 8), (51200, 8), (128256, 8), (50257, 1), (50257, 2), (256000, 4)])
def test_vocab_padding_is_megatrons(vocab, tp):
    """Megatron-LM pads to a multiple of make-vocab-size-divisible-by x tp; the flag chosen keeps the
    model's vocabulary whenever tp divides it."""
    d, padded = vocab_padding(vocab, tp)
    assert padded == math.ceil(vocab / (d * tp)) * d * tp
    assert (padded == vocab) == (vocab % tp == 0)
    assert 1 <= d <= 128 and 128 % d == 0


def test_vocabulary_flags():
    w = work("llama2-7b")
    got = parse_megatron_args(megatron_args(optimizer.baselines.megatron(w, NODE, tp=8, dp=1), w, NODE))
    assert got["tokenizer_type"] == "NullTokenizer" and got["mock_data"]
    assert got["vocab_size"] + 1 == 32000  # the null tokenizer adds its end-of-document id
    assert vocab_padding(got["vocab_size"] + 1, 8) == (got["vocab_divisible_by"], 32000)


# --------------------------------------------------------------------------------------- launch script

@pytest.mark.parametrize("devices, per_node, shape", [(4, 8, (1, 4)), (8, 8, (1, 8)), (64, 8, (8, 8)),
                                                      (12, 8, (2, 6))])
def test_torchrun_shape(devices, per_node, shape):
    machine = hw.load("dgx-a100", nodes=max(1, -(-devices // per_node)))
    m = Mapping(dp=devices)
    assert torchrun_shape(m, machine) == shape


def test_torchrun_shape_refuses_an_uneven_spread():
    with pytest.raises(ConfigError, match="spread evenly"):
        torchrun_shape(Mapping(dp=13), hw.load("dgx-a100", nodes=2))


@pytest.mark.parametrize("kw, update, cdmc", [
    (dict(tp=2, pp=2, dp=2, recompute="selective", sequence_parallel=True), {}, "1"),
    (dict(tp=1, pp=2, dp=4), {}, "8"),  # no tensor parallelism: left as it was
    (dict(tp=1, dp=8), {"zero_stage": 3}, None),  # Megatron-FSDP: unset
    (dict(tp=2, dp=4), {"zero_stage": 2}, None),
])
def test_launch_script_runs_torchrun_with_the_flags(tmp_path, kw, update, cdmc):
    w = work()
    m = optimizer.baselines.megatron(w, NODE, **kw).model_copy(update=update)
    argv, got_cdmc = run_launch_script(launch_script(m, w, NODE), tmp_path)  # the stand-in starts with 8
    assert got_cdmc == cdmc
    assert argv[:argv.index("pretrain_gpt.py")] == ["--nnodes", "1", "--nproc-per-node", "8", "--node-rank", "0",
                                                    "--master-addr", "node0", "--master-port", "29500"]
    rest = argv[argv.index("pretrain_gpt.py") + 1:]
    assert rest == megatron_args(m, w, NODE) + ["--train-iters", "10", "--lr", "1.0e-4"]


def test_launch_script_needs_its_placeholders(tmp_path):
    import subprocess

    w = work()
    script = tmp_path / "launch.sh"
    script.write_text(launch_script(optimizer.baselines.megatron(w, NODE, tp=2, dp=4), w, NODE))
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "MASTER_ADDR" in done.stderr


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_export_launch(tmp_path):
    w = work()
    m = optimizer.baselines.megatron(w, NODE, tp=2, pp=2, dp=2, recompute="selective", sequence_parallel=True)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"mapping": m.model_dump(mode="json"), "model": "megatron-1.7b", "hw": "dgx-a100",
                                "hw_overrides": {"nodes": 1}, "global_batch": 64, "seq_len": 2048}))
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(plan), "--format", "launch"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == launch_script(m, w, NODE)
    flags = tmp_path / "args.txt"
    result = runner.invoke(app, ["export", str(plan), "--format", "megatron", "--out", str(flags)])
    assert result.exit_code == 0, result.stderr
    script = launch_path(flags)
    assert script == tmp_path / "args_launch.sh" and str(script) in result.stdout
    assert script.read_text() == launch_script(m, w, NODE) and script.stat().st_mode & 0o111
    assert shlex.split(flags.read_text()) == megatron_args(m, w, NODE)
