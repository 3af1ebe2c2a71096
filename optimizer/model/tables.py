"""Cost tables of one outer point (degrees, group shape, micro-batch, ZeRO stage, schedule, placement).

Built once from the operator graph, the sharding rules, the topology and cost.py; read by
evaluate() (which sums the entries a mapping picks) and by every solver formulation (which turns
them into constraints), so both score a mapping with the same numbers. An op under an option is
priced in op_cost, the edges between ops are found in edges, the rings of the collectives in rings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from hw.schema import Hardware
from hw.topology import ZERO, CommCost, rectangle, transfer, usable_tiles
from models.graph import Graph, Op, build_graph
from models.schema import Workload

from . import cost, overlap
from .edges import (
    Conversion, Edge, EdgeCost, conversion_steps, edge_counts, graph_edges, reduction_follows, saved_inputs,
)
from .layout import StageKind, balanced_layers, even_chunks, light_ends_layers, stage_layers
from .mapping import Mapping, StageGroup
from .op_cost import STATS_BYTES, OptionCost, cost_of_option
from .rings import dp_rings, group_rings, on_rings, p2p_pairs
from .sharding import (
    PARTIAL, Option, conversion, layout_divisor, options as enumerate_options, output_layout, split_factors,
)

OVERLAP_MODES = ("sequential", "chunked", "fused")  # what a mapping may pick (overlap.MODES less "ideal")


@dataclass
class Tables:
    graph: Graph
    work: Workload
    hw: Hardware
    pp: int
    dp: int
    shape: tuple[int, int]
    micro_batch: int
    zero_stage: int
    virtual: int
    layers_per_stage: tuple[int, ...]
    groups: tuple[StageGroup, ...]
    allowed: dict[str, list[Option]]
    fp32_grads: bool = False
    layer_group: int = 1  # micro-batches per group of the layer-wise schedule (pp = 1); 1 = 1F1B
    zero3_gather: str = "prefetched"  # Mapping.zero3_gather
    pp_transfer: str = "overlapped"  # Mapping.pp_transfer
    chunk_layers: tuple[int, ...] | None = None  # pp x virtual chunks, pipeline-layout order; None = even
    _oc: dict = field(default_factory=dict)
    _ec: dict = field(default_factory=dict)
    _gc: dict = field(default_factory=dict)  # group_collective by (axis, kind, bytes): few distinct sizes

    # ---- geometry -------------------------------------------------------------------------
    @property
    def m(self) -> int:
        """Micro-batches per step."""
        return self.work.global_batch // (self.dp * self.micro_batch)

    @cached_property
    def _group_rings(self) -> dict:
        return group_rings(self.hw, self.groups[0].origin, self.shape)

    def group_collective(self, axis, kind: str, nbytes: float) -> CommCost:
        """A collective on every ring of one tensor group along `axis`; byte-hops of the whole group."""
        key = (axis, kind, nbytes)
        if key not in self._gc:
            self._gc[key] = on_rings(self.hw, self._group_rings[axis], kind, nbytes)
        return self._gc[key]

    def group_ring(self, axis) -> int:
        """Members of one ring of the tensor group along `axis`."""
        return len(self._group_rings[axis][0])

    def group_traffic(self, axis, kind: str, nbytes: float) -> float:
        """Main-memory bytes one die moves in group_collective(axis, kind, nbytes) (sums on the cores)."""
        return overlap.collective_bytes(kind, self.group_ring(axis), nbytes)

    @cached_property
    def _dp_rings(self) -> tuple:
        return dp_rings(self.groups, self.pp, self.dp, self.shape)

    def dp_collective(self, kind: str, nbytes: float) -> CommCost:
        if self.dp < 2:
            return ZERO
        return on_rings(self.hw, self._dp_rings, kind, nbytes)

    @cached_property
    def _p2p_pairs(self) -> tuple:
        return p2p_pairs(self.groups, self.pp, self.dp, self.shape)

    # ---- DRAM behind the ports ------------------------------------------------------------
    @cached_property
    def used_dies(self) -> tuple[tuple[int, int], ...]:
        return tuple(d for g in self.groups for d in rectangle(g.origin, self.shape))

    @cached_property
    def dram_bandwidth(self) -> float:
        """Bytes/s of DRAM one die gets when every used die streams at once: the ports' total
        bandwidth shared evenly (0 without ports)."""
        return sum(p.bandwidth for p in self.hw.dram_ports) / len(self.used_dies)

    @cached_property
    def dram_hops(self) -> float:
        """Mean mesh hops from a used die to its nearest DRAM port (link energy of DRAM traffic)."""
        ports = [(p.row, p.col) for p in self.hw.dram_ports]
        if not ports or self.hw.topology.kind == "switched":
            return 0.0
        return sum(min(abs(d[0] - r) + abs(d[1] - c) for r, c in ports) for d in self.used_dies) / len(self.used_dies)

    # ---- stages ---------------------------------------------------------------------------
    @cached_property
    def layers_per_chunk(self) -> tuple[int, ...]:
        """Layers of each of the pp x virtual model chunks (chunk k on stage k % pp): as given, or
        each stage's layers split as evenly as possible, the earlier chunks taking the extra."""
        if self.chunk_layers is not None:
            return tuple(self.chunk_layers)
        return even_chunks(self.layers_per_stage, self.virtual)

    @cached_property
    def stage_kinds(self) -> list[StageKind]:
        """Distinct stage kinds (layers, first?, last?) with one representative each."""
        kinds: dict[tuple, StageKind] = {}
        for s, L in enumerate(self.layers_per_stage):
            key = (L, s == 0, s == self.pp - 1)
            if key not in kinds:
                kinds[key] = StageKind(L, s == 0, s == self.pp - 1, s)
            elif s < kinds[key].index:
                kinds[key] = StageKind(L, s == 0, s == self.pp - 1, s)
        return list(kinds.values())

    def in_flight(self, stage: int) -> float:
        return cost.micro_batches_in_flight(stage, self.pp, self.m, self.virtual, self.layer_group)

    # ---- ops ------------------------------------------------------------------------------
    def option_cost(self, op: Op, opt: Option) -> OptionCost:
        key = (op.name, opt)
        if key not in self._oc:
            self._oc[key] = cost_of_option(self, op, opt)
        return self._oc[key]

    def recompute_buffer(self, op: Op, opt: Option) -> float:
        """Bytes one die holds while `op` is recomputed for the backward: its outputs, except the
        s×s attention tensors, which a fused attention backward rebuilds tile by tile
        (FlashAttention, Dao et al. 2022) and never holds whole."""
        g = self.graph
        oc = self.option_cost(op, opt)
        return sum(b for t, b in oc.out_bytes.items() if not {"s", "z"} <= set(g.tensors[t].dims))

    def options(self, op: Op) -> list[Option]:
        return self.allowed[op.name]

    # ---- edges ----------------------------------------------------------------------------
    @cached_property
    def edges(self) -> list[Edge]:
        return graph_edges(self.graph)

    def edge_cost(self, e: Edge, o_p: Option, o_c: Option) -> EdgeCost:
        key = (e, o_p, o_c)
        if key not in self._ec:
            fwd_steps, grad_steps = conversion_steps(self.graph, e, o_p, o_c, self.shape)
            fwd, grad = self._convert(fwd_steps), self._convert(grad_steps)
            self._ec[key] = EdgeCost(fwd.comm, grad.comm, fwd, grad)
        return self._ec[key]

    def _steps(self, steps) -> CommCost:
        return self._convert(steps).comm

    def _convert(self, steps) -> Conversion:
        comm, nbytes, reduce_s, ring, saving = ZERO, 0.0, 0.0, 1, 0.0
        for st in steps:
            comm = comm + self.group_collective(st.axis, st.kind, st.nbytes)
            nbytes += self.group_traffic(st.axis, st.kind, st.nbytes)
            if st.kind in ("reduce_scatter", "all_reduce"):  # the reduction: a reduce-scatter on that axis
                k = self.group_ring(st.axis)
                reduce_s += self.group_collective(st.axis, "reduce_scatter", st.nbytes).time_s
                ring = max(ring, k)
                saving += overlap.near_memory_saving_bytes(k, st.nbytes)
        return Conversion(comm, nbytes, reduce_s, ring, saving)

    # ---- overlap of a producer GEMM with the reduction of what it produces ------------------
    @cached_property
    def overlap_params(self) -> overlap.OverlapParams:
        p = overlap.OverlapParams.from_hardware(self.hw)
        overlap.exposed_pieces(p.compute_slowdown, p.comm_slowdown)  # ConfigError if the factors break it
        return p

    @cached_property
    def modes(self) -> tuple[str, ...]:
        """Overlap modes a mapping may pick on this hardware ("fused" needs fused collectives)."""
        return OVERLAP_MODES if self.hw.features.fused_collectives else OVERLAP_MODES[:2]

    def overlaps(self, op: Op) -> bool:
        """Does the op's overlap mode matter: a GEMM, whose partial results a reduction follows."""
        return op.kind == "matmul"

    @cached_property
    def _edge_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return edge_counts(self.edges)

    def mode_matters(self, op: Op, opt: Option) -> bool:
        """Can the overlap mode change anything for `op` under `opt`: is it a GEMM with a reduction
        after it on some edge (forward: its output's; backward: an input gradient's) for some
        option of the op at the edge's other end?"""
        key = ("mode", op.name, opt)
        if key not in self._oc:
            self._oc[key] = self.overlaps(op) and reduction_follows(self.graph, self.edges, op, opt)
        return self._oc[key]

    def overlap_delta(self, e: Edge, o_p: Option, o_c: Option, role: str, mode: str) -> float:
        """Seconds that `mode` adds (negative: saves) to one use of edge e against running it
        sequentially. role "fwd": the producer's forward GEMM overlaps the reduction part of the
        forward conversion; "bwd": the consumer's backward GEMMs overlap the reduction part of the
        gradient conversion. An op with n such edges gives each 1/n of its compute (its GEMM is cut
        into n pieces, one per edge; conservative against one pipeline of all n reductions):
        overlap_time(mode, c/n, reduce, ring) − c/n − reduce."""
        if mode == "sequential":
            return 0.0
        if role == "fwd":
            op, n = self.graph.op(e.producer), self._edge_counts[0][e.producer]
            c, conv = self.option_cost(op, o_p).fwd_s / n, self.edge_cost(e, o_p, o_c).fwd_conv
        else:
            op, n = self.graph.op(e.consumer), self._edge_counts[1][e.consumer]
            c, conv = self.option_cost(op, o_c).bwd_s / n, self.edge_cost(e, o_p, o_c).grad_conv
        if not self.overlaps(op):
            return 0.0
        m = conv.reduce_s
        return overlap.overlap_time(mode, c, m, conv.ring, self.overlap_params) - c - m

    def overlap_saving_bytes(self, e: Edge, o_p: Option, o_c: Option, role: str, mode: str) -> float:
        """Main-memory bytes one use of edge e saves under `mode`: the reduction part's sums formed
        at the memory (fused mode on hardware with near-memory reduction), else 0."""
        if mode != "fused" or not self.overlap_params.near_memory_reduction:
            return 0.0
        op = self.graph.op(e.producer if role == "fwd" else e.consumer)
        if not self.overlaps(op):
            return 0.0
        ec = self.edge_cost(e, o_p, o_c)
        return (ec.fwd_conv if role == "fwd" else ec.grad_conv).near_memory_saving

    def saved_by(self, e: Edge) -> bool:
        """Does the consumer's backward need this input (so it is converted again in backward)?"""
        return self._saved[e]

    @cached_property
    def _saved(self) -> dict[Edge, bool]:
        return saved_inputs(self.graph, self.edges)

    @cached_property
    def _producer(self) -> dict[str, Op]:
        """Block and post tensors -> the op writing them (the block input: the block output's)."""
        g = self.graph
        out: dict[str, Op] = {}
        for o in g.block + g.post:
            for x in o.outputs:
                out.setdefault(x.tensor, o)
        if g.block_output in out:
            out[g.block_input] = out[g.block_output]
        return out

    def tensor_bytes(self, tensor: str, opt: dict[str, Option]) -> float:
        """Bytes on one die of a block tensor, in the layout its producer writes it."""
        g = self.graph
        o = self._producer[tensor]
        return self.option_cost(o, opt[o.name]).out_bytes[g.block_output if tensor == g.block_input else tensor]

    def tied_head_params(self, head_opt: Option) -> float:
        """A tied LM head on its own stage keeps a copy of the embedding (Megatron-LM)."""
        m = self.work.model
        if not m.tied_embeddings or self.pp < 2:
            return 0.0
        fac = split_factors(head_opt, self.shape)
        split = 1
        for d, k in fac.items():
            if d in ("k", "v"):
                split *= k
        return m.vocab * m.hidden / split

    # ---- pipeline boundary ----------------------------------------------------------------
    def p2p(self, add2_opt: Option) -> CommCost:
        """Send one micro-batch's boundary activation (or its gradient) to the next stage: each die
        sends 1/t of it and the receiver all-gathers what its layout needs (scatter/gather); with
        pp_transfer "blocking" every die sends the whole activation."""
        if self.pp < 2:
            return ZERO
        g = self.graph
        out = g.op("add2").outputs[0]
        nbytes = g.tensors[out.tensor].nbytes(g.sizes)
        if self.pp_transfer == "blocking":
            return transfer(self._p2p_pairs, nbytes, self.hw)
        t = self.shape[0] * self.shape[1]
        c = transfer(self._p2p_pairs, nbytes / t, self.hw)
        lay = output_layout(g.op("add2"), add2_opt, out, g.tensors)
        if layout_divisor(lay, self.shape) < t:
            c = c + self._steps(conversion(("_s", "_s"), lay, self.shape, nbytes))
        return c

    def p2p_bytes(self, add2_opt: Option) -> float:
        """Main-memory bytes one die moves per boundary and direction of p2p(): the piece it sends is
        read (nbytes/t), the piece it receives is written (nbytes/t), plus the receiver's conversion."""
        if self.pp < 2:
            return 0.0
        g = self.graph
        out = g.op("add2").outputs[0]
        nbytes = g.tensors[out.tensor].nbytes(g.sizes)
        if self.pp_transfer == "blocking":
            return 2 * nbytes
        t = self.shape[0] * self.shape[1]
        lay = output_layout(g.op("add2"), add2_opt, out, g.tensors)
        conv = 0.0
        if layout_divisor(lay, self.shape) < t:
            conv = self._convert(conversion(("_s", "_s"), lay, self.shape, nbytes)).mem_bytes
        return 2 * nbytes / t + conv

    # ---- per-step terms -------------------------------------------------------------------
    def dp_sync(self, params_per_die: float) -> CommCost:
        """Gradient reduction across replicas for params_per_die weights (bf16 grads)."""
        grad_bytes = params_per_die * self.work.dtype_bytes
        if self.zero_stage == 0:
            return self.dp_collective("all_reduce", grad_bytes)
        # ZeRO 1-3: reduce-scatter of gradients, then all-gather of updated weights (stage 3 gathers on demand)
        rs = self.dp_collective("reduce_scatter", grad_bytes)
        return rs if self.zero_stage == 3 else rs + self.dp_collective("all_gather", grad_bytes)

    def dp_sync_bytes(self, params_per_die: float) -> float:
        """Main-memory bytes one die moves in dp_sync(params_per_die) (sums on the cores)."""
        if self.dp < 2:
            return 0.0
        grad_bytes = params_per_die * self.work.dtype_bytes
        rs = overlap.collective_bytes("reduce_scatter", self.dp, grad_bytes)
        ag = overlap.collective_bytes("all_gather", self.dp, grad_bytes)
        return rs if self.zero_stage == 3 else rs + ag

    def dp_sync_rate(self) -> tuple[CommCost, CommCost]:
        """dp_sync(P) = slope·P + intercept (exactly linear in P, for the solver)."""
        a, b = self.dp_sync(1e9), self.dp_sync(2e9)
        slope = CommCost((b.time_s - a.time_s) / 1e9, (b.byte_hops - a.byte_hops) / 1e9)
        icpt = CommCost(a.time_s - slope.time_s * 1e9, a.byte_hops - slope.byte_hops * 1e9)
        return slope, icpt


def default_groups(hw: Hardware, pp: int, dp: int, shape: tuple[int, int]) -> tuple[StageGroup, ...] | None:
    """Place stage groups on aligned r×c tiles in snake order, skipping tiles with a defect:
    replica d's stages are consecutive tiles, so neighbouring stages sit next to each other
    (unless a skipped tile breaks the chain; the solver then places them itself)."""
    tiles = usable_tiles(hw, shape)
    if len(tiles) < pp * dp:
        return None
    return tuple(StageGroup(stage=s, replica=d, origin=tiles[d * pp + s]) for d in range(dp) for s in range(pp))


def tables_for(mapping: Mapping, work: Workload, hw: Hardware, allowed: dict[str, list[Option]] | None = None) -> Tables:
    """Tables of the outer point a mapping sits at (its placement and degrees)."""
    graph = build_graph(work.model, mapping.micro_batch, work.seq_len, work.dtype_bytes, work.flash_attention)
    groups = mapping.groups or default_groups(hw, mapping.pp, mapping.dp, mapping.tp_shape)
    if groups is None:
        raise ValueError(f"no placement of {mapping.pp * mapping.dp} groups of {mapping.tp_shape} on "
                         f"{hw.rows}x{hw.cols} ({hw.num_dies} usable dies)")
    chunks = mapping.layers_per_chunk
    if chunks is not None:
        lps = stage_layers(tuple(chunks), mapping.pp)
    else:
        lps = mapping.layers_per_stage or balanced_layers(work.model.layers, mapping.pp)
    if allowed is None:
        allowed = {o.name: enumerate_options(o, graph.sizes, mapping.tp_shape, graph.tensors)
                   for o in graph.block + graph.pre + graph.post}
    return Tables(graph, work, hw, mapping.pp, mapping.dp, mapping.tp_shape, mapping.micro_batch,
                  mapping.zero_stage, mapping.virtual_stages, lps, groups, allowed, mapping.fp32_grad_accumulation,
                  mapping.layer_group, mapping.zero3_gather, mapping.pp_transfer,
                  tuple(chunks) if chunks is not None and mapping.virtual_stages > 1 else None)


__all__ = ["Tables", "OptionCost", "EdgeCost", "Conversion", "Edge", "OVERLAP_MODES", "STATS_BYTES", "StageKind",
           "tables_for", "default_groups", "balanced_layers", "even_chunks", "light_ends_layers", "PARTIAL"]
