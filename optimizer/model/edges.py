"""Edges between neighbouring operators: the tensor each carries from its producer to its consumer,
the operands it joins, and the layout conversions along it (the forward tensor, and its gradient
back). Tables prices the conversions on the tensor group's rings.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw.topology import ZERO, CommCost
from models.graph import Graph, Op, Operand

from .sharding import (
    PARTIAL, Option, Step, conversion, input_grad_layout, input_layout, needed_grad_layout, output_layout,
)


@dataclass(frozen=True)
class Conversion:
    """The collectives of one layout conversion: their cost, the main-memory bytes one die moves in
    them, and their reduction part (the reduce-scatter that sums partial results: a reduce-scatter
    step whole, the first half of an all-reduce step) — what a producer GEMM can overlap."""

    comm: CommCost = ZERO
    mem_bytes: float = 0.0  # main-memory bytes one die moves (reductions on the cores)
    reduce_s: float = 0.0  # seconds of the reduction part (each step alone)
    ring: int = 1  # largest ring of a reduction step (chunks of an overlapped pipeline)
    near_memory_saving: float = 0.0  # bytes the reduction part saves with near-memory reduction


NO_CONVERSION = Conversion()


@dataclass(frozen=True)
class EdgeCost:
    fwd: CommCost  # convert the producer's output to the consumer's input layout
    grad: CommCost  # convert the consumer's input gradient to the producer's output layout
    fwd_conv: Conversion = NO_CONVERSION  # fwd with its memory bytes and reduction part
    grad_conv: Conversion = NO_CONVERSION


@dataclass(frozen=True)
class Edge:
    tensor: str
    producer: str
    consumer: str
    where: str  # "block" (inside a layer), "wrap" (layer to next layer), "pre", "post"


def graph_edges(g: Graph) -> list[Edge]:
    """Every tensor use of the block and post ops, with the op producing it."""
    prod = {x.tensor: o.name for o in g.block for x in o.outputs}
    out: list[Edge] = []
    for o in g.block:
        for x in o.inputs:
            if x.tensor == g.block_input:
                out.append(Edge(x.tensor, prod[g.block_output], o.name, "wrap"))
                out.append(Edge("emb", "embedding", o.name, "pre"))
            else:
                out.append(Edge(x.tensor, prod[x.tensor], o.name, "block"))
    postprod = {x.tensor: o.name for o in g.post for x in o.outputs}
    for o in g.post:
        for x in o.inputs:
            p = postprod.get(x.tensor, prod.get(x.tensor))
            out.append(Edge(x.tensor, p, o.name, "post"))
    return out


def edge_operands(g: Graph, e: Edge) -> tuple[Operand, Operand]:
    """(the producer's output operand, the consumer's input operand) that edge e joins."""
    prod, cons = g.op(e.producer), g.op(e.consumer)
    p_operand = next(x for x in prod.outputs if x.tensor in (e.tensor, g.block_output) and
                     (x.tensor == e.tensor or e.where == "wrap"))
    c_operand = next(x for x in cons.inputs if x.tensor in (e.tensor, g.block_input))
    return p_operand, c_operand


def conversion_steps(g: Graph, e: Edge, o_p: Option, o_c: Option,
                     shape: tuple[int, int]) -> tuple[list[Step], list[Step]]:
    """The collectives that convert edge e's tensor from the producer's output layout to the
    consumer's input layout, and those that convert its gradient back."""
    prod, cons = g.op(e.producer), g.op(e.consumer)
    p_operand, c_operand = edge_operands(g, e)
    src = output_layout(prod, o_p, p_operand, g.tensors)
    dst = input_layout(cons, o_c, c_operand, g.tensors)
    nbytes = g.tensors[p_operand.tensor].nbytes(g.sizes)
    gsrc = input_grad_layout(cons, o_c, c_operand, g.tensors)
    gdst = needed_grad_layout(src)
    return conversion(src, dst, shape, nbytes), conversion(gsrc, gdst, shape, nbytes)


def saved_inputs(g: Graph, edges: list[Edge]) -> dict[Edge, bool]:
    """Per edge: does the consumer's backward need this input (so it is converted again in backward)?"""
    out = {}
    for e in edges:
        cons = g.op(e.consumer)
        t = g.block_input if e.where == "wrap" else e.tensor
        out[e] = t in cons.saved or (e.where == "pre" and g.block_input in cons.saved)
    return out


def edge_counts(edges: list[Edge]) -> tuple[dict[str, int], dict[str, int]]:
    """Edges per op: as their producer, as their consumer."""
    outs: dict[str, int] = {}
    ins: dict[str, int] = {}
    for e in edges:
        outs[e.producer] = outs.get(e.producer, 0) + 1
        ins[e.consumer] = ins.get(e.consumer, 0) + 1
    return outs, ins


def reduction_follows(g: Graph, edges: list[Edge], op: Op, opt: Option) -> bool:
    """Does some edge of `op` under `opt` sum partial results: its output's forward conversion, or
    an input gradient's conversion back?"""
    for e in edges:
        # inputs and needed output gradients are never partial: a conversion sums
        # partial results exactly when its source layout holds them
        if e.producer == op.name:
            found = PARTIAL in output_layout(op, opt, edge_operands(g, e)[0], g.tensors)
        elif e.consumer == op.name:
            found = PARTIAL in input_grad_layout(op, opt, edge_operands(g, e)[1], g.tensors)
        else:
            continue
        if found:
            return True
    return False
