"""Exports of a mapping (optimizer.export and `meshmap export`): Megatron-LM arguments, a DeepSpeed
config, a Chrome/Perfetto trace of one step. Small models on one DGX A100 node; no solver."""

from __future__ import annotations

import json
import shlex
from collections import defaultdict

import pytest
from typer.testing import CliRunner

import hw
import models
import optimizer
from hw.loader import ConfigError
from optimizer.model import cost
from optimizer.model.evaluate import prepare, stage_scores
from optimizer.tools.cli import app
from optimizer.tools.export import (
    MEGATRON_FLAGS, chrome_trace, deepspeed_config, deepspeed_notes, megatron_args, megatron_caveats,
    parse_megatron_args,
)
from optimizer.tools.export.trace import _flow_shop, _simulate
from optimizer.model.mapping import Mapping, OpChoice

runner = CliRunner()
NODE = hw.load("dgx-a100", nodes=1)  # 1 x 8 A100s


def work(name: str = "megatron-1.7b", batch: int = 64, seq: int | None = None) -> models.Workload:
    return models.Workload(model=models.load(name), global_batch=batch, seq_len=seq)


def megatron(w: models.Workload, machine=NODE, **kw) -> Mapping:
    return optimizer.baselines.megatron(w, machine, **kw)


# ------------------------------------------------------------------------------------- Megatron-LM

MEGATRON_CASES = [
    ("megatron-1.7b", dict(tp=1, pp=1, dp=8, micro_batch=2, recompute="full")),
    ("megatron-1.7b", dict(tp=2, pp=4, dp=1, micro_batch=1, recompute="selective", sequence_parallel=True)),
    ("megatron-1.7b", dict(tp=2, pp=2, dp=2, micro_batch=4, recompute="none")),
    ("megatron-1.7b", dict(tp=8, pp=1, dp=1, micro_batch=1, recompute="selective")),
    ("megatron-1.7b", dict(tp=1, pp=4, dp=2, micro_batch=1, recompute="full", virtual_stages=2)),
    ("llama2-7b", dict(tp=4, pp=2, dp=1, micro_batch=1, recompute="selective", sequence_parallel=True)),
]


@pytest.mark.parametrize("name, kw", MEGATRON_CASES)
def test_megatron_args_round_trip(name, kw):
    w = work(name)
    m = megatron(w, **kw)
    args = megatron_args(m, w, NODE)
    got = parse_megatron_args(args, world_size=m.devices)  # Megatron-LM: dp = world size / (tp x pp)
    assert (got["tp"], got["pp"], got["dp"]) == (m.tp, m.pp, m.dp)
    assert got["micro_batch"] == m.micro_batch and got["global_batch"] == w.global_batch
    assert got["micro_batches"] == w.global_batch // (m.dp * m.micro_batch)
    assert got["recompute"] == kw["recompute"]
    assert got["sequence_parallel"] is kw.get("sequence_parallel", False)
    assert got["virtual"] == kw.get("virtual_stages", 1)
    assert (got["layers"], got["hidden"], got["heads"], got["seq_len"]) == \
        (w.model.layers, w.model.hidden, w.model.heads, w.seq_len)
    assert got["max_position_embeddings"] >= got["seq_len"]  # Megatron-LM asserts this
    assert got["bf16"] and not got["distributed_optimizer"]
    if kw["recompute"] == "full":
        assert args[args.index("--recompute-method") + 1] == "uniform"
        assert args[args.index("--recompute-num-layers") + 1] == "1"
    assert all(a in MEGATRON_FLAGS for a in args if a.startswith("--"))


def test_megatron_args_llama_model_shape():
    w = work("llama2-7b")
    got = parse_megatron_args(megatron_args(megatron(w, tp=8, dp=1), w, NODE))
    assert got["ffn"] == 11008 and got["swiglu"] and got["normalization"] == "RMSNorm"
    assert got["position_embedding_type"] == "rope" and got["untie_embeddings"] and got["disable_bias_linear"]
    assert got["attention_dropout"] == 0.0 and got["hidden_dropout"] == 0.0
    assert not got["group_query_attention"]  # Llama2-7B: kv heads = heads


def test_megatron_args_grouped_query_attention():
    model = models.ModelConfig(name="gqa", layers=4, hidden=1024, heads=16, kv_heads=4, vocab=32000,
                               activation="swiglu", norm="rmsnorm", dropout=False, seq_len=1024)
    w = models.Workload(model=model, global_batch=16)
    got = parse_megatron_args(megatron_args(megatron(w, tp=4, dp=2), w, NODE))
    assert got["group_query_attention"] and got["query_groups"] == 4


def test_megatron_zero_stages():
    """ZeRO-1 = the distributed optimizer; ZeRO-2/3 = Megatron-FSDP sharding optimizer state and
    gradients (+ weights), with the flags its user guide requires."""
    w = work()
    m = megatron(w, tp=2, dp=4)
    for stage, strategy in ((0, None), (1, None), (2, "optim_grads"), (3, "optim_grads_params")):
        args = megatron_args(m.model_copy(update={"zero_stage": stage}), w, NODE)
        got = parse_megatron_args(args)
        assert got["zero_stage"] == stage
        assert got["distributed_optimizer"] is (stage >= 1) and got["megatron_fsdp"] is (stage >= 2)
        assert got.get("sharding_strategy") == strategy
        if stage >= 2:
            assert got["ckpt_format"] == "fsdp_dtensor" and got["no_gradient_accumulation_fusion"]


def test_megatron_gradient_precision():
    w = work()
    m = megatron(w, tp=2, dp=4)  # Megatron-LM's accounting: fp32 gradients
    assert m.fp32_grad_accumulation
    got = parse_megatron_args(megatron_args(m, w, NODE))
    assert got["grads_in_fp32"] and not got["grad_reduce_in_bf16"]
    half = m.model_copy(update={"fp32_grad_accumulation": False})
    got = parse_megatron_args(megatron_args(half, w, NODE))
    assert got["grad_reduce_in_bf16"] and not got["grads_in_fp32"]


def two_d_mapping(w: models.Workload) -> Mapping:
    """Megatron-LM's tp=4 splits on a 2 x 2 group, except fc1: rows split k, columns f (2D)."""
    ops = optimizer.baselines.megatron_ops(w, 4, "none", False)
    ops["fc1"] = OpChoice(split=("k", "f"))
    return Mapping(pp=1, dp=4, tp_shape=(2, 2), ops=ops)


def test_megatron_caveats():
    w = work()
    m = megatron(w, tp=2, dp=4)
    assert megatron_caveats(m, w, NODE) == []  # Megatron-LM's own accounting: nothing to say
    zero2 = m.model_copy(update={"zero_stage": 2, "fp32_grad_accumulation": False})
    (note,) = megatron_caveats(zero2, w, NODE)
    assert "--grad-reduce-in-bf16" in note and "fp32_grad_accumulation" in note
    interleaved = megatron(work(batch=12), pp=4, dp=2, virtual_stages=2)  # 6 micro-batches, pp 4
    assert any("divisible by pp" in n for n in megatron_caveats(interleaved, work(batch=12), NODE))
    gpt2_vocab = models.ModelConfig(name="v50257", layers=4, hidden=1024, heads=16, vocab=50257, seq_len=1024)
    w2 = models.Workload(model=gpt2_vocab, global_batch=16)
    (note,) = megatron_caveats(megatron(w2, tp=2, dp=4), w2, NODE)
    assert "50257 tokens to 50432" in note  # ceil(50257 / (128 x 2)) x 256


def test_megatron_rejects_a_2d_split():
    machine = hw.load("dgx-a100", nodes=2)  # a 2 x 8 grid: 2 x 2 tensor groups
    w = work(batch=16)
    m = two_d_mapping(w)
    optimizer.evaluate(m, w, machine)  # the cost model accepts it
    with pytest.raises(ConfigError, match=r"ops\.fc1\.split .*2D split") as err:
        megatron_args(m, w, machine)
    assert "\n" not in str(err.value)


def test_megatron_rejects_non_megatron_split_and_recompute():
    w = work()
    base = megatron(w, tp=2, dp=4, recompute="none")
    ops = dict(base.ops)
    ops["fc1"] = OpChoice(split=("s", "s"))  # Megatron-LM splits fc1 on the ffn dim
    with pytest.raises(ConfigError, match=r"ops\.fc1\.split"):
        megatron_args(base.model_copy(update={"ops": ops}), w, NODE)
    ops = dict(base.ops)
    ops["fc1"] = OpChoice(split=ops["fc1"].split, recompute=True)  # neither selective nor full
    with pytest.raises(ConfigError, match="recompute fc1"):
        megatron_args(base.model_copy(update={"ops": ops}), w, NODE)


def test_megatron_uneven_stages_as_pipeline_layout():
    w = work()  # 24 layers
    m = megatron(w, tp=1, pp=2, dp=4).model_copy(update={"layers_per_stage": (10, 14)})
    args = megatron_args(m, w, NODE)
    assert args[args.index("--pipeline-model-parallel-layout") + 1] == "Et*10|t*14L"
    got = parse_megatron_args(args, world_size=m.devices)
    assert (got["pp"], got["virtual"], got["chunk_layers"], got["dp"]) == (2, 1, (10, 14), 4)
    assert "--num-layers-per-virtual-pipeline-stage" not in args


def test_parse_megatron_args_rejects_unknown():
    with pytest.raises(ConfigError, match="--no-such-flag"):
        parse_megatron_args(["--no-such-flag", "1"])
    assert parse_megatron_args(["--tensor-model-parallel-size=4"])["tp"] == 4


# ---------------------------------------------------------------------------------------- DeepSpeed

# Documented keys only: https://www.deepspeed.ai/docs/config-json/ (top level; and the subkeys of
# "zero_optimization", "activation_checkpointing", "bf16"/"fp16" and "optimizer" listed there).
DEEPSPEED_KEYS = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "optimizer",
    "scheduler", "gradient_clipping", "bf16", "fp16", "zero_optimization", "activation_checkpointing",
    "steps_per_print", "wall_clock_breakdown", "data_types",
}
DEEPSPEED_SUBKEYS = {
    "zero_optimization": {
        "stage", "allgather_partitions", "allgather_bucket_size", "overlap_comm", "reduce_scatter",
        "reduce_bucket_size", "contiguous_gradients", "offload_param", "offload_optimizer",
        "stage3_max_live_parameters", "stage3_max_reuse_distance", "stage3_prefetch_bucket_size",
        "stage3_param_persistence_threshold", "sub_group_size", "round_robin_gradients",
    },
    "activation_checkpointing": {
        "partition_activations", "cpu_checkpointing", "contiguous_memory_optimization", "number_checkpoints",
        "synchronize_checkpoint_boundary", "profile",
    },
    "bf16": {"enabled"},
    "fp16": {"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale"},
    "optimizer": {"type", "params"},
    "data_types": {"grad_accum_dtype"},
}


@pytest.mark.parametrize("name, kw, zero", [
    ("megatron-1.7b", dict(tp=1, pp=1, dp=8, micro_batch=2, recompute="none"), 2),
    ("megatron-1.7b", dict(tp=2, pp=2, dp=2, micro_batch=4, recompute="full"), 1),
    ("llama2-7b", dict(tp=2, pp=1, dp=4, micro_batch=1, recompute="selective", sequence_parallel=True), 3),
])
def test_deepspeed_config(name, kw, zero):
    w = work(name)
    m = megatron(w, **kw).model_copy(update={"zero_stage": zero})
    cfg = deepspeed_config(m, w, NODE)
    assert set(cfg) <= DEEPSPEED_KEYS, set(cfg) - DEEPSPEED_KEYS
    for key, allowed in DEEPSPEED_SUBKEYS.items():
        assert set(cfg.get(key, {})) <= allowed, (key, set(cfg[key]) - allowed)
    assert json.loads(json.dumps(cfg)) == cfg
    # DeepSpeed: train_batch_size = micro-batch per GPU x gradient accumulation x data-parallel GPUs
    assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * \
        cfg["gradient_accumulation_steps"] * m.dp == w.global_batch
    assert cfg["train_micro_batch_size_per_gpu"] == m.micro_batch
    assert cfg["zero_optimization"]["stage"] == zero
    assert cfg["bf16"] == {"enabled": True}
    assert cfg["optimizer"]["type"] == "Adam"
    assert ("activation_checkpointing" in cfg) == (kw["recompute"] != "none")
    assert cfg["data_types"] == {"grad_accum_dtype": "fp32"}  # the Megatron baseline: fp32 gradients
    half = deepspeed_config(m.model_copy(update={"fp32_grad_accumulation": False}), w, NODE)
    assert half["data_types"] == {"grad_accum_dtype": "bf16"}


def test_deepspeed_checkpointing_means_the_recomputation():
    """Full recomputation saves each layer's input: partitioned over the tensor group with sequence
    parallelism; selective saves the attention core's inputs, already split by heads: not partitioned."""
    w = work("llama2-7b")
    sections = {}
    for recompute in ("full", "selective"):
        m = megatron(w, tp=2, dp=4, recompute=recompute, sequence_parallel=True)
        sections[recompute] = deepspeed_config(m, w, NODE)["activation_checkpointing"]
        (note,) = deepspeed_notes(m, w, NODE)
        assert f"--recompute-granularity {recompute}" in note
    assert sections["full"]["partition_activations"] is True
    assert sections["selective"]["partition_activations"] is False
    assert deepspeed_notes(megatron(w, tp=2, dp=4, recompute="none"), w, NODE) == []


def test_deepspeed_rejects_what_its_pipeline_engine_cannot_run():
    w = work()
    with pytest.raises(ConfigError, match="zero_stage 2"):
        deepspeed_config(megatron(w, pp=2, dp=4).model_copy(update={"zero_stage": 2}), w, NODE)
    with pytest.raises(ConfigError, match="interleaved"):
        deepspeed_config(megatron(w, pp=4, dp=2, virtual_stages=2), w, NODE)


# -------------------------------------------------------------------------------------------- trace

WORK_NAMES = {"forward", "backward", "recompute", "tp_comm", "zero_comm", "pp_comm", "dram"}  # per micro-batch
TRACE_NAMES = WORK_NAMES | {"bubble", "pp_fill_drain", "dp_comm", "optimizer", "optimizer_dram", "idle"}


def check_trace(m: Mapping, w: models.Workload, machine=NODE) -> dict:
    rep = optimizer.evaluate(m, w, machine)
    trace = json.loads(json.dumps(chrome_trace(m, w, machine)))  # valid JSON, round trip
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    for e in events:
        assert {"ph", "ts", "pid", "tid", "name"} <= set(e), e
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and {e["ph"] for e in events} <= {"X", "M"}
    per_stage = defaultdict(list)
    for e in spans:
        assert "dur" in e and e["dur"] >= 0 and e["ts"] >= 0
        assert e["name"] in TRACE_NAMES
        per_stage[e["pid"]].append(e)
    assert sorted(per_stage) == list(range(m.pp))
    micro_batches = w.global_batch // (m.dp * m.micro_batch)
    for s, evs in per_stage.items():
        # every stage's events, bubbles and idle included, add up to the modelled step (µs -> s)
        assert sum(e["dur"] for e in evs) / 1e6 == pytest.approx(rep.step_time_s, rel=1e-6)
        # ... its work to m x its per-micro-batch time, and they never overlap
        work_us = sum(e["dur"] for e in evs if e["name"] in WORK_NAMES)
        assert work_us / 1e6 == pytest.approx(micro_batches * rep.stage_times_s[s], rel=1e-9)
        evs.sort(key=lambda e: e["ts"])
        for a, b in zip(evs, evs[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-6 * rep.step_time_s
        assert sum(e["name"] == "forward" for e in evs) == micro_batches * m.virtual_stages
    assert trace["otherData"]["step_time_s"] == pytest.approx(rep.step_time_s, rel=1e-12)
    check_categories(m, w, machine, rep, spans)
    return trace


PER_MICRO_BATCH = ("compute", "recompute", "tp_comm_exposed", "zero_comm_exposed", "pp_comm_exposed", "dram")
SYNC = ("dp_comm_exposed", "optimizer", "optimizer_dram")


def check_categories(m: Mapping, w: models.Workload, machine, rep, spans: list[dict]) -> None:
    """Trace categories are breakdown keys, adding up as chrome_trace documents: on the slowest stage
    the per-micro-batch parts, and the bubble plus its wait for the longest sync; on the stage with
    the longest sync its sync parts."""
    assert {e["cat"] for e in spans} <= set(rep.breakdown)
    _, _, tables = prepare(m, w, machine)
    stages = stage_scores(m, tables)
    slow = max(range(m.pp), key=lambda i: rep.stage_times_s[i])
    sync = max(range(m.pp), key=lambda i: stages[i].sync_s)
    totals = defaultdict(float)
    for e in spans:
        totals[e["pid"], e["cat"]] += e["dur"] / 1e6
    close = dict(rel=1e-9, abs=1e-12 * rep.step_time_s)
    for cat in PER_MICRO_BATCH:
        assert totals[slow, cat] == pytest.approx(rep.breakdown.get(cat, 0.0), **close), cat
    wait = stages[sync].sync_s - stages[slow].sync_s
    assert totals[slow, "bubble"] == pytest.approx(rep.breakdown["bubble"] + wait, **close)
    for cat in SYNC:
        assert totals[sync, cat] == pytest.approx(rep.breakdown.get(cat, 0.0), **close), cat


@pytest.mark.parametrize("name, kw, batch, layout", [
    ("megatron-1.7b", dict(tp=1, pp=1, dp=8, micro_batch=2), 64, "1f1b"),                    # pp = 1
    ("megatron-1.7b", dict(tp=2, pp=4, dp=1, micro_batch=1), 16, "1f1b"),                    # pp = 4
    ("llama2-7b", dict(tp=2, pp=4, dp=1, recompute="selective", sequence_parallel=True), 8, "1f1b"),
    ("megatron-1.7b", dict(tp=1, pp=4, dp=2, micro_batch=1, virtual_stages=2), 16, "1f1b"),  # interleaved
    # interleaved with m = 6 micro-batches, not a multiple of pp: drawn as the cost model's flow shop
    ("megatron-1.7b", dict(tp=1, pp=4, dp=2, micro_batch=1, virtual_stages=3), 12, "cost-model flow shop"),
])
def test_trace_sums_to_step_time(name, kw, batch, layout):
    w = work(name, batch=batch, seq=1024 if name == "llama2-7b" else None)
    trace = check_trace(megatron(w, **kw), w)
    assert trace["otherData"]["layout"] == layout
    if kw.get("pp", 1) > 1:
        assert any(e["name"] == "bubble" for e in trace["traceEvents"])


def test_trace_zero_sharded_data_parallel():
    w = work()
    m = megatron(w, tp=1, pp=1, dp=8, recompute="none").model_copy(update={"zero_stage": 2})
    trace = check_trace(m, w)
    assert any(e["name"] == "dp_comm" for e in trace["traceEvents"])


def test_trace_zero3_gathers_are_not_tensor_parallel():
    """Without tensor parallelism a ZeRO-3 plan has no tp_comm: its exposed weight gathers are zero_comm."""
    w = work(batch=16)
    m = megatron(w, tp=1, pp=2, dp=4, recompute="none").model_copy(update={"zero_stage": 3})
    rep = optimizer.evaluate(m, w, NODE)
    assert rep.breakdown["zero_comm_exposed"] > 0
    spans = [e for e in check_trace(m, w)["traceEvents"] if e["ph"] == "X"]
    assert not any(e["name"] == "tp_comm" or e["cat"] == "tp_comm_exposed" for e in spans)
    assert {e["cat"] for e in spans if e["name"] == "zero_comm"} == {"zero_comm_exposed"}


def test_trace_with_dram_offload():
    wafer = hw.load("tmac-wafer")  # 8 x 8 dies with DRAM ports
    w = work(batch=16)
    m = Mapping(pp=2, dp=4, tp_shape=(2, 2), offload=("weights", "optimizer"))
    names = {e["name"] for e in check_trace(m, w, wafer)["traceEvents"]}
    assert {"dram", "optimizer_dram"} <= names
    with pytest.raises(ConfigError, match="offload"):
        megatron_args(m, w, wafer)
    with pytest.raises(ConfigError, match="offload"):
        deepspeed_config(m, w, wafer)


@pytest.mark.parametrize("p, m, v", [(1, 5, 1), (4, 8, 1), (4, 3, 1), (8, 16, 1), (4, 8, 2), (2, 4, 3)])
def test_1f1b_simulation_matches_cost_model_on_equal_stages(p, m, v):
    """On equal stages the simulated 1F1B (interleaved with m a multiple of pp) takes exactly
    cost.pipeline_time; the fallback layout takes it on any stages."""
    f, b = [0.25] * p, [0.5] * p
    pipe = cost.pipeline_time([(0.25 + 0.5) * v] * p, m, v)
    sched = _simulate(p, m, v, f, b)
    assert sched is not None
    assert max(e[4] for row in sched for e in row) == pytest.approx(pipe, rel=1e-12)
    f2, b2 = [0.25 * (1 + s) for s in range(p)], [0.5] * p
    flow = _flow_shop(p, m, v, f2, b2)
    pipe2 = cost.pipeline_time([(x + y) * v for x, y in zip(f2, b2)], m, v)
    assert max(e[4] for row in flow for e in row) == pytest.approx(pipe2, rel=1e-12)


# ---------------------------------------------------------------------------------------------- CLI

def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.stdout + result.stderr
    for n in needles:
        assert n in err, err


@pytest.fixture()
def plan(tmp_path):
    """A plan as `meshmap solve --out` writes it: the mapping plus model, hardware, batch and seq."""
    w = work()
    m = megatron(w, tp=2, pp=2, dp=2, micro_batch=2, recompute="selective", sequence_parallel=True)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"mapping": m.model_dump(mode="json"), "model": "megatron-1.7b", "hw": "dgx-a100",
                                "hw_overrides": {"nodes": 1}, "global_batch": 64, "seq_len": 2048}))
    return path, m, w


def test_cli_export_megatron(plan):
    path, m, w = plan
    result = run("export", str(path), "--format", "megatron")
    assert result.exit_code == 0, result.stderr
    assert shlex.split(result.stdout) == megatron_args(m, w, NODE)
    assert result.stderr.startswith("note: launch 8 processes") and len(result.stderr.splitlines()) == 1


def test_cli_export_megatron_notes(tmp_path):
    w = work()
    m = megatron(w, tp=1, pp=1, dp=8, recompute="none").model_copy(
        update={"zero_stage": 2, "fp32_grad_accumulation": False})
    path = tmp_path / "plan.json"
    m.save(path)
    result = run("export", str(path), "--format", "megatron", "--model", "megatron-1.7b", "--hw", "dgx-a100",
                 "--nodes", "1", "--batch", "64")
    assert result.exit_code == 0, result.stderr
    assert {"--use-megatron-fsdp", "optim_grads", "--grad-reduce-in-bf16"} <= set(shlex.split(result.stdout))
    notes = result.stderr.splitlines()
    assert notes[1:] == [f"note: {n}" for n in megatron_caveats(m, w, NODE)] and len(notes) == 2


def test_cli_export_deepspeed_bare_mapping(tmp_path):
    w = work()
    m = megatron(w, tp=1, pp=1, dp=8, micro_batch=4, recompute="none")
    path = tmp_path / "mapping.yaml"
    m.save(path)  # a bare mapping records no workload: give it
    result = run("export", str(path), "--format", "deepspeed", "--model", "megatron-1.7b", "--hw", "dgx-a100",
                 "--nodes", "1", "--batch", "64")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == deepspeed_config(m, w, NODE)


def test_cli_export_trace_to_file(plan, tmp_path):
    path, m, w = plan
    out = tmp_path / "trace.json"
    result = run("export", str(path), "--format", "trace", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert str(out) in result.stdout
    trace = json.loads(out.read_text())
    assert trace == json.loads(json.dumps(chrome_trace(m, w, NODE)))


def test_cli_export_errors(plan, tmp_path):
    path, _, _ = plan
    assert_one_line_error(run("export", str(path), "--format", "xml"), "--format", "xml")
    assert_one_line_error(run("export", str(path)), "--format")
    assert_one_line_error(run("export", str(path), "--format", "trace", "--out", str(tmp_path / "no" / "t.json")),
                          "--out")
    assert_one_line_error(run("export", str(tmp_path / "missing.json"), "--format", "trace"), "not found")
    bare = tmp_path / "bare.json"
    Mapping().save(bare)
    assert_one_line_error(run("export", str(bare), "--format", "trace", "--hw", "dgx-a100"), "--model")
    two_d = tmp_path / "2d.json"
    two_d_mapping(work(batch=16)).save(two_d)
    assert_one_line_error(run("export", str(two_d), "--format", "megatron", "--model", "megatron-1.7b",
                              "--hw", "dgx-a100", "--nodes", "2", "--batch", "16"), "fc1")
