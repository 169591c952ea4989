"""measure/choice: the key-direct candidate and the per-pixel oracle over any set of candidates."""

import json

import cv2
import numpy as np
import pytest
import torch

from colorprop.engine.step import CANDIDATE_CHANNELS, packed_slice
from colorprop.measure.choice import candidate_set, key_direct, pick_closest, run_policy


def _textured(seed: int, h=64, w=96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    L = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0) * 60 + 20
    ab = np.stack(
        [cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0) * 80 - 40 for _ in range(2)], -1
    )
    return L, ab.astype(np.float32)


def test_key_direct_warps_the_key_straight_onto_each_frame():
    L, ab = _textured(0)
    shifts = [0, 2, 4, 6]  # frame t is the key moved right by shifts[t] pixels
    labs = [(np.roll(L, s, axis=1), np.roll(ab, s, axis=1)) for s in shifts]
    direct = key_direct(labs)
    assert direct.shape == (4, 3, 64, 96) and direct.dtype == np.float32
    np.testing.assert_allclose(direct[0, :2] * 128, ab.transpose(2, 0, 1), atol=1e-4)
    inner = (slice(8, -8), slice(16, -16))
    for t in range(1, 4):
        error = np.abs(direct[t, :2].transpose(1, 2, 0) * 128 - labs[t][1])[inner].mean()
        assert error < 1.0, (t, error)  # Lab units; the key's colour lands where it moved to
        assert direct[t, 2][inner].mean() > 0.8  # the flow to the key is forward-backward consistent


def test_oracle_picks_per_pixel_among_its_set_inside_the_recursion():
    T, H, W = 4, 6, 8
    rng = np.random.default_rng(3)
    truth = rng.normal(0, 0.2, (T, 2, H, W)).astype(np.float32)
    cand = np.zeros((T, CANDIDATE_CHANNELS, H, W), np.float32)  # flow 0: the chain keeps the written colour
    cand[:, packed_slice("ab_true")] = truth
    key_right = np.zeros((H, W), bool)
    key_right[:, : W // 2] = True  # the key match is right on the left half, the direct candidate on the right
    for t in range(T):
        cand[t, packed_slice("ab_key")] = np.where(key_right, truth[t], truth[t] + 0.3)
    direct = np.ones((T, 3, H, W), np.float32)
    direct[:, :2] = np.where(key_right, truth + 0.3, truth)

    def error(policy):
        abs_, shares = run_policy(policy, cand, direct, None)
        return np.mean([np.abs(a - t.transpose(1, 2, 0) * 128).mean() for a, t in zip(abs_[1:], truth[1:])]), shares

    assert error("oracle:chain+key+direct")[0] == pytest.approx(0.0, abs=1e-5)
    both, shares = error("oracle:key+direct")
    assert both == pytest.approx(0.0, abs=1e-5) and shares == pytest.approx({"key": 0.5, "direct": 0.5})
    assert error("oracle:chain+key")[0] > 1.0 and error("oracle:chain+direct")[0] > 1.0
    # the chain carries what was written: with flow 0 its candidate is the previous frame's choice
    flow_err, flow_shares = error("flow")
    assert flow_shares == {"chain": 1.0} and flow_err == pytest.approx(
        np.mean([np.abs(truth[t] - truth[0]).mean() * 128 for t in range(1, T)]), rel=1e-5
    )


def test_pick_closest_ties_go_to_the_first_candidate():
    a = torch.zeros(1, 2, 1, 3)
    b = torch.tensor([[[[1.0, 0.0, 3.0]], [[0.0, 0.0, 0.0]]]])
    truth = torch.tensor([[[[1.0, 0.0, 2.0]], [[0.0, 0.0, 0.0]]]])
    ab, shares = pick_closest({"chain": a, "key": b}, truth)
    assert ab[0, 0, 0].tolist() == [1.0, 0.0, 3.0] and shares == pytest.approx({"chain": 1 / 3, "key": 2 / 3})


def test_policy_names():
    assert candidate_set("oracle") == ("chain", "key") and candidate_set("direct") == ("direct",)
    assert candidate_set("oracle:direct+chain") == ("chain", "direct") and candidate_set("trained") is None
    assert candidate_set("trained@0.2") is None  # the error head with a leave price
    with pytest.raises(ValueError, match="leave price"):
        candidate_set("trained@-0.1")
    with pytest.raises(ValueError, match="memory"):
        candidate_set("oracle:chain+memory")
    with pytest.raises(ValueError, match="unknown policy"):
        candidate_set("best")


def test_resume_keeps_only_ranges_measured_the_same_way(tmp_path):
    from colorprop.measure.choice import previous_ranges

    row = {p: {"psnr": {"10": 30.0}, "shares": {}} for p in ("flow", "key", "oracle:chain+key")}
    old = {"split": "validation", "ns": [10], "weights": "w", "ranges": {"a@0": row, "b@0": {"flow": row["flow"]}}}
    path = tmp_path / "ceiling.json"
    path.write_text(json.dumps(old))
    asked = {"split": "validation", "ns": [10], "weights": "w", "policies": ["flow", "oracle:chain+key"]}
    assert previous_ranges(path, asked) == {"a@0": {"flow": row["flow"], "oracle:chain+key": row["oracle:chain+key"]}}
    assert previous_ranges(path, {**asked, "split": "dev"}) == {}
    assert previous_ranges(path, {**asked, "ns": [10, 50]}) == {}
    assert previous_ranges(tmp_path / "none.json", asked) == {}


def test_the_error_heads_costs_add_up_to_what_its_picks_change_against_the_chain():
    from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet

    T, H, W = 5, 12, 16
    rng = np.random.default_rng(5)
    truth = rng.normal(0, 0.2, (T, 2, H, W)).astype(np.float32)
    cand = np.zeros((T, CANDIDATE_CHANNELS, H, W), np.float32)  # flow 0: the chain is the previous written colour
    cand[:, packed_slice("ab_true")] = truth
    cand[:, packed_slice("ab_key")] = truth + rng.normal(0, 0.1, truth.shape).astype(np.float32)
    direct = np.ones((T, 3, H, W), np.float32)
    direct[:, :2] = truth + rng.normal(0, 0.1, truth.shape).astype(np.float32)
    torch.manual_seed(0)
    head = FusionNet(FusionConfig(width=8, candidates=("chain", "key", "direct"), head="error")).eval()
    costs: dict[str, list[float]] = {}
    abs_, shares = run_policy("trained", cand, direct, head, costs)
    assert shares["chain"] < 1.0  # the untrained head leaves the chain somewhere: the costs are not all zero
    assert costs["chain"] == [0.0] * (T - 1) and set(costs) == {"chain", "key", "direct"}
    for t in range(1, T):
        target = truth[t].transpose(1, 2, 0) * 128
        written, kept = np.square(abs_[t] - target).sum(-1).mean(), np.square(abs_[t - 1] - target).sum(-1).mean()
        assert sum(costs[n][t - 1] for n in costs) == pytest.approx(written - kept, rel=1e-4, abs=1e-3)
