"""Megatron-LM's --pipeline-model-parallel-layout string for per-chunk layer counts.

Grammar (megatron/core/transformer/pipeline_parallel_layer_layout.py, Megatron-LM core_v0.16.1,
PipelineParallelLayerLayout.parse_str_to_list): model chunks are separated by "|", in layout
order (chunk k runs on pipeline rank k % pp as its virtual stage k // pp); "E" is the embedding,
"L" the loss with the output layer, "t" one transformer layer; "x*n" repeats the character x n
times and "(...)*n" repeats the group n times; commas are cosmetic. The first chunk must start
with E and the last end with L, each exactly once.
"""

from __future__ import annotations


def _chunk(layers: int) -> str:
    return "t" if layers == 1 else f"t*{layers}"


def pipeline_layout(chunks: tuple[int, ...] | list[int]) -> str:
    """The layout of model chunks holding `chunks` transformer layers each (pipeline-layout order):
    the embedding with the first chunk, the loss and output layer with the last, runs of equal
    chunks between them folded as "(t*n|)*r". E.g. (3, 4 x 30, 3) -> "Et*3|(t*4|)*30t*3L"."""
    chunks = list(chunks)
    if not chunks or any(n < 0 for n in chunks):
        raise ValueError(f"pipeline_layout: need one or more chunks of >= 0 layers, got {chunks}")
    if len(chunks) == 1:
        return f"E{_chunk(chunks[0]) if chunks[0] else ''}L"
    head = "E" + (_chunk(chunks[0]) if chunks[0] else "")
    tail = (_chunk(chunks[-1]) if chunks[-1] else "") + "L"
    middle, i = "", 1
    while i < len(chunks) - 1:
        j = i
        while j + 1 < len(chunks) - 1 and chunks[j + 1] == chunks[i]:
            j += 1
        body = _chunk(chunks[i]) if chunks[i] else ""
        run = j - i + 1
        middle += f"({body}|)*{run}" if run > 1 else f"{body}|"
        i = j + 1
    return f"{head}|{middle}{tail}"


def expand_layout(layout: str) -> list[str]:
    """The chunks of a layout string with repetitions unrolled, e.g. "Et*2|(t|)*2tL" ->
    ["Ett", "t", "t", "tL"] (the same two substitutions as Megatron-LM's parser)."""
    import re

    text = layout.replace(",", "")
    text = re.sub(r"\(([^)]+)\)\*(\d+)", lambda x: x.group(1) * int(x.group(2)), text)
    text = re.sub(r"(.)\*(\d+)", lambda x: x.group(1) * int(x.group(2)), text)
    return text.split("|")
