"""Coarse-to-fine matching: brute-force agreement, ROI bookkeeping, known-shift recovery, bounded memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from colorprop.engine.nets.features import EfficientNetLite0Features, Features
from colorprop.engine.nets.matching import Match, coarse_topk, match_coarse_to_fine, readout, roi_cells


def smooth_noise(
    h: int, w: int, seed: int = 0, scales=((4, 0.3), (8, 0.3), (16, 0.25), (32, 0.15), (64, 0.1))
) -> torch.Tensor:
    """1 x 1 x h x w multi-scale value noise in about [0, 1] (a textured, non-periodic test image)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 1, h, w)
    for s, a in scales:
        n = torch.rand(1, 1, h // s + 2, w // s + 2, generator=g)
        img += a * F.interpolate(n, size=(h, w), mode="bicubic", align_corners=False)
    return img.clamp(0.0, 1.0)


def random_features(hc: int, wc: int, seed: int, cc: int = 16, cf: int = 24) -> Features:
    g = torch.Generator().manual_seed(seed)
    return Features(
        F.normalize(torch.randn(1, cc, hc, wc, generator=g), dim=1),
        F.normalize(torch.randn(1, cf, 4 * hc, 4 * wc, generator=g), dim=1),
    )


def shifted(f: Features, cy: int, cx: int) -> Features:
    """Features of the same content moved by (cy, cx) coarse cells: cur(p) = key(p + shift)."""
    return Features(torch.roll(f.coarse, (-cy, -cx), dims=(2, 3)), torch.roll(f.fine, (-4 * cy, -4 * cx), dims=(2, 3)))


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetLite0Features()


def test_coarse_topk_matches_brute_force():
    key, cur = random_features(5, 7, 1), random_features(4, 6, 2)
    idx, sims = coarse_topk(key.coarse, cur.coarse, k=3, chunk=5)
    full = torch.einsum("ncm,nck->nmk", cur.coarse.flatten(2), key.coarse.flatten(2))
    ref_v, ref_i = full.topk(3, dim=-1)
    assert idx.shape == (1, 24, 3)
    assert torch.equal(idx, ref_i)
    assert torch.allclose(sims, ref_v, atol=1e-6)


def test_roi_cells_dedupes_and_stays_inside():
    # key grid 4 x 5; top cells: corner (0) and its neighbour (1) -> overlapping 3x3 ROIs
    top = torch.tensor([[[0, 1]]])
    cells, valid = roi_cells(top, (4, 5), roi_radius=1)
    got = sorted(cells[valid].tolist())
    assert got == [0, 1, 2, 5, 6, 7]
    assert valid[0, 0, : len(got)].all() and not valid[0, 0, len(got) :].any()


def test_exact_shift_on_synthetic_features():
    key = random_features(6, 8, 3)
    cur = shifted(key, 1, -2)
    m = match_coarse_to_fine(key, cur, k=2, roi_radius=1, chunk=5)
    ys, xs = torch.meshgrid(torch.arange(24), torch.arange(32), indexing="ij")
    assert torch.equal(m.key_y[0], ((ys + 4) % 24).float())
    assert torch.equal(m.key_x[0], ((xs - 8) % 32).float())
    assert torch.allclose(m.similarity, torch.ones_like(m.similarity), atol=1e-5)
    assert torch.allclose(m.topk_weight.sum(-1), torch.ones(1, 24, 32), atol=1e-5)


def test_chunk_size_does_not_change_the_result():
    key, cur = random_features(5, 6, 4), random_features(4, 7, 5)
    a = match_coarse_to_fine(key, cur, k=3, chunk=3)
    b = match_coarse_to_fine(key, cur, k=3, chunk=1000)
    assert torch.equal(a.index, b.index)
    assert torch.allclose(a.topk_weight, b.topk_weight, atol=1e-6)


def test_readout_picks_the_matched_values():
    key = random_features(3, 4, 6)
    cur = shifted(key, 1, 1)
    m = match_coarse_to_fine(key, cur, k=1, temperature=1e-4)
    values = torch.arange(12 * 16, dtype=torch.float32).reshape(1, 1, 12, 16)
    out = readout(values, m)
    assert out.shape == (1, 1, 12, 16)
    assert torch.allclose(out[0, 0], (m.key_y * 16 + m.key_x)[0], atol=1e-3)


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_memory_is_bounded_by_the_chunk():
    key, cur = random_features(10, 12, 7, cf=32), random_features(10, 12, 8, cf=32)
    sizes = {}
    for chunk in (4, 10_000):
        with _LargestTensor() as probe:
            match_coarse_to_fine(key, cur, k=4, roi_radius=1, chunk=chunk)
        sizes[chunk] = probe.largest
    per_chunk = 4 * 36 * 16 * 32  # chunk x ROI cells x 16 fine locations x channels
    inputs = key.fine.numel()
    assert sizes[4] <= max(per_chunk, inputs)
    assert sizes[10_000] > 10 * sizes[4]


@pytest.mark.parametrize("shift", [(12, 20), (-8, 36)])
def test_lite0_matching_recovers_a_known_shift(lite0, shift):
    dy, dx = shift
    h, w = 192, 320
    big = smooth_noise(h + 40, w + 80, seed=11)
    oy, ox = max(-dy, 0), max(-dx, 0)
    key = big[..., oy : oy + h, ox : ox + w]
    cur = big[..., oy + dy : oy + dy + h, ox + dx : ox + dx + w]
    with torch.inference_mode():
        m = match_coarse_to_fine(lite0(key), lite0(cur), chunk=16)
    assert isinstance(m, Match)
    h4, w4 = h // 4, w // 4
    ys, xs = torch.meshgrid(torch.arange(h4), torch.arange(w4), indexing="ij")
    ey, ex = ys + dy // 4, xs + dx // 4
    margin = 2
    interior = (
        (ys >= margin)
        & (ys < h4 - margin)
        & (xs >= margin)
        & (xs < w4 - margin)
        & (ey >= margin)
        & (ey < h4 - margin)
        & (ex >= margin)
        & (ex < w4 - margin)
    )
    hit = (m.key_y[0] == ey) & (m.key_x[0] == ex)
    assert hit[interior].float().mean().item() >= 0.95
