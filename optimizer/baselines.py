"""Peer systems as fixed mappings their own heuristics would pick.

Memory accounting: the Megatron-LM baseline uses Megatron's own (fp32 gradient accumulation
buffer: 18 B/param: 2 weights + 4 grads + 12 Adam); the others use ZeRO's 16 B/param.
"""

from __future__ import annotations

from typing import Literal

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import SELECTIVE_RECOMPUTE
from models.schema import Workload

from .mapping import Mapping, OpChoice, StageGroup



def squarest(t: int, rows: int, cols: int) -> tuple[int, int] | None:
    """The most square r×c with r·c = t that tiles a rows×cols grid (fewest rows on ties)."""
    best = None
    for r in range(1, t + 1):
        if t % r:
            continue
        c = t // r
        if rows % r or cols % c:
            continue
        if best is None or abs(r - c) < abs(best[0] - best[1]):
            best = (r, c)
    return best


def megatron_shape(hw: Hardware, tp: int) -> tuple[int, int]:
    """Megatron keeps tensor parallelism inside a node (a row of the grid) when it can."""
    if hw.cols % tp == 0:
        return (1, tp)
    shape = squarest(tp, hw.rows, hw.cols)
    if shape is None:
        raise ConfigError(f"tp ({tp}) does not tile the {hw.rows}x{hw.cols} grid")
    return shape


def megatron_ops(work: Workload, tp: int, recompute: str, sequence_parallel: bool) -> dict[str, OpChoice]:
    """Megatron-LM's 1D tensor parallelism: heads for attention, column/row pairs for the linears,
    vocab-parallel embedding, head and loss; norms, dropouts and residuals replicated or, with
    sequence parallelism, split on the sequence."""
    if recompute not in ("none", "selective", "full"):
        raise ConfigError(f"recompute must be one of none, selective, full; got {recompute!r}")
    model = work.model
    t = tp > 1
    seq = ("s", "s") if (sequence_parallel and t) else (None, None)

    def one(dim: str) -> tuple[str | None, str | None]:
        return (dim, dim) if t else (None, None)

    kv = one("g") if model.n_kv_heads % tp == 0 else (None, None)
    split = {
        "ln1": seq, "q_proj": one("a"), "kv_proj": kv, "qk": one("a"), "softmax": one("a"),
        "attn_dropout": one("a"), "av": one("a"), "out_proj": one("a"), "out_dropout": seq, "add1": seq,
        "ln2": seq, "fc1": one("f"), "act": one("f"), "fc2": one("f"), "mlp_dropout": seq, "add2": seq,
        "embedding": one("v"), "final_norm": seq, "lm_head": one("v"), "loss": one("v"),
    }
    block = {"ln1", "q_proj", "kv_proj", "qk", "softmax", "attn_dropout", "av", "out_proj", "out_dropout",
             "add1", "ln2", "fc1", "act", "fc2", "mlp_dropout", "add2"}
    if not model.dropout:
        for k in ("attn_dropout", "out_dropout", "mlp_dropout"):
            split.pop(k)
            block.discard(k)
    rec = set() if recompute == "none" else (set(SELECTIVE_RECOMPUTE) & block if recompute == "selective" else block)
    return {k: OpChoice(split=v, recompute=k in rec) for k, v in split.items()}


def megatron_groups(hw: Hardware, pp: int, dp: int, shape: tuple[int, int]) -> tuple[StageGroup, ...]:
    """Megatron's rank order (tensor fastest, then data, then pipeline) on row-major tiles."""
    r, c = shape
    tiles = [(i * r, j * c) for i in range(hw.rows // r) for j in range(hw.cols // c)]
    tiles = [t for t in tiles if all(hw.usable((t[0] + a, t[1] + b)) for a in range(r) for b in range(c))]
    if len(tiles) < pp * dp:
        raise ConfigError(f"pp x dp x tp = {pp * dp * r * c} dies do not fit on {hw.name} "
                          f"({hw.num_dies} usable dies)")
    return tuple(StageGroup(stage=s, replica=d, origin=tiles[s * dp + d]) for s in range(pp) for d in range(dp))


def megatron(work: Workload, hw: Hardware, tp: int = 1, pp: int = 1, dp: int = 1, micro_batch: int = 1,
             recompute: Literal["none", "selective", "full"] = "full", sequence_parallel: bool = False,
             virtual_stages: int = 1) -> Mapping:
    """The fixed Megatron-LM mapping: TP inside a node, PP across nodes, DP over the rest."""
    for name, v in (("tp", tp), ("pp", pp), ("dp", dp), ("micro_batch", micro_batch)):
        if v <= 0:
            raise ConfigError(f"{name} must be > 0, got {v}")
    shape = megatron_shape(hw, tp)
    return Mapping(
        pp=pp, dp=dp, tp_shape=shape, micro_batch=micro_batch, zero_stage=0,
        schedule="interleaved" if virtual_stages > 1 else "1f1b", virtual_stages=virtual_stages,
        ops=megatron_ops(work, tp, recompute, sequence_parallel),
        groups=megatron_groups(hw, pp, dp, shape), fp32_grad_accumulation=True,
        name=f"megatron tp={tp} pp={pp} dp={dp} mb={micro_batch} recompute={recompute}"
             f"{' sp' if sequence_parallel else ''}",
    )
