"""The memory dominance the enumeration prunes by (optimizer/search/bounds.py, _Dominance): among
outer points that differ only in dp and ZeRO stage, the one with the largest (dp, stage) needs the
least memory on a die, so when it fits on no die none of them does."""

import hw
import models
from optimizer.search.bounds import _bounds, _Dominance, _Tiers
from optimizer.search.points import probed_points
from optimizer.search.space import get_space


def test_the_top_of_each_family_needs_the_least_memory():
    work = models.Workload(model=models.load("llama2-7b"), global_batch=64)
    checked = 0
    for preset, kw in (("hecaton-chiplet", {"rows": 2, "cols": 4}), ("dgx-a100", {"nodes": 1})):
        h, sp = hw.load(preset, **kw), get_space("full")
        tiers, dom = _Tiers.of(sp, h), _Dominance(work, h, sp)
        mems: dict = {}
        for pt, pr in probed_points(work, h, sp):
            mems[pt] = _bounds(pt, pr, work, h, sp, tiers)[1]
        for pt, mem in mems.items():
            top = dom.top[dom.family(pt)]
            assert (top.dp, top.zero_stage) >= (pt.dp, pt.zero_stage)
            assert mems[top] <= mem * (1 + 1e-12), (pt, top)
            checked += top != pt
    assert checked > 100
