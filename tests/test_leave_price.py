"""Choosing the error head's price for leaving the chain on packed training runs (measure/leave_price)."""

from __future__ import annotations

import numpy as np
import torch

from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.step import DIRECT_CHANNELS, packed_slice
from colorprop.measure.choice import priced
from colorprop.measure.leave_price import best_price, score_run


def packed_run(t=6, h=20, w=24, seed=0) -> np.ndarray:
    """A run in the packed layout with key-direct: a drifting pan, the key match and key-direct partly right."""
    rng = np.random.default_rng(seed)
    run = np.zeros((t, DIRECT_CHANNELS, h, w), np.float32)
    truth = 0.2 * rng.standard_normal((2, h, w)).astype(np.float32)
    for i in range(t):
        run[i, packed_slice("gray")] = rng.random((1, h, w))
        run[i, packed_slice("flow")] = 0.7 * rng.standard_normal((2, h, w))
        for name in ("consistency", "photometric", "chain", "similarity", "direct_consistency"):
            run[i, packed_slice(name)] = rng.random((1, h, w))
        run[i, packed_slice("ab_true")] = truth
        run[i, packed_slice("ab_key")] = truth + 0.05 * rng.standard_normal((2, h, w))
        run[i, packed_slice("ab_direct")] = truth + 0.1 * rng.standard_normal((2, h, w))
    return run.astype(np.float16)


def test_a_price_above_every_gap_is_the_flow_chain_and_price_zero_is_the_trained_net():
    torch.manual_seed(0)
    net = FusionNet(FusionConfig(width=8, candidates=("chain", "key", "direct"), head="error")).eval()
    run = packed_run()
    flow, flow_shares = score_run(run, None, [3, 5])
    free, free_shares = score_run(run, priced(net, 0.0), [3, 5])
    same, _ = score_run(run, net, [3, 5])
    kept, kept_shares = score_run(run, priced(net, 1e6), [3, 5])
    assert free == same and free_shares["chain"] < 0.9  # price 0: the net as trained, which leaves the chain
    assert kept == flow and kept_shares["chain"] == 1.0 and flow_shares == {"chain": 1.0}
    assert priced(net, 0.3).cfg.leave_price == 0.3 and net.cfg.leave_price == 0.0  # the trained net untouched
    assert free[3] != flow[3]


def test_the_price_kept_has_the_best_mean_gain_and_ties_go_to_the_lower_price():
    assert best_price({0.0: [0.1, -0.3], 0.2: [0.05, 0.2], 0.5: [0.0, 0.1]}) == 0.2
    assert best_price({0.3: [0.1, 0.1], 0.1: [0.2, 0.0], 0.0: [-1.0, 0.0]}) == 0.1
