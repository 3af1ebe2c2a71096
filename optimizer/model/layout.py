"""How a model's layers split over the pipeline: per stage (balanced), per model chunk of the
interleaved schedule (chunk k runs on stage k % pp as its virtual chunk k // pp, Megatron-LM's
pipeline-layout order), and the kinds of stages the cost model scores once each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageKind:
    layers: int
    first: bool
    last: bool
    index: int  # a representative stage index (for micro-batches in flight)


def balanced_layers(layers: int, pp: int) -> tuple[int, ...]:
    """Layers per stage as even as possible; the extra layers go to the middle stages first."""
    base, extra = divmod(layers, pp)
    counts = [base] * pp
    order = list(range(1, pp - 1)) + [0, pp - 1] if pp > 2 else list(range(pp))
    for i in order[:extra]:
        counts[i] += 1
    return tuple(counts)


def even_chunks(layers_per_stage: tuple[int, ...], virtual: int) -> tuple[int, ...]:
    """Each stage's layers split as evenly as possible over its `virtual` chunks, the earlier chunks
    taking the extra layers, in pipeline-layout order (chunk k on stage k % pp)."""
    pp = len(layers_per_stage)
    return tuple(layers_per_stage[k % pp] // virtual + (k // pp < layers_per_stage[k % pp] % virtual)
                 for k in range(pp * virtual))


def light_ends_layers(layers: int, chunks: int) -> tuple[int, ...] | None:
    """Layers per chunk with the first chunk (which also runs the embedding) and the last (the
    output layer and loss) one layer lighter than an even split of layers + 2 (the extras to the
    middle chunks first), so the first and the last stage hold one layer less: how Llama 3 405B ran
    its 126 layers on 16 stages (Dubey et al. 2024, "The Llama 3 Herd of Models", sec. 3.3.2);
    with two chunks per stage Megatron-LM's pipeline layout "Et*3|(t*4|)*30t*3L". None if a chunk
    would be left without a layer."""
    if chunks < 2:
        return None
    out = list(balanced_layers(layers + 2, chunks))
    out[0] -= 1
    out[-1] -= 1
    return tuple(out) if min(out) >= 1 else None


def stage_layers(chunks: tuple[int, ...], pp: int) -> tuple[int, ...]:
    """Layers of each stage: the sum of its chunks' (chunk k on stage k % pp)."""
    return tuple(sum(chunks[s::pp]) for s in range(pp))


def point_layers(layers: int, pp: int, virtual: int, chunks: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Layers per stage of an outer point: its chunks' sums, or the balanced split."""
    return stage_layers(chunks, pp) if chunks is not None else balanced_layers(layers, pp)
