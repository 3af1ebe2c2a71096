"""Exports checked by their real consumers: Megatron-LM's own parse_args + validate_args, torchrun's
own argument parser, and DeepSpeed's own DeepSpeedConfig, on exports of the plans in CASES.

For each case the Megatron-LM launch script (optimizer.export.launch_script) is run by bash with a
stand-in `torchrun` on PATH that records its arguments and CUDA_DEVICE_MAX_CONNECTIONS; torchrun's
parser (torch.distributed.run.get_args_parser) reads those arguments, and Megatron-LM reads the
pretrain_gpt.py arguments as initialize_megatron does: parse_args, then validate_args with
pretrain_gpt.py's defaults, then its tokenizer (build_tokenizer) and the model config
(core_transformer_config_from_args, which checks a pipeline layout). No rejected flag, failed
assertion or changed degree is allowed: tp, pp, dp, virtual stages, per-chunk layers, micro-batch,
global batch, sequence length, ZeRO mode (distributed optimizer / Megatron-FSDP strategy), sequence
parallelism, recomputation, vocabulary. The DeepSpeed config is loaded with a model-parallel unit
giving the plan's data-parallel size; its batch arithmetic (train_batch_size = micro x grad_accum
x dp), ZeRO stage and gradient-accumulation dtype must equal the plan's.

What is faked, and why: one process plays rank 0 of the launch (RANK=0, LOCAL_RANK=0, WORLD_SIZE =
nnodes x nproc-per-node as torchrun would set them); validate_args asks torch for the GPU's
compute capability, answered with the plan's GPU (A100 8, H100 9; 9 for other dies); DeepSpeed
reads the data-parallel size from a model-parallel unit and needs torch.distributed: a one-process
gloo group on a file store. Nothing else of either tool is replaced.

Needs the `validate` extra (torch, megatron-core, deepspeed, triton; see README) and Megatron-LM's
training sources, which the megatron-core wheel does not ship: MEGATRON_LM = a Megatron-LM checkout
at the tag of the installed megatron-core (core_v0.16.1 for megatron-core 0.16.1).
Cases are (name, model, hardware, nodes, batch, seq, mapping); add rows to CASES for new degrees.

Run:  MEGATRON_LM=path/to/Megatron-LM python benchmarks/validate_exports.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE):  # this checkout's meshmap, and the benchmarks' common module
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import hw  # noqa: E402
import models  # noqa: E402
import optimizer  # noqa: E402
from hw.loader import ConfigError  # noqa: E402
from optimizer.model.mapping import chunk_layers  # noqa: E402
from optimizer.tools.export import deepspeed_config, launch_script  # noqa: E402
from optimizer.tools.export.megatron import vocab_padding  # noqa: E402

PRETRAIN_DEFAULTS = {"tokenizer_type": "GPT2BPETokenizer"}  # pretrain_gpt.py's args_defaults (core_v0.16.1)
GPU_ARCH = {"A100": 8, "H100": 9}  # CUDA compute capability (major): A100 8.0, H100 9.0 (NVIDIA CUDA GPUs table)


@dataclass
class Case:
    name: str
    model: str
    hw: str
    nodes: int
    batch: int
    seq: int | None
    mapping: dict[str, Any]  # optimizer.baselines.megatron(...) arguments, and Mapping fields to update
    update: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[optimizer.Mapping, models.Workload, hw.Hardware]:
        machine = hw.load(self.hw, nodes=self.nodes)
        work = models.Workload(model=models.load(self.model), global_batch=self.batch, seq_len=self.seq)
        m = optimizer.baselines.megatron(work, machine, **self.mapping)
        return (m.model_copy(update=self.update) if self.update else m), work, machine


L405_16 = (7,) + (8,) * 14 + (7,)  # Llama 3.1 405B's 126 layers on 16 stages, balanced
CASES = [
    Case("dense gpt tp2 dp4 selective", "megatron-1.7b", "dgx-a100", 1, 64, None,
         dict(tp=2, dp=4, micro_batch=2, recompute="selective")),
    Case("dense llama tp4 pp2 sp", "llama2-7b", "dgx-a100", 1, 64, None,
         dict(tp=4, pp=2, dp=1, recompute="selective", sequence_parallel=True)),
    Case("gqa llama2-70b tp8 pp2", "llama2-70b", "dgx-h100", 2, 64, None,
         dict(tp=8, pp=2, dp=1, recompute="full", sequence_parallel=True)),
    Case("pp4 interleaved v2", "megatron-1.7b", "dgx-a100", 1, 16, None,
         dict(tp=1, pp=4, dp=2, micro_batch=1, recompute="full", virtual_stages=2)),
    Case("uneven stages pp2 (10, 14)", "megatron-1.7b", "dgx-a100", 1, 64, None,
         dict(tp=1, pp=2, dp=4, recompute="none"), dict(layers_per_stage=(10, 14))),
    Case("llama3.1-405b tp8 pp16 uneven", "llama3.1-405b", "dgx-h100", 1024, 2048, 8192,
         dict(tp=8, pp=16, dp=64, recompute="selective", sequence_parallel=True), dict(layers_per_stage=L405_16)),
    Case("llama3.1-405b tp8 pp16 v2", "llama3.1-405b", "dgx-h100", 1024, 2048, 8192,
         dict(tp=8, pp=16, dp=64, recompute="selective", sequence_parallel=True, virtual_stages=2),
         dict(layers_per_stage=L405_16)),
    Case("llama3.1-405b tp8 pp16 v4", "llama3.1-405b", "dgx-h100", 1024, 2048, 8192,
         dict(tp=8, pp=16, dp=64, recompute="selective", sequence_parallel=True, virtual_stages=4),
         dict(layers_per_stage=L405_16)),
    Case("zero1 distributed optimizer", "llama2-7b", "dgx-a100", 1, 64, None,
         dict(tp=2, dp=4, recompute="selective", sequence_parallel=True), dict(zero_stage=1)),
    Case("zero2 megatron-fsdp", "llama2-7b", "dgx-a100", 1, 64, None,
         dict(tp=1, dp=8, recompute="full"), dict(zero_stage=2, fp32_grad_accumulation=False)),
    Case("zero3 megatron-fsdp", "llama2-7b", "dgx-a100", 1, 64, None,
         dict(tp=1, dp=8, recompute="full"), dict(zero_stage=3, fp32_grad_accumulation=False)),
    Case("zero3 megatron-fsdp tp2", "megatron-1.7b", "dgx-a100", 1, 64, None,
         dict(tp=2, dp=4, recompute="none"), dict(zero_stage=3)),
    Case("moe mixtral-8x7b tp8 pp4", "mixtral-8x7b", "dgx-h100", 8, 1024, 4096,
         dict(tp=8, pp=4, dp=2, recompute="selective", sequence_parallel=True)),
    Case("moe deepseek-moe-16b tp2 shared experts", "deepseek-moe-16b", "dgx-a100", 1, 64, 4096,
         dict(tp=2, dp=4, recompute="full", sequence_parallel=True)),
]
# per-chunk layouts checked with Megatron-LM's own PipelineParallelLayerLayout (no evaluate() needed):
# (name, layers, pp, chunk layers, base case). With a base case, the base's launch is also parsed and
# validated with this layout in place of its own (the layout flag checked apart from the plan's other flags)
BASE_405B = "llama3.1-405b tp8 pp16 uneven"
LAYOUTS = [("llama3.1-405b pp16 v2 E/L chunks of 3", 126, 16, (3,) + (4,) * 30 + (3,), BASE_405B),
           ("llama3.1-405b pp16 v2 chunk_layers", 126, 16, (4,) * 16 + (3,) + (4,) * 14 + (3,), BASE_405B),
           ("llama3.1-405b pp16 v4 chunk_layers", 126, 16, (2,) * 48 + (1,) + (2,) * 14 + (1,), BASE_405B),
           ("uneven pp4 v2", 30, 4, (3, 4, 4, 4, 4, 4, 4, 3), None)]


def megatron_source() -> Path | None:
    """The Megatron-LM checkout named by MEGATRON_LM, if it holds megatron/training/arguments.py."""
    path = os.environ.get("MEGATRON_LM")
    if path and (Path(path) / "megatron" / "training" / "arguments.py").is_file():
        return Path(path)
    return None


def missing() -> str | None:
    """Why the real consumers cannot run here, or None."""
    for module, what in (("torch", "torch"), ("megatron.core", "megatron-core"), ("deepspeed", "deepspeed"),
                         ("triton", "triton (megatron.training imports it)")):
        try:
            __import__(module)
        except ImportError:
            return f"{what} is not installed: pip install -e '.[validate]' (see README)"
    if megatron_source() is None:
        return ("MEGATRON_LM is not set to a Megatron-LM checkout (the megatron-core wheel has no "
                "megatron/training/arguments.py): git clone -b core_v<megatron-core version> Megatron-LM")
    return None


def _megatron() -> Any:
    """megatron.training.arguments from the checkout, megatron.core from the installed wheel (the
    checkout is appended to sys.path, so the installed package's megatron/core is found first)."""
    src = str(megatron_source())
    if src not in sys.path:
        sys.path.append(src)
    from megatron.training import arguments

    return arguments


def run_launch_script(script: str, workdir: Path) -> tuple[list[str], str | None]:
    """Run the script with bash and a stand-in torchrun: (torchrun's arguments, its
    CUDA_DEVICE_MAX_CONNECTIONS or None when unset)."""
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "torchrun"
    shim.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "json.dump({'argv': sys.argv[1:], 'cdmc': os.environ.get('CUDA_DEVICE_MAX_CONNECTIONS')},"
                    " open(os.environ['TORCHRUN_RECORD'], 'w'))\n")
    shim.chmod(0o755)
    (workdir / "launch.sh").write_text(script)
    record = workdir / "torchrun.json"
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", TORCHRUN_RECORD=str(record),
               MASTER_ADDR="node0", MASTER_PORT="29500", NODE_RANK="0", TRAIN_ITERS="10", LR="1.0e-4",
               CUDA_DEVICE_MAX_CONNECTIONS="8")  # a value the script must set or unset as Megatron-LM needs
    subprocess.run(["bash", str(workdir / "launch.sh")], env=env, check=True, cwd=workdir, timeout=60)
    got = json.loads(record.read_text())
    return got["argv"], got["cdmc"]


def _zero_stage(a: Any) -> int:
    if a.use_megatron_fsdp:
        return {"optim_grads": 2, "optim_grads_params": 3}.get(a.data_parallel_sharding_strategy, 1)
    return 1 if a.use_distributed_optimizer else 0


def _chunks(a: Any, pp: int) -> tuple[int, ...]:
    """Transformer layers of each model chunk as Megatron-LM builds them (layout order): from its
    parsed pipeline layout, else its even split of num_layers over pp x virtual stages."""
    layout = a.pipeline_model_parallel_layout
    if layout is None:
        n = pp * (a.virtual_pipeline_model_parallel_size or 1)
        return (a.num_layers // n,) * n
    from megatron.core.transformer.enums import LayerType
    from megatron.core.transformer.pipeline_parallel_layer_layout import PipelineParallelLayerLayout

    lay = layout if isinstance(layout, PipelineParallelLayerLayout) else PipelineParallelLayerLayout(layout, pp)
    v = lay.virtual_pipeline_model_parallel_size
    return tuple(lay.layout[k % pp][k // pp].count(LayerType.decoder) for k in range(pp * v))


def _without_gpu_kernels(a: Any) -> Any:
    """The parsed arguments for building the model config on a machine without Transformer Engine
    (a GPU library): its fused RoPE kernel, on by default, is switched off; nothing else changes."""
    import copy

    try:
        import transformer_engine  # noqa: F401

        return a
    except ImportError:
        a = copy.copy(a)
        a.apply_rope_fusion = False
        return a


def parse_with_megatron(argv: list[str], world: int, cdmc: str | None, arch: int) -> tuple[Any, Any]:
    """Megatron-LM's parse_args + validate_args (+ tokenizer, model config) on pretrain_gpt.py's
    arguments; (args, TransformerConfig). Raises on a rejected flag (SystemExit) or a failed check."""
    arguments = _megatron()
    from megatron.training.tokenizer import build_tokenizer

    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": str(world)}
    saved = {k: os.environ.get(k) for k in (*env, "CUDA_DEVICE_MAX_CONNECTIONS")}
    os.environ.update(env)
    os.environ.pop("CUDA_DEVICE_MAX_CONNECTIONS", None)
    if cdmc is not None:
        os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = cdmc
    arch_probe, arguments.get_device_arch_version = arguments.get_device_arch_version, lambda: arch
    old_argv, sys.argv = sys.argv, ["pretrain_gpt.py", *argv]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                a = arguments.parse_args()
            except SystemExit:
                raise ValueError(f"Megatron-LM's parser rejected the arguments: {err.getvalue().strip()}") from None
            arguments.validate_args(a, dict(PRETRAIN_DEFAULTS))
            build_tokenizer(a)
            config = arguments.core_transformer_config_from_args(_without_gpu_kernels(a))
    finally:
        sys.argv, arguments.get_device_arch_version = old_argv, arch_probe
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return a, config


def _gpu_arch(machine: hw.Hardware) -> int:
    return next((a for key, a in GPU_ARCH.items() if key in machine.die.name), 9)


def _compare(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [f"{k}: plan {want[k]!r}, parsed {got[k]!r}" for k in want if want[k] != got[k]]


def _moe_want(model: models.ModelConfig) -> dict[str, Any]:
    """The experts as the plan's model has them (nothing for a dense model)."""
    if not model.experts:
        return {}
    return {"experts": model.experts, "top_k": model.experts_per_token, "expert_ffn": model.expert_ffn_size,
            "shared_ffn": model.shared_experts * model.expert_ffn_size or None, "moe_layers": model.moe_layers}


def _moe_got(a: Any, model: models.ModelConfig) -> dict[str, Any]:
    """The experts as Megatron-LM parsed them (nothing for a dense model)."""
    if not model.experts:
        return {}
    freq = a.moe_layer_freq  # an int k (every k-th layer) or Megatron-LM's 0/1 list per layer
    moe_layers = sum(freq) if isinstance(freq, list) else len(range(0, a.num_layers, freq))
    return {"experts": a.num_experts, "top_k": a.moe_router_topk, "expert_ffn": a.moe_ffn_hidden_size,
            "shared_ffn": a.moe_shared_expert_intermediate_size, "moe_layers": moe_layers}


def check_megatron(case: Case) -> dict[str, Any]:
    """The launch script through bash, torchrun's parser and Megatron-LM's; a row with every
    parsed degree next to the plan's and `mismatches` (empty when all agree)."""
    m, work, machine = case.build()
    script = launch_script(m, work, machine)
    from torch.distributed.run import get_args_parser

    with tempfile.TemporaryDirectory() as tmp:
        argv, cdmc = run_launch_script(script, Path(tmp))
    run = get_args_parser().parse_args(argv)
    nnodes, nproc = int(run.nnodes), int(run.nproc_per_node)
    a, config = parse_with_megatron(run.training_script_args, nnodes * nproc, cdmc, _gpu_arch(machine))
    want = {"world": m.devices, "tp": m.tp, "pp": m.pp, "dp": m.dp, "virtual": m.virtual_stages,
            "chunk_layers": chunk_layers(m, work.model.layers), "micro_batch": m.micro_batch,
            "global_batch": work.global_batch, "seq_len": work.seq_len, "zero_stage": m.zero_stage,
            "sequence_parallel": "--sequence-parallel" in run.training_script_args,
            "num_layers": work.model.layers, "padded_vocab": vocab_padding(work.model.vocab, m.tp)[1],
            "script": "pretrain_gpt.py", **_moe_want(work.model)}
    pp = a.pipeline_model_parallel_size
    chunks = _chunks(a, pp)
    got = {"world": nnodes * nproc, "tp": a.tensor_model_parallel_size, "pp": pp, "dp": a.data_parallel_size,
           "virtual": a.virtual_pipeline_model_parallel_size or 1, "chunk_layers": chunks,
           "micro_batch": a.micro_batch_size, "global_batch": a.global_batch_size, "seq_len": a.seq_length,
           "zero_stage": _zero_stage(a), "sequence_parallel": bool(config.sequence_parallel),
           "num_layers": config.num_layers, "padded_vocab": a.padded_vocab_size, "script": run.training_script,
           **_moe_got(a, work.model)}
    return {"case": case.name, "status": "accepted", "nnodes": nnodes, "nproc_per_node": nproc,
            "cuda_device_max_connections": cdmc, "recompute": a.recompute_granularity,
            "sharding": a.data_parallel_sharding_strategy if a.use_megatron_fsdp else None,
            "layout": a.pipeline_model_parallel_layout and str(a.pipeline_model_parallel_layout),
            "parsed": got, "mismatches": _compare(want, got)}


_DIST: list[Any] = []


def _deepspeed_dist() -> None:
    """A one-process gloo group (file store, no network) for DeepSpeed's rank lookups."""
    if _DIST:
        return
    import deepspeed
    import torch.distributed as tdist

    store = Path(tempfile.mkdtemp()) / "store"
    with contextlib.redirect_stdout(io.StringIO()):
        tdist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        deepspeed.init_distributed(dist_backend="gloo")
    _DIST.append(store)


def check_deepspeed(case: Case) -> dict[str, Any]:
    """DeepSpeedConfig on the exported JSON with the plan's data-parallel size; a row with its batch
    arithmetic and `mismatches`."""
    m, work, machine = case.build()
    try:
        cfg = deepspeed_config(m, work, machine)
    except ConfigError as err:
        return {"case": case.name, "status": "not expressible", "reason": str(err)}
    _deepspeed_dist()
    from deepspeed.runtime.config import DeepSpeedConfig

    class DataParallelUnit:  # DeepSpeed's model-parallel unit interface: the data-parallel size
        def get_data_parallel_world_size(self) -> int:
            return m.dp

    with contextlib.redirect_stdout(io.StringIO()):
        ds = DeepSpeedConfig(json.loads(json.dumps(cfg)), mpu=DataParallelUnit())
    micro_batches = work.global_batch // (m.dp * m.micro_batch)
    grad_dtype = "fp32" if m.fp32_grad_accumulation else work.dtype
    want = {"train_batch_size": work.global_batch, "micro_batch": m.micro_batch, "grad_accum": micro_batches,
            "dp": m.dp, "zero_stage": m.zero_stage, "grad_accum_dtype": grad_dtype}
    got = {"train_batch_size": ds.train_batch_size, "micro_batch": ds.train_micro_batch_size_per_gpu,
           "grad_accum": ds.gradient_accumulation_steps, "dp": ds.world_size, "zero_stage": ds.zero_optimization_stage,
           "grad_accum_dtype": ds.grad_accum_dtype}
    bad = _compare(want, got)
    if ds.train_batch_size != ds.train_micro_batch_size_per_gpu * ds.gradient_accumulation_steps * ds.world_size:
        bad.append("train_batch_size != micro x grad_accum x dp")
    return {"case": case.name, "status": "accepted", "parsed": got,
            "partition_activations": ds.activation_checkpointing_config.partition_activations, "mismatches": bad}


def check_layout(name: str, layers: int, pp: int, chunks: tuple[int, ...], base: str | None) -> dict[str, Any]:
    """optimizer.export.pipeline_layout through Megatron-LM's PipelineParallelLayerLayout and its
    validate_layer_layout (the embedding first, the loss last, `layers` transformer layers); with a
    base case, also the base's launch arguments with this layout through parse_args + validate_args."""
    from optimizer.tools.export import megatron_args, pipeline_layout

    _megatron()
    from megatron.core.transformer.pipeline_parallel_layer_layout import PipelineParallelLayerLayout

    text = pipeline_layout(chunks)
    lay = PipelineParallelLayerLayout(text, pp)
    lay.validate_layer_layout(layers, None)
    got = _chunks(type("ParsedArgs", (), {"pipeline_model_parallel_layout": lay})(), pp)
    bad = [] if got == tuple(chunks) else [f"chunk layers: plan {chunks}, parsed {got}"]
    row = {"case": name, "status": "accepted", "layout": text, "virtual": lay.virtual_pipeline_model_parallel_size}
    if base is not None:
        m, work, machine = next(c for c in CASES if c.name == base).build()
        args = megatron_args(m, work, machine)
        args[args.index("--pipeline-model-parallel-layout") + 1] = text
        a, _ = parse_with_megatron(args, m.devices, "1", _gpu_arch(machine))
        parsed = (a.tensor_model_parallel_size, a.pipeline_model_parallel_size, a.data_parallel_size,
                  a.virtual_pipeline_model_parallel_size, _chunks(a, pp))
        want = (m.tp, m.pp, m.dp, len(chunks) // pp, tuple(chunks))
        bad += [] if parsed == want else [f"launch of {base} with this layout: plan {want}, parsed {parsed}"]
        row["validated_with"] = base
    return dict(row, mismatches=bad)


def run_all(cases: list[Case] = CASES) -> dict[str, list[dict[str, Any]]]:
    """Every check; rows per consumer."""
    return {"megatron": [check_megatron(c) for c in cases], "deepspeed": [check_deepspeed(c) for c in cases],
            "layout": [check_layout(*row) for row in LAYOUTS]}


def main() -> int:
    from common import claim, write_result

    reason = missing()
    if reason:
        print(f"cannot run the real consumers: {reason}", file=sys.stderr)
        return 2
    import deepspeed
    import megatron.core
    import torch

    res = run_all()
    rows = [dict(consumer=k, **row) for k, rows in res.items() for row in rows]
    for row in rows:
        print(f"{row['consumer']:9} {row['case']:34} {row['status']:20} {'; '.join(row.get('mismatches', [])) or ''}")
    rejected = sum(bool(r.get("mismatches")) for r in rows)
    accepted = {k: sum(r["status"] == "accepted" for r in res[k]) for k in res}
    expressible = sum(r["status"] != "not expressible" for r in res["deepspeed"])
    import hashlib

    digest = hashlib.sha256((megatron_source() / "megatron/training/arguments.py").read_bytes()).hexdigest()
    extra = {"consumers": {"megatron_core": megatron.core.__version__, "deepspeed": deepspeed.__version__,
                           "torch": torch.__version__, "megatron_lm_arguments_py_sha256": digest}}
    write_result("validate_exports", rows,
                 [claim("exports_rejected_or_changed", 0, rejected, "count"),
                  claim("megatron_launches_accepted", len(res["megatron"]), accepted["megatron"], "count"),
                  claim("deepspeed_configs_accepted", expressible, accepted["deepspeed"], "count"),
                  claim("pipeline_layouts_accepted", len(res["layout"]), accepted["layout"], "count")], extra)
    return 1 if rejected else 0


if __name__ == "__main__":
    raise SystemExit(main())
