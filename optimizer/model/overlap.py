"""Overlap of a tensor-parallel collective with the GEMM that produces its data.

One sublayer, as T3 (Pati et al., ASPLOS 2024) studies it: on each of the t devices of a ring a
producer GEMM writes partial sums of a T×N output (the attention output projection or the MLP's
second linear under Megatron tensor parallelism); a ring reduce-scatter sums them, each device
keeping T/t rows of it; the all-gather that follows re-assembles the output on every device.

Modes (time of the whole sublayer, seconds; t_c GEMM, t_rs reduce-scatter, t_ag all-gather):

- "sequential": t_c + t_rs + t_ag.
- "chunked": software overlap by decomposition into k chunks (Wang et al., ASPLOS 2023): the
  first chunk's GEMM and the last chunk's reduce-scatter are exposed; in between the two run at
  once on the same cores and memory, each slowed by its contention factor, and every chunk pays a
  fixed overhead (kernel launch, synchronisation).
- "fused": T3's track & trigger: the GEMM and the reduce-scatter are one pipeline of t chunks (one
  per ring step) started by hardware, with no per-chunk overhead; with near-memory reduction the
  sums are formed at the memory, so only a residual contention (memory-controller arbitration)
  remains. Needs `features.fused_collectives`.
- "ideal": the reduce-scatter fully hidden under the GEMM, no contention: max(t_c, t_rs) + t_ag.

The all-gather has no producer inside the sublayer and stays serial in every mode (T3 fuses only
the reduce-scatter with its producer).

Data moved ("bytes"): bytes read plus written in one device's main memory by the GEMM and the two
collectives, counted as T3 counts them (reduce_scatter_pieces, FUSED_PRODUCER_PIECES_SAVED,
gemm_dram_bytes; T3 Sec. 6.2 / Fig. 18). Formulas: docs/cost-model.md, "Overlap of a collective with
its producer GEMM". Pure functions over plain numbers; no solver imports.

The step model (evaluate, the solver) uses overlap_time for a GEMM and the reduction of the partial
results it produces (OpChoice.overlap), exposed_time / exposed_pieces for background collectives
beside compute (pipeline transfers, ZeRO-3 gathers), bucketed_exposed for the data-parallel
gradient reduction, and collective_bytes for the data moved (docs/cost-model.md, sections 7-11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.loader import ConfigError
from hw.schema import Die, Hardware
from hw.topology import STEPS, VOLUME

from . import cost

MODES = ("sequential", "chunked", "fused", "ideal")

# Main-memory traffic of a ring reduce-scatter (reduce_scatter_pieces) follows T3's own accounting
# (Pati et al., ASPLOS 2024, Sec. 6.2 and Fig. 18; figures taken from a public paper-reading summary,
# the full text was not available here): fused with its producer and summed near memory, the
# reduce-scatter's DRAM reads fall 2.5x at t = 8 and 2.2x at t = 16 (2.4x geomean) and the GEMM's
# plus the reduce-scatter's writes ~10% (geomean); fusion removes the producer's local write of the
# first piece and the reduce-scatter's first read, near-memory sums remove each step's read of the
# local partial copy and the final reduction's reads and write. The counts of reduce_scatter_pieces
# reproduce those figures exactly: reads (2t − 1)/(t − 2) = 2.5 at t = 8 and 2.21 at t = 16; GEMM +
# reduce-scatter writes 2t → 2(t − 1), 12.5% and 6.25% less (geomean 9.4%).

# Pieces of its output the producer GEMM no longer writes locally when fused (T3): the first piece is
# stored straight into the next device's memory, where it is one of that device's updates.
FUSED_PRODUCER_PIECES_SAVED = 1
# All-gather (kernel-driven ring): per step one piece read to send (the own piece, then each
# forwarded one) and one written as received. T3 reports the all-gather's traffic unchanged by fusion.
AG_ACCESSES = 2


def reduce_scatter_pieces(ring: int, near_memory: bool) -> tuple[int, int]:
    """(reads, writes) of one device's main memory in a ring reduce-scatter over `ring` devices,
    in pieces of buffer/ring (T3's accounting: see the comment above FUSED_PRODUCER_PIECES_SAVED).

    Sums on the cores (kernel-driven ring as in RCCL/NCCL; T3's baseline): step 1 reads the local
    piece and sends it; each of the ring − 1 later steps reads the piece the previous device wrote
    here (1 write) and the local partial copy of that piece, then sends their sum straight to the
    next device (the write is counted there) or, at the last step, writes it here as the result:
    reads 1 + 2·(ring − 1) = 2·ring − 1, writes (ring − 1) + 1 = ring (≈ 3 accesses per byte sent).

    Fused with the producer and summed near memory (T3): the first piece leaves as the GEMM's remote
    stores and the last stays in place, so only the ring − 2 pieces in between are read, once, by
    the DMA engine that forwards them; each of the ring − 1 arriving pieces is one update that the
    memory adds in place (its read-modify-write stays inside the memory device):
    reads ring − 2, writes ring − 1."""
    if ring < 2:
        return 0, 0
    if near_memory:
        return ring - 2, ring - 1
    return 2 * ring - 1, ring


def ring_time(kind: str, ring: int, nbytes: float, bandwidth: float, latency_s: float,
              directions: int = 1) -> float:
    """Seconds of a ring collective of `kind` over `ring` devices that assembles `nbytes` bytes:
    VOLUME(ring)·nbytes / (directions·bandwidth) + STEPS(ring)·latency_s, with VOLUME and STEPS
    from hw.topology ((t−1)/t and t−1 for reduce-scatter and all-gather). directions = 1 is one
    ring in one direction; 2 is hw.topology's pair of counter-rotating half rings on a torus.
    bandwidth in bytes/s per direction, latency_s per step."""
    if kind not in VOLUME:
        raise ValueError(f"collective kind {kind!r} unknown; known: {sorted(VOLUME)}")
    if directions not in (1, 2):
        raise ValueError(f"directions must be 1 or 2, got {directions}")
    if ring < 2 or nbytes <= 0:
        return 0.0
    return VOLUME[kind](ring) * nbytes / (directions * bandwidth) + STEPS[kind](ring) * latency_s


def gemm_tile(cache_bytes: float, dtype_bytes: int, output_cached: bool = True) -> float:
    """Side b (elements) of the square blocks of a blocked GEMM whose b×b blocks fill the cache:
    three blocks (one of each operand and of the output), b = sqrt(cache_bytes / (3·dtype_bytes));
    two (the operands only) when the output's stores bypass the cache (output_cached = False),
    b = sqrt(cache_bytes / (2·dtype_bytes))."""
    return math.sqrt(cache_bytes / ((3 if output_cached else 2) * dtype_bytes))


def gemm_dram_bytes(m: float, k: float, n: float, dtype_bytes: int, cache_bytes: float,
                    output_cached: bool = True) -> float:
    """Bytes a blocked GEMM C[m,n] = A[m,k]·B[k,n] moves through main memory: A is read once per
    column block of C (n/b times), B once per row block (m/b times), C written once; b = gemm_tile.
    Each factor is at least 1 (an operand is read at least once). output_cached = False is T3's fused
    GEMM, whose output stores go uncached to the memory (near-memory op-and-store): the output no
    longer takes a share of the cache, the blocks grow and the operands are re-read less (T3 reports
    the fused GEMM's DRAM reads 1.56x lower, geomean, for this reason; this model gives at most
    sqrt(3/2) = 1.22x)."""
    b = gemm_tile(cache_bytes, dtype_bytes, output_cached)
    return dtype_bytes * (m * k * max(1.0, n / b) + k * n * max(1.0, m / b) + m * n)


def gemm_time(flops: float, dram_bytes: float, die: Die, peak: float) -> float:
    """Seconds of a GEMM on one die: the larger of its compute time (cost.matmul_time) and the
    time to move its dram_bytes through main memory (cost.memory_time) — a roofline."""
    return max(cost.matmul_time(flops, die, peak), cost.memory_time(dram_bytes, die))


def overlapped_time(c: float, m: float, compute_slowdown: float = 1.0, comm_slowdown: float = 1.0) -> float:
    """Seconds until a compute piece of c seconds and a communication piece of m seconds (each
    alone) started together both finish, each slowed by its factor only while the other runs.
    If the communication ends first (σm·m ≤ σc·c) the compute has then done σm·m/σc and finishes
    the rest alone: c + σm·m·(1 − 1/σc); symmetrically m + σc·c·(1 − 1/σm). The result lies
    between max(c, m) and max(σc·c, σm·m)."""
    sc, sm = compute_slowdown, comm_slowdown
    if sm * m <= sc * c:
        return c + sm * m * (1 - 1 / sc)
    return m + sc * c * (1 - 1 / sm)


def pipelined_time(compute_s: float, comm_s: float, chunks: int, compute_slowdown: float = 1.0,
                   comm_slowdown: float = 1.0, overhead_s: float = 0.0) -> float:
    """Seconds of a GEMM of compute_s seconds and the collective of comm_s seconds it feeds, cut
    into k = `chunks` pieces of c = compute_s/k + overhead_s and m = comm_s/k + overhead_s: the
    first GEMM chunk runs alone, then k − 1 stages in which GEMM chunk i+1 runs beside
    communication chunk i (overlapped_time), then the last communication chunk alone:
    c + (k − 1)·overlapped_time(c, m) + m. Without slowdowns and overheads this is
    max(compute_s, comm_s) + min(c, m): one chunk more than perfect overlap."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    c = compute_s / chunks + overhead_s
    m = comm_s / chunks + overhead_s
    return c + (chunks - 1) * overlapped_time(c, m, compute_slowdown, comm_slowdown) + m


@dataclass(frozen=True)
class OverlapParams:
    """The hardware figures the overlap modes read (plain numbers; see hw.schema.Overlap)."""

    fused_collectives: bool = False
    near_memory_reduction: bool = False
    memory_controller_arbitration: bool = False
    compute_slowdown: float = 1.0
    comm_slowdown: float = 1.0
    chunks: int = 0  # 0 = one chunk per ring member
    chunk_overhead_s: float = 0.0
    fused_compute_slowdown: float = 1.0
    fused_compute_slowdown_unarbitrated: float = 1.0
    fused_comm_slowdown: float = 1.0
    name: str = "hardware"

    @classmethod
    def from_hardware(cls, hw: Hardware) -> "OverlapParams":
        o, f = hw.overlap, hw.features
        return cls(f.fused_collectives, f.near_memory_reduction, f.memory_controller_arbitration,
                   o.compute_slowdown, o.comm_slowdown, o.chunks, o.chunk_overhead_s,
                   o.fused_compute_slowdown, o.fused_compute_slowdown_unarbitrated, o.fused_comm_slowdown,
                   hw.name)

    def check(self, mode: str) -> None:
        """Raise ConfigError for an unknown mode, or "fused" on hardware without fused collectives."""
        if mode not in MODES:
            raise ConfigError(f"overlap mode {mode!r} unknown; allowed: {', '.join(MODES)}")
        if mode == "fused" and not self.fused_collectives:
            raise ConfigError(f"overlap mode 'fused' needs features.fused_collectives = true; "
                              f"{self.name} has features.fused_collectives = false")

    def fused_slowdowns(self) -> tuple[float, float]:
        """(compute, communication) factors while fused: the residual ones with near-memory
        reduction (arbitrated or not); without it the sums run on the cores, as in software."""
        if not self.near_memory_reduction:
            return self.compute_slowdown, self.comm_slowdown
        rc = self.fused_compute_slowdown if self.memory_controller_arbitration else self.fused_compute_slowdown_unarbitrated
        return rc, self.fused_comm_slowdown


def overlap_time(mode: str, compute_s: float, comm_s: float, ring: int, p: OverlapParams) -> float:
    """Seconds of a producer computation (compute_s alone) and the reduction of comm_s seconds (alone)
    it feeds, on a ring of `ring` devices, under `mode`:
    sequential compute_s + comm_s; ideal max(compute_s, comm_s); chunked pipelined_time over
    k = overlap.chunks (0 = ring) chunks with the software factors and per-chunk overhead; fused
    pipelined_time over one chunk per ring member with the fused factors (fused_slowdowns).
    With nothing to overlap (ring < 2, no compute or no communication) every mode is sequential."""
    p.check(mode)
    if mode == "sequential" or ring < 2 or compute_s <= 0 or comm_s <= 0:
        return compute_s + comm_s
    if mode == "ideal":
        return max(compute_s, comm_s)
    if mode == "chunked":
        return pipelined_time(compute_s, comm_s, p.chunks or ring, p.compute_slowdown, p.comm_slowdown,
                              p.chunk_overhead_s)
    rc, rm = p.fused_slowdowns()
    return pipelined_time(compute_s, comm_s, ring, rc, rm)


def sublayer_time(mode: str, gemm_s: float, rs_s: float, ag_s: float, ring: int, p: OverlapParams) -> float:
    """Seconds of GEMM + reduce-scatter + all-gather on a ring of `ring` devices under `mode`
    (gemm_s, rs_s, ag_s: each run alone): overlap_time of the GEMM and its reduce-scatter, then
    the all-gather. See the module docstring."""
    return overlap_time(mode, gemm_s, rs_s, ring, p) + ag_s


def exposed_time(compute_s: float, comm_s: float, compute_slowdown: float = 1.0, comm_slowdown: float = 1.0) -> float:
    """Seconds a background collective of comm_s seconds adds to compute_s seconds of work it runs
    beside (both started together, each slowed by its factor while the other runs):
    overlapped_time(compute_s, comm_s) − compute_s. Without slowdowns max(0, comm_s − compute_s)."""
    if comm_s <= 0:
        return 0.0
    return overlapped_time(compute_s, comm_s, compute_slowdown, comm_slowdown) - compute_s


def exposed_pieces(compute_slowdown: float, comm_slowdown: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """exposed_time(c, m) as the larger of two linear pieces, ((a1, b1), (a2, b2)) with
    exposed = max(a1·m + b1·c, a2·m + b2·c): the communication ending first gives σm·(1 − 1/σc)·m,
    the compute ending first m − (1 − σc + σc/σm)·c. The larger piece is the right one exactly when
    σc·(1 − 1/σm) ≤ 1 and σm·(1 − 1/σc) ≤ 1 (true for factors up to 2); otherwise ConfigError."""
    sc, sm = compute_slowdown, comm_slowdown
    if sc * (1 - 1 / sm) > 1 or sm * (1 - 1 / sc) > 1:
        raise ConfigError(f"overlap.compute_slowdown ({sc}) and overlap.comm_slowdown ({sm}) must satisfy "
                          f"σc·(1 − 1/σm) ≤ 1 and σm·(1 − 1/σc) ≤ 1 (e.g. both ≤ 2)")
    return (sm * (1 - 1 / sc), 0.0), (1.0, -(1 - sc + sc / sm))


# Data-parallel gradient reduction runs in buckets of this many layers' gradients (assumption: one
# bucket per transformer layer, the granularity at which Megatron-LM / PyTorch DDP buckets fill in
# backward order for billion-parameter layers; DDP's 25 MB default is smaller than one such layer).
DP_BUCKET_LAYERS = 1


def bucketed_exposed(comm_s: float, layer_backward_s: float, layers: int, compute_slowdown: float = 1.0,
                     comm_slowdown: float = 1.0, bucket_layers: int = DP_BUCKET_LAYERS) -> float:
    """Seconds of a stage's gradient reduction (comm_s alone) not hidden by its last backward pass.
    Buckets of `bucket_layers` layers are reduced as their gradients complete; the last bucket
    (the share β/L of comm_s, β = min(bucket_layers, L)) has nothing left to hide under, the rest
    runs beside the backward of the L − β layers computed after the first bucket:
    tail + exposed_time((L − β)·layer_backward_s, comm_s − tail). Without slowdowns this is
    tail + max(0, comm_s − tail − (L − β)·layer_backward_s)."""
    if comm_s <= 0:
        return 0.0
    b = min(bucket_layers, layers)
    tail = comm_s * b / layers
    return tail + exposed_time((layers - b) * layer_backward_s, comm_s - tail, compute_slowdown, comm_slowdown)


def reduce_scatter_bytes(ring: int, buffer_bytes: float, near_memory: bool) -> float:
    """Main-memory bytes one device moves in a ring reduce-scatter of a buffer_bytes buffer:
    (reads + writes) of reduce_scatter_pieces times a piece of buffer_bytes/ring, i.e.
    (3·ring − 1)/ring·buffer_bytes with the sums on the cores and (2·ring − 3)/ring·buffer_bytes
    fused with the producer and summed near memory."""
    if ring < 2:
        return 0.0
    reads, writes = reduce_scatter_pieces(ring, near_memory)
    return (reads + writes) * buffer_bytes / ring


def near_memory_saving_bytes(ring: int, buffer_bytes: float) -> float:
    """Main-memory bytes one device saves when a reduction of buffer_bytes over a ring of `ring` is
    fused with its producer and summed near memory (T3): the reduce-scatter's own saving
    (reduce_scatter_bytes on the cores − near memory, (ring + 2)/ring·buffer_bytes) plus the
    producer's local write of the first piece (FUSED_PRODUCER_PIECES_SAVED). Not counted here: the
    fused GEMM's lower operand traffic (gemm_dram_bytes with output_cached = False)."""
    if ring < 2:
        return 0.0
    return (reduce_scatter_bytes(ring, buffer_bytes, False) - reduce_scatter_bytes(ring, buffer_bytes, True)
            + FUSED_PRODUCER_PIECES_SAVED * buffer_bytes / ring)


def all_gather_bytes(ring: int, buffer_bytes: float) -> float:
    """Main-memory bytes one device moves in a ring all-gather assembling buffer_bytes: per step one
    piece read to send and one written as received, AG_ACCESSES·(ring − 1)/ring·buffer_bytes."""
    return AG_ACCESSES * (ring - 1) / ring * buffer_bytes if ring >= 2 else 0.0


def sublayer_bytes(mode: str, gemm_bytes: float, buffer_bytes: float, ring: int, p: OverlapParams,
                   fused_gemm_bytes: float | None = None) -> float:
    """Bytes read + written in one device's main memory by the sublayer under `mode`: the GEMM's
    gemm_bytes, the reduce-scatter and the all-gather of the buffer_bytes output. Only "fused" on
    hardware with near-memory reduction changes the count (T3's accounting, reduce_scatter_pieces):
    the GEMM moves fused_gemm_bytes (default gemm_bytes; T3's uncached output stores:
    gemm_dram_bytes(..., output_cached=False)) less the first piece, which it stores straight into
    the next device (FUSED_PRODUCER_PIECES_SAVED), and the reduce-scatter is the near-memory one.
    Chunking and ideal overlap change timing, not traffic."""
    p.check(mode)
    ag = all_gather_bytes(ring, buffer_bytes)
    if mode == "fused" and p.near_memory_reduction and ring >= 2:
        g = gemm_bytes if fused_gemm_bytes is None else fused_gemm_bytes
        return (g - FUSED_PRODUCER_PIECES_SAVED * buffer_bytes / ring
                + reduce_scatter_bytes(ring, buffer_bytes, True) + ag)
    return gemm_bytes + reduce_scatter_bytes(ring, buffer_bytes, False) + ag


def collective_bytes(kind: str, ring: int, nbytes: float, near_memory: bool = False) -> float:
    """Main-memory bytes one device of a ring of `ring` moves in a collective of `kind` that
    assembles (or reduces) nbytes: reduce-scatter as reduce_scatter_bytes (T3's fused, near-memory
    count if near_memory), all-gather and all-to-all as all_gather_bytes (a piece read to send, one
    written as received), all-reduce as a reduce-scatter then an all-gather."""
    if kind == "reduce_scatter":
        return reduce_scatter_bytes(ring, nbytes, near_memory)
    if kind in ("all_gather", "all_to_all"):
        return all_gather_bytes(ring, nbytes)
    if kind == "all_reduce":
        return reduce_scatter_bytes(ring, nbytes, near_memory) + all_gather_bytes(ring, nbytes)
    raise ValueError(f"collective kind {kind!r} unknown; known: {sorted(VOLUME)}")


@dataclass(frozen=True)
class SublayerCost:
    mode: str
    time_s: float  # seconds of the sublayer
    bytes: float  # main-memory bytes read + written on one device


def sublayer(mode: str, gemm_s: float, rs_s: float, ag_s: float, gemm_bytes: float, buffer_bytes: float,
             ring: int, p: OverlapParams, fused_gemm_bytes: float | None = None) -> SublayerCost:
    """Time (s) and data moved (bytes, sublayer_bytes) of one sublayer under `mode`."""
    return SublayerCost(mode, sublayer_time(mode, gemm_s, rs_s, ag_s, ring, p),
                        sublayer_bytes(mode, gemm_bytes, buffer_bytes, ring, p, fused_gemm_bytes))


__all__ = [
    "MODES", "DP_BUCKET_LAYERS",
    "FUSED_PRODUCER_PIECES_SAVED", "AG_ACCESSES", "OverlapParams", "SublayerCost", "reduce_scatter_pieces",
    "near_memory_saving_bytes",
    "ring_time", "gemm_tile", "gemm_dram_bytes", "gemm_time", "overlapped_time", "pipelined_time", "overlap_time",
    "sublayer_time", "exposed_time", "exposed_pieces", "bucketed_exposed", "collective_bytes",
    "reduce_scatter_bytes", "all_gather_bytes", "sublayer_bytes", "sublayer",
]
