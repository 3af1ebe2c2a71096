"""The peer systems' own heuristics, one module each (megatron, deepspeed, accpar, hecaton), and the
helpers they share (common). The public entry points are in optimizer.baselines."""
