"""The strategy space (operator-centric encoding) and its named restrictions.

Outer degrees, enumerated: pipeline stages p, data-parallel replicas d, tensor group r×c, micro-
batch b, ZeRO stage, schedule (1F1B, interleaved with v chunks, or layer-wise with one stage and
tensor classes in DRAM), the layer layout (chunk_layouts). Inner, per operator of the
block (the solver's variables): one partition option (sharding.options) and a recompute flag.

Named restrictions reproduce what peers search:
  full       everything
  megatron   1D TP (heads / column-row linears, vocab-parallel head) inside a node, optional
             sequence parallelism, recompute none / selective / full, PP (interleaved, uneven
             chunks) and DP; ZeRO 0, the distributed optimizer (1) and Megatron-FSDP (2, 3)
  deepspeed  no tensor split; ZeRO 0–3 data parallelism; its pipeline engine (1F1B, blocking
             transfers, ZeRO 0–1 only); activation checkpointing on or off
  accpar     each linear picks AccPar's type I (batch), II (reduced dim) or III (output dim) on a
             1D group; no pipeline, no recompute
  (only full and hecaton may pick the layer-wise schedule)
  hecaton    2D weight-stationary partition of every linear on one r×c group spanning the grid,
             1F1B or its layer-wise DRAM-saving schedule
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import RECOMPUTE_POLICIES, Graph, recompute_set
from models.schema import Workload

from ..model.cost import OFFLOAD_CLASSES
from ..model.layout import balanced_layers, light_ends_layers, stage_layers
from ..model.sharding import Option, options as op_options

SPACES = ("full", "megatron", "deepspeed", "accpar", "hecaton")
MICRO_BATCHES = (1, 2, 4, 8, 16, 32)
LINEARS = ("q_proj", "kv_proj", "out_proj", "fc1", "fc2", "lm_head")


@dataclass(frozen=True)
class OuterPoint:
    pp: int
    dp: int
    shape: tuple[int, int]
    micro_batch: int
    zero_stage: int
    virtual: int = 1
    recompute_policy: str | None = None  # fixed policy (megatron, deepspeed), None = solver's choice
    layer_group: int = 1  # > 1: the layer-wise schedule (pp = 1), micro-batches each layer runs in turn
    layers_per_chunk: tuple[int, ...] | None = None  # pp x virtual chunks (Mapping.layers_per_chunk); None = balanced

    @property
    def dies(self) -> int:
        return self.pp * self.dp * self.shape[0] * self.shape[1]


def interleavable(layers: int, pp: int, virtual: int) -> bool:
    """Can `layers` layers run on pp stages of `virtual` chunks each, the stages balanced and each
    stage's layers split evenly over its chunks: every chunk gets a layer (virtual 1 always can)."""
    return virtual == 1 or (pp > 1 and layers // pp >= virtual)


def chunk_layouts(layers: int, pp: int, virtual: int) -> list[tuple[int, ...] | None]:
    """The layer layouts the enumeration tries at pp stages of `virtual` chunks: the balanced one
    (None: balanced stages, each split evenly over its chunks) and, with a pipeline, the one whose
    first and last chunks (embedding, output layer) hold a layer less (layout.light_ends_layers)
    when its stages hold other numbers of layers (the step depends on those only)."""
    out: list[tuple[int, ...] | None] = [None] if interleavable(layers, pp, virtual) else []
    light = light_ends_layers(layers, pp * virtual) if pp > 1 else None
    if light is not None and (not out or stage_layers(light, pp) != balanced_layers(layers, pp)):
        out.append(light)
    return out


def _layout_error(p: OuterPoint, layers: int) -> str | None:
    """Why an explicit point's layer layout cannot run the model (None: it can)."""
    n = p.pp * p.virtual
    if p.virtual > 1 and p.pp == 1:
        return "virtual stages need pp > 1"
    chunks = p.layers_per_chunk
    if chunks is None:
        if not interleavable(layers, p.pp, p.virtual):
            return (f"virtual stages {p.virtual} leave a chunk without a layer ({layers} layers on pp {p.pp}); "
                    f"give layers_per_chunk")
        return None
    if len(chunks) != n or min(chunks) < 1 or sum(chunks) != layers:
        return (f"layers_per_chunk {tuple(chunks)} must give each of the pp x v = {n} chunks at least one layer, "
                f"{layers} in all")
    return None


def inexpressible(p: OuterPoint, layers: int, batch: int) -> str | None:
    """Why a model of `layers` layers and a global batch of `batch` sequences cannot run outer point
    p (None: it can): the rules the enumeration of outer_points() keeps to, for explicit points."""
    if batch % (p.dp * p.micro_batch):
        return f"global batch {batch} is not divisible by dp x micro-batch ({p.dp} x {p.micro_batch})"
    if p.pp > layers:
        return f"pp {p.pp} exceeds the model's {layers} layers"
    why = _layout_error(p, layers)
    if why is not None:
        return why
    if p.layer_group > 1 and (p.pp > 1 or p.virtual > 1):
        return "the layer-wise schedule (layer_group > 1) runs without pipeline stages or interleaving"
    if p.layer_group > 1 and batch % (p.dp * p.micro_batch * p.layer_group):
        return (f"layer_group {p.layer_group} does not divide the {batch // (p.dp * p.micro_batch)} micro-batches "
                f"per step")
    return None


@dataclass(frozen=True)
class Space:
    name: str
    zero_stages: tuple[int, ...] = (0, 1, 2, 3)
    virtual: tuple[int, ...] = (1, 2, 4)
    pipeline: bool = True
    tensor: bool = True
    recompute_policies: tuple[str | None, ...] = (None,)
    fp32_grads: bool = False
    whole_grid: bool = False
    offload: bool = True  # may tensor classes live in DRAM behind the ports (when the machine has them)
    layerwise: bool = True  # may one-stage points run the layer-wise schedule (when classes may go to DRAM)
    free_ops: frozenset[str] | None = None  # if set, every other op is fixed: replicated, stored
    points: tuple[OuterPoint, ...] | None = None  # if set, exactly these outer points
    pp_transfer: str = "overlapped"  # Mapping.pp_transfer of the space's pipelines
    pipeline_zero_stages: tuple[int, ...] = (0, 1, 2, 3)  # ZeRO stages allowed with pp > 1

    def shapes(self, hw: Hardware, work: Workload | None = None) -> list[tuple[int, int]]:
        """Tensor group shapes r×c that fit the grid. A side need not divide the grid's: the aligned
        tiles of the shape cover the grid's top-left part and the dies beyond stay idle
        (topology.usable_tiles), so the space on a grid holds the space of every sub-grid anchored
        at its corner. A side that divides neither the grid's side nor any dimension of `work`'s
        model (side_lengths) is left out: no option splits across it, so its dies would only repeat
        the work of the others."""
        if not self.tensor:
            return [(1, 1)]
        if self.whole_grid:
            return [(hw.rows, hw.cols)]
        out = []
        for r in side_lengths(hw.rows, work):
            for c in side_lengths(hw.cols, work):
                if hw.topology.kind == "switched" and r > 1 and c != hw.cols:
                    continue  # a group spanning nodes takes whole nodes
                if self.name == "megatron" and r > 1 and hw.topology.kind == "switched":
                    continue  # Megatron keeps TP inside a node
                if self.name in ("megatron", "accpar") and r > 1 and c > 1 and hw.topology.kind == "switched":
                    continue
                out.append((r, c))
        return out

    def outer_points(self, work: Workload, hw: Hardware) -> Iterator[OuterPoint]:
        L, B = work.model.layers, work.global_batch
        if self.points is not None:  # explicit points, those the batch and the model admit
            yield from (p for p in self.points if inexpressible(p, L, B) is None)
            return
        # the layer-wise schedule only pays where DRAM holds weights or gradients (else it only keeps
        # more activations), and only with more than one micro-batch per step
        layerwise = self.layerwise and bool(self.offload_classes(hw))
        for shape in self.shapes(hw, work):
            tiles = (hw.rows // shape[0]) * (hw.cols // shape[1])
            for pp in (range(1, min(L, tiles) + 1) if self.pipeline else (1,)):
                for dp in range(1, tiles // pp + 1):
                    if self.whole_grid and dp != 1:
                        continue
                    for mb in MICRO_BATCHES:
                        if B % (dp * mb):
                            continue
                        for z in self.zero_stages:
                            if (z and dp == 1) or (pp > 1 and z not in self.pipeline_zero_stages):
                                continue
                            for v in self.virtual:
                                if v > 1 and pp == 1:
                                    continue
                                for lay in chunk_layouts(L, pp, v):
                                    for pol in self.recompute_policies:
                                        yield OuterPoint(pp, dp, shape, mb, z, v, pol, layers_per_chunk=lay)
                                        if layerwise and pp == 1 and v == 1:
                                            for k in layer_groups(B // (dp * mb)):
                                                yield OuterPoint(pp, dp, shape, mb, z, v, pol, layer_group=k)

    def skipped_points(self, work: Workload) -> list[tuple[OuterPoint, str]]:
        """The explicit points (self.points) the workload cannot run, each with the reason."""
        L, B = work.model.layers, work.global_batch
        return [(p, why) for p in self.points or () if (why := inexpressible(p, L, B)) is not None]

    def offload_classes(self, hw: Hardware) -> tuple[str, ...]:
        """Tensor classes the solver may place in DRAM on this machine."""
        return OFFLOAD_CLASSES if self.offload and hw.dram_ports else ()

    def offload_subsets(self, hw: Hardware) -> list[tuple[str, ...]]:
        """Every subset of the classes the space may move to DRAM (the empty one first)."""
        classes = self.offload_classes(hw)
        return [tuple(c for i, c in enumerate(classes) if mask >> i & 1) for mask in range(1 << len(classes))]

    def allowed_options(self, graph: Graph, shape: tuple[int, int]) -> dict[str, list[Option]]:
        """Per operator, the partition options this space lets it choose on a group of `shape`."""
        out = {}
        for o in graph.block + graph.pre + graph.post:
            opts = op_options(o, graph.sizes, shape, graph.tensors)
            if self.free_ops is not None and o.name not in self.free_ops:
                opts = [(None, None)]
            ok = [x for x in opts if self._admits(o.name, o.kind, x, graph)] or [(None, None)]
            fixed = MEGATRON_SPLITS.get(o.name) if self.name == "megatron" else None
            if fixed is not None and (fixed, fixed) in ok:
                ok = [(fixed, fixed)]  # Megatron-LM always splits these when the group can take it
            out[o.name] = ok
        return out

    def _admits(self, name: str, kind: str, opt: Option, graph: Graph) -> bool:
        if self.name == "full":
            return True
        if self.name == "deepspeed":
            return opt == (None, None)
        uniform = opt[0] == opt[1]
        if self.name == "megatron":
            if name in MEGATRON_SPLITS:
                return uniform and opt[0] in (MEGATRON_SPLITS[name], None)
            return uniform and opt[0] in ("s", None)  # norms, dropouts, residuals: SP or replicated
        if self.name == "accpar":
            if not uniform:
                return False
            if name in LINEARS:
                return opt[0] in (None, "b", "k", "n", "a", "f", "g", "v")
            return opt[0] in (None, "b", "a", "f", "g", "v")
        if self.name == "hecaton":
            if kind == "matmul" and name in LINEARS:
                return opt[0] is not None and opt[1] is not None and opt[0] != opt[1]
            return True
        return True

    def recompute_allowed(self, graph: Graph, policy: str | None) -> dict[str, tuple[bool, ...]]:
        """Per block op, the recompute values the solver may pick (fixed by a policy if given)."""
        if self.name == "accpar":
            return {o.name: (False,) for o in graph.block}
        if policy is None:
            free = self.free_ops
            return {o.name: ((False, True) if free is None or o.name in free else (False,)) for o in graph.block}
        rec = recompute_set(graph, policy)
        return {o.name: (o.name in rec,) for o in graph.block}


# Megatron-LM's tensor-parallel split of each op (Shoeybi et al. 2019; vocab-parallel embedding and head)
MEGATRON_SPLITS = {"q_proj": "a", "kv_proj": "g", "qk": "a", "softmax": "a", "attn_dropout": "a", "av": "a",
                   "attention": "a", "out_proj": "a", "fc1": "f", "act": "f", "fc2": "f", "shared_fc1": "r",
                   "shared_act": "r", "shared_fc2": "r", "embedding": "v",
                   "lm_head": "v", "loss": "v"}


def side_lengths(side: int, work: Workload | None) -> list[int]:
    """Group side lengths tried along a grid side of `side` dies: its divisors and, with a
    workload, every length up to `side` that divides one of the model's split dimensions
    (hidden, heads, kv heads, head dim, ffn, vocab, sequence; a MoE model's expert ffn, experts and
    shared-expert ffn) or a micro-batch size."""
    if work is None:
        return [n for n in range(1, side + 1) if side % n == 0]
    m = work.model
    dims = (m.hidden, m.heads, m.n_kv_heads, m.dim_per_head, m.ffn_size, m.vocab, work.seq_len) + MICRO_BATCHES
    if m.moe_layers:
        dims += tuple(d for d in (m.expert_ffn_size, m.experts, m.shared_experts * m.expert_ffn_size) if d)
    return [n for n in range(1, side + 1) if side % n == 0 or any(d % n == 0 for d in dims)]


def layer_groups(m: int) -> list[int]:
    """Group sizes of the layer-wise schedule tried for m micro-batches per step: the powers of two
    from 2 that divide m (m itself if it is not one)."""
    out = [k for k in (2 ** i for i in range(1, m.bit_length())) if m % k == 0]
    return out + ([m] if m > 1 and m not in out else [])


def get_space(name: "str | Space") -> Space:
    if isinstance(name, Space):
        return name
    if name == "full":
        return Space("full")
    if name == "megatron":
        # ZeRO 1: --use-distributed-optimizer; 2, 3: Megatron-FSDP (--use-megatron-fsdp with
        # --data-parallel-sharding-strategy optim_grads / optim_grads_params)
        return Space("megatron", zero_stages=(0, 1, 2, 3), recompute_policies=RECOMPUTE_POLICIES, fp32_grads=True,
                     layerwise=False)
    if name == "deepspeed":
        # ZeRO 0-3 data parallelism; its pipeline engine (PipelineModule) runs 1F1B with blocking
        # transfers and refuses ZeRO 2 and 3 ("ZeRO-2 and ZeRO-3 are incompatible with pipeline
        # parallelism", deepspeed/runtime/pipe/engine.py)
        return Space("deepspeed", zero_stages=(0, 1, 2, 3), virtual=(1,), tensor=False,
                     recompute_policies=("none", "full"), layerwise=False, pp_transfer="blocking",
                     pipeline_zero_stages=(0, 1))
    if name == "accpar":
        return Space("accpar", zero_stages=(0,), virtual=(1,), pipeline=False, recompute_policies=("none",),
                     layerwise=False)
    if name == "hecaton":
        return Space("hecaton", zero_stages=(0,), virtual=(1,), pipeline=False, whole_grid=True)
    raise ConfigError(f"unknown space {name!r}; allowed: {', '.join(SPACES)}")
