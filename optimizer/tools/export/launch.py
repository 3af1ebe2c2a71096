"""Megatron-LM launch script: a torchrun line running pretrain_gpt.py with megatron_args, and the
environment Megatron-LM requires for the mapping."""

from __future__ import annotations

import shlex

from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from ...model.evaluate import evaluate, prepare
from ...model.mapping import Mapping
from .megatron import megatron_args

# Why CUDA_DEVICE_MAX_CONNECTIONS: Megatron-LM's validate_args (core_v0.16.1) asserts it is 1 with
# tensor or context parallelism on GPUs before Blackwell (compute capability < 10), and asserts it is
# not 1 with Megatron-FSDP; megatron/core/tensor_parallel/layers.py says why.
_ONE_QUEUE = """\
# Tensor parallelism (tp > 1, and sequence parallelism with it): Megatron-LM overlaps its tensor-parallel
# collectives with the GEMMs by issuing them first, which needs the GPU to run kernels in the order they
# are called: one hardware queue. Its validate_args stops unless this is 1 (not needed from Blackwell on).
export CUDA_DEVICE_MAX_CONNECTIONS=1"""
_FSDP_QUEUES = """\
# ZeRO stage {zero} runs as Megatron-FSDP, whose communication overlaps computation on several hardware
# queues: its validate_args stops when CUDA_DEVICE_MAX_CONNECTIONS is 1.
unset CUDA_DEVICE_MAX_CONNECTIONS"""


def torchrun_shape(mapping: Mapping, hw: Hardware) -> tuple[int, int]:
    """(nnodes, nproc_per_node) for mapping.devices processes on nodes of hw.cols devices (the grid's
    rows are the nodes of a switched cluster): whole nodes, or one partial node, or the processes
    spread evenly over the fewest nodes that hold them."""
    devices, per_node = mapping.devices, hw.cols
    if devices <= per_node:
        return 1, devices
    nodes = -(-devices // per_node)
    if devices % nodes:
        raise ConfigError(f"mapping uses {devices} devices: they cannot be spread evenly over {nodes} nodes of "
                          f"{per_node} (torchrun starts the same number of processes on every node)")
    return nodes, devices // nodes


def _array_lines(args: list[str]) -> list[str]:
    """Each flag with its value on one line, the synthetic-data flags under a note."""
    lines, i = [], 0
    while i < len(args):
        j = i + 1
        while j < len(args) and not args[j].startswith("--"):
            j += 1
        if args[i] == "--mock-data":
            lines += ["  # synthetic data, Megatron-LM's null tokenizer with the model's vocabulary (--vocab-size ids",
                      "  # + its end-of-document id); for real data use --data-path and the model's tokenizer instead"]
        lines.append("  " + shlex.join(args[i:j]))
        i = j
    return lines


def launch_script(mapping: Mapping | str, work: Workload, hw: Hardware | str) -> str:
    """A bash script launching the mapping with Megatron-LM: torchrun on every node (nnodes,
    nproc-per-node from torchrun_shape; the master address and port and the node rank are placeholders
    the user sets) running pretrain_gpt.py with megatron_args, and CUDA_DEVICE_MAX_CONNECTIONS as
    Megatron-LM requires (1 with tensor parallelism; unset with Megatron-FSDP). TRAIN_ITERS and LR are
    the user's; extra arguments go on to pretrain_gpt.py. Raises ConfigError as megatron_args does."""
    mapping, machine, _tables = prepare(mapping, work, hw)
    args = megatron_args(mapping, work, machine)
    nodes, per_node = torchrun_shape(mapping, machine)
    rep = evaluate(mapping, work, machine)
    v = f" x {mapping.virtual_stages} virtual stages" if mapping.virtual_stages > 1 else ""
    env = []
    if mapping.zero_stage >= 2:
        env.append(_FSDP_QUEUES.format(zero=mapping.zero_stage))
    elif mapping.tp > 1:
        env.append(_ONE_QUEUE)
    lines = [
        "#!/usr/bin/env bash",
        f"# Megatron-LM launch of a meshmap plan: {work.model.name} on {machine.name}, {mapping.devices} processes = "
        f"tp {mapping.tp} x pp {mapping.pp}{v} x dp {mapping.dp},",
        f"# micro-batch {mapping.micro_batch}, global batch {work.global_batch}, sequence {work.seq_len}; meshmap "
        f"scores the step at {rep.step_time_s:.4g} s.",
        f"# Run it on each of the {nodes} node(s) from the root of a Megatron-LM checkout (pretrain_gpt.py), with",
        f"# MASTER_ADDR and MASTER_PORT of node 0, NODE_RANK = 0..{nodes - 1}, and your TRAIN_ITERS and LR.",
        "# Further arguments are passed on to pretrain_gpt.py.",
        "set -euo pipefail",
        ': "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"',
        ': "${MASTER_PORT:?set MASTER_PORT to a free port on node 0}"',
        ': "${NODE_RANK:?set NODE_RANK to the index of this node}"',
        ': "${TRAIN_ITERS:?set TRAIN_ITERS, the number of training steps}"',
        ': "${LR:?set LR, the peak learning rate}"',
        *env,
        "",
        "MEGATRON_ARGS=(",
        *_array_lines(args),
        ")",
        f"exec torchrun --nnodes {nodes} --nproc-per-node {per_node} --node-rank \"$NODE_RANK\" \\",
        '  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \\',
        '  pretrain_gpt.py "${MEGATRON_ARGS[@]}" --train-iters "$TRAIN_ITERS" --lr "$LR" "$@"',
    ]
    return "\n".join(lines) + "\n"
