"""What one layer (and the embedding, and the output layer with its loss) runs, op by op, as pieces
for the replay: from each operator's cost under its option (op_cost via Tables.option_cost), each
edge's layout conversions (Tables.edge_cost) and the overlap modes, never from a stage's sums.

A piece is (name, kind, seconds alone, parts): kind "compute" (a kernel, or a GEMM with its
overlapped reduction: parts are its chunks), "comm" (a blocking tensor-group collective) or "gather"
(a ZeRO-3 weight all-gather the next piece needs). Per layer:
forward: the conversions into the layer (wrap or pre edges), then per op its gather, compute (one
piece per out-edge when the GEMM overlaps their reductions), split-reduction all-reduce and out-edge
conversions; recompute (R): the recomputed ops again in forward order with the conversions they
redo; backward (B): per op in reverse, its gather, the conversions of saved inputs it rebuilds,
compute (one piece per in-edge when it overlaps their gradient reductions), all-reduce and
input-gradient conversions.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.graph import Op

from ..edges import Edge, edge_counts
from ..mapping import OpChoice
from ..overlap import OverlapParams
from ..tables import Tables
from .overlapped import overlapped_gemm

Piece = tuple  # (name, kind, seconds, parts)


@dataclass
class OpPrograms:
    tables: Tables
    ch: dict[str, OpChoice]

    def __post_init__(self) -> None:
        t, g = self.tables, self.tables.graph
        self.p = OverlapParams.from_hardware(t.hw)
        self.rec = {k for k, v in self.ch.items() if v.recompute}
        self.oc = {o.name: t.option_cost(o, self.ch[o.name].split) for o in g.block + g.pre + g.post}
        self.edges = t.edges
        self.n_out, self.n_in = edge_counts(self.edges)
        self.ec = {e: t.edge_cost(e, self.ch[e.producer].split, self.ch[e.consumer].split) for e in self.edges}
        self.saved = {e: t.saved_by(e) for e in self.edges}
        self.prefetch = t.zero3_gather == "prefetched"
        self._cache: dict = {}

    # ---- one op's pieces ----------------------------------------------------------------
    def _gather(self, o: Op, prefetched: bool) -> list[Piece]:
        s = self.oc[o.name].gather.time_s
        if s <= 0:
            return []
        return [(f"{o.name}.zero3_gather", "gather" if prefetched and self.prefetch else "comm", s, ())]

    def _stats(self, o: Op) -> list[Piece]:
        s = self.oc[o.name].stats.time_s
        return [(f"{o.name}.allreduce", "comm", s, ())] if s > 0 else []

    def _convert(self, e: Edge, conv, label: str) -> list[Piece]:
        s = conv.comm.time_s
        return [(f"{e.producer}->{e.consumer}.{label}", "comm", s, ())] if s > 0 else []

    def _gemm_with(self, o: Op, seconds: float, role: str, edges: list[Edge], overlapped: set[Edge],
                   stats: list[Piece] = ()) -> list[Piece]:
        """`o`'s compute (fwd or bwd seconds) and the conversions of `edges` after it. A GEMM in an
        overlap mode gives each of its n edges of the role 1/n of its compute (docs, section 7) and
        runs the pieces of the edges in `overlapped` beside their reduction; the rest of each
        conversion (all-gathers, all-to-alls) follows alone."""
        mode = self.ch[o.name].overlap
        label = "fwd" if role == "fwd" else "grad"
        if mode == "sequential" or o.kind != "matmul" or not overlapped:
            out = [(f"{o.name}.{role}", "compute", seconds, ())] if seconds > 0 else []
            out += stats
            for e in edges:
                out += self._convert(e, self.ec[e].fwd_conv if role == "fwd" else self.ec[e].grad_conv, label)
            return out
        n = (self.n_out if role == "fwd" else self.n_in)[o.name]
        out, piece = [], seconds / n
        for e in edges:
            conv = self.ec[e].fwd_conv if role == "fwd" else self.ec[e].grad_conv
            if e in overlapped:
                s, parts = overlapped_gemm(mode, piece, conv.reduce_s, conv.ring, self.p)
                out.append((f"{o.name}.{role}+{e.consumer if role == 'fwd' else e.producer}.reduce", "compute",
                            s, parts))
                rest = conv.comm.time_s - conv.reduce_s
                if rest > 0:
                    out.append((f"{e.producer}->{e.consumer}.{label}", "comm", rest, ()))
            else:
                out.append((f"{o.name}.{role}", "compute", piece, ()))
                out += self._convert(e, conv, label)
        rest = seconds - piece * len(edges)  # the share of edges not used here (none for block GEMMs)
        if rest > 1e-15 * seconds:
            out.append((f"{o.name}.{role}", "compute", rest, ()))
        return out + list(stats)

    # ---- one layer ----------------------------------------------------------------------
    def _in_edges(self, o: Op, first: bool) -> list[Edge]:
        where = ("block", "pre") if first else ("block", "wrap")
        return [e for e in self.edges if e.consumer == o.name and e.where in where]

    def _out_edges(self, o: Op, where: str = "block") -> list[Edge]:
        return [e for e in self.edges if e.producer == o.name and e.where == where]

    def _again(self, e: Edge) -> bool:
        """Is e's tensor converted again in backward: the consumer's backward needs it (saved) or
        the consumer is recomputed."""
        return self.saved[e] or e.consumer in self.rec

    def _with_producer(self, e: Edge) -> bool:
        """Is e's second conversion done right after its producer's recomputation (a block edge
        whose producer is recomputed)?"""
        return e.where == "block" and e.producer in self.rec

    def layer(self, first: bool) -> tuple[list[Piece], list[Piece], list[Piece]]:
        """(forward, recompute, backward) pieces of one layer; `first`: the model's first layer,
        which reads the embedding (pre edges) instead of the previous layer (wrap edges)."""
        key = ("layer", first)
        if key not in self._cache:
            self._cache[key] = (self._forward(first), self._recompute(first), self._backward(first))
        return self._cache[key]

    def _forward(self, first: bool) -> list[Piece]:
        g = self.tables.graph
        out = []
        for o in g.block:
            for e in self._in_edges(o, first):
                if e.where != "block":
                    out += self._convert(e, self.ec[e].fwd_conv, "fwd")
        for o in g.block:
            edges = self._out_edges(o)
            out += self._gather(o, True)
            out += self._gemm_with(o, self.oc[o.name].fwd_s, "fwd", edges,
                                   {e for e in edges if self.ec[e].fwd_conv.reduce_s > 0}, self._stats(o))
        return out

    def _recompute(self, first: bool) -> list[Piece]:
        g = self.tables.graph
        out = []
        for o in g.block:
            if o.name not in self.rec:
                continue
            out += self._gather(o, True)
            for e in self._in_edges(o, first):
                if not self._with_producer(e):
                    out += self._convert(e, self.ec[e].fwd_conv, "fwd_again")
            edges = [e for e in self._out_edges(o) if self._again(e)]
            # the producer's GEMM reruns beside the reduction only for a consumer that saves the input
            ov = {e for e in edges if self.saved[e] and self.ec[e].fwd_conv.reduce_s > 0}
            out += self._gemm_with(o, self.oc[o.name].fwd_s, "fwd", edges, ov, self._stats(o))
        return [(n.replace(".fwd", ".recompute", 1) if n.endswith(".fwd") or ".fwd+" in n else n, k, s, p)
                for n, k, s, p in out]

    def _backward(self, first: bool) -> list[Piece]:
        g = self.tables.graph
        out = []
        for o in reversed(g.block):
            out += self._gather(o, True)
            edges = self._in_edges(o, first)
            if o.name not in self.rec:
                for e in edges:
                    if self.saved[e] and not self._with_producer(e):
                        out += self._convert(e, self.ec[e].fwd_conv, "fwd_again")
            out += self._gemm_with(o, self.oc[o.name].bwd_s, "bwd", edges,
                                   {e for e in edges if self.ec[e].grad_conv.reduce_s > 0}, self._stats(o))
        return out

    # ---- the embedding, the output layer and the loss -----------------------------------
    def embedding(self) -> tuple[list[Piece], list[Piece]]:
        """(forward, backward) pieces of the first stage's embedding (its gathers not prefetched)."""
        out = []
        for o in self.tables.graph.pre:
            out.append(self._gather(o, False) + [(f"{o.name}.fwd", "compute", self.oc[o.name].fwd_s, ())] +
                       self._stats(o))
            out.append(self._gather(o, False) + [(f"{o.name}.bwd", "compute", self.oc[o.name].bwd_s, ())] +
                       self._stats(o))
        return out[0], out[1]

    def head(self) -> tuple[list[Piece], list[Piece]]:
        """(forward, backward) pieces of the last stage's final norm, output layer and loss."""
        post = self.tables.graph.post
        fwd = [p for e in self.edges if e.where == "post" and e.producer not in {o.name for o in post}
               for p in self._convert(e, self.ec[e].fwd_conv, "fwd")]
        for o in post:
            edges = self._out_edges(o, "post")
            fwd += self._gather(o, False)
            fwd += self._gemm_with(o, self.oc[o.name].fwd_s, "fwd", edges,
                                   {e for e in edges if self.ec[e].fwd_conv.reduce_s > 0}, self._stats(o))
        bwd = []
        for o in reversed(post):
            edges = [e for e in self.edges if e.consumer == o.name and e.where == "post"]
            bwd += self._gather(o, False)
            for e in edges:
                if self.saved[e]:
                    bwd += self._convert(e, self.ec[e].fwd_conv, "fwd_again")
            bwd += self._gemm_with(o, self.oc[o.name].bwd_s, "bwd", edges,
                                   {e for e in edges if self.ec[e].grad_conv.reduce_s > 0}, self._stats(o))
        return fwd, bwd
