"""Coarse-to-fine feature matching (paper section 4.2), as small pure functions.

Coarse: every coarse cell of the current frame picks its top-k coarse cells of the key by cosine
similarity. Fine: every fine location of the current frame searches the key's fine locations inside
the region of interest (ROI) = those k cells dilated by ``roi_radius`` cells; all 16 fine locations
of a coarse cell share its ROI (paper Fig. 3). The result keeps the best match (hard) and the top-T
candidates with softmax weights (soft readout).

Grids follow ``features.Features``: the fine grid is exactly 4x the coarse grid, fine cell (i, j)
lies inside coarse cell (i // 4, j // 4). Memory is bounded by chunking over the current frame's
coarse cells: one chunk holds ``chunk * n_roi_cells * 16 * C`` floats of gathered key features.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from colorprop.engine.nets.features import Features

__all__ = ["Match", "coarse_topk", "roi_cells", "match_coarse_to_fine", "readout"]

CELL = 4  # fine locations per coarse cell along each axis (stride 16 / stride 4)


class Match(NamedTuple):
    """Per fine location of the current frame (grid N x H4 x W4, H4 = 4 * coarse height):

    index: long, flat index ``y * W4_key + x`` of the best key fine location.
    key_y, key_x: float, fine-grid row/column of that best match (argmax, not a soft average).
    similarity: N x 1 x H4 x W4, cosine similarity of the best match, in [-1, 1].
    topk_index: N x H4 x W4 x T long, flat key fine indices of the T best candidates.
    topk_weight: N x H4 x W4 x T, softmax(sim / temperature) over those T (sums to 1).
    """

    index: torch.Tensor
    key_y: torch.Tensor
    key_x: torch.Tensor
    similarity: torch.Tensor
    topk_index: torch.Tensor
    topk_weight: torch.Tensor


def coarse_topk(
    key_coarse: torch.Tensor, cur_coarse: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k key coarse cells for every current coarse cell, by cosine similarity.

    Args:
        key_coarse: N x C x hk x wk; cur_coarse: N x C x hc x wc (normalised here).
        k: cells to keep (clipped to hk * wk). chunk: current cells per matmul.

    Returns:
        (indices N x hc*wc x k long, flat ``Y * wk + X`` into the key coarse grid, best first;
         sims N x hc*wc x k in [-1, 1]).
    """
    kf = F.normalize(key_coarse.flatten(2), dim=1, eps=1e-6)  # N x C x Mk
    cf = F.normalize(cur_coarse.flatten(2), dim=1, eps=1e-6).transpose(1, 2)  # N x Mc x C
    k = min(k, kf.shape[-1])
    idx, val = [], []
    for s in range(0, cf.shape[1], chunk):
        sims = torch.bmm(cf[:, s : s + chunk], kf)  # N x m x Mk
        v, i = sims.topk(k, dim=-1)
        idx.append(i)
        val.append(v)
    return torch.cat(idx, 1), torch.cat(val, 1)


def roi_cells(top_cells: torch.Tensor, key_hw: tuple[int, int], roi_radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key coarse cells of each ROI: top cells dilated by ``roi_radius``, deduplicated.

    Args:
        top_cells: N x Mc x k long flat cell indices into a key coarse grid of size ``key_hw``.

    Returns:
        (cells N x Mc x R long, valid N x Mc x R bool) with R = k * (2 r + 1)^2. Valid cells come
        first in each row; invalid entries (outside the grid or repeats) point at cell 0.
    """
    hk, wk = key_hw
    ys, xs = top_cells // wk, top_cells % wk
    off = torch.arange(-roi_radius, roi_radius + 1, device=top_cells.device)
    dy = off[:, None].expand(off.numel(), off.numel()).reshape(-1)
    dx = off[None, :].expand(off.numel(), off.numel()).reshape(-1)
    yy = (ys[..., None] + dy).flatten(-2)  # N x Mc x k*(2r+1)^2
    xx = (xs[..., None] + dx).flatten(-2)
    inside = (yy >= 0) & (yy < hk) & (xx >= 0) & (xx < wk)
    sentinel = hk * wk  # sorts after every real cell
    cells = torch.where(inside, yy * wk + xx, torch.full_like(yy, sentinel))
    cells, _ = cells.sort(dim=-1)
    dup = torch.zeros_like(inside)
    dup[..., 1:] = cells[..., 1:] == cells[..., :-1]
    cells = torch.where(dup, torch.full_like(cells, sentinel), cells)
    cells, _ = cells.sort(dim=-1)  # valid cells first, ascending
    valid = cells < sentinel
    return torch.where(valid, cells, torch.zeros_like(cells)), valid


def _to_cells(fine: torch.Tensor) -> torch.Tensor:
    """N x C x 4h x 4w -> N x (h*w) x 16 x C (the 4x4 fine locations of each coarse cell)."""
    n, c, hf, wf = fine.shape
    h, w = hf // CELL, wf // CELL
    x = fine.reshape(n, c, h, CELL, w, CELL).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, h * w, CELL * CELL, c)


def _from_cells(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """N x (h*w) x 16 x ... -> N x 4h x 4w x ... (inverse of the cell layout)."""
    n, tail = x.shape[0], x.shape[3:]
    x = x.reshape(n, h, w, CELL, CELL, *tail).transpose(2, 3)
    return x.reshape(n, h * CELL, w * CELL, *tail)


def match_coarse_to_fine(
    key: Features,
    cur: Features,
    k: int = 4,
    roi_radius: int = 1,
    temperature: float = 0.02,
    soft_topk: int = 8,
    chunk: int = 64,
) -> Match:
    """Match every fine location of ``cur`` to the key's fine grid, coarse first then inside the ROI.

    Args:
        key, cur: ``Features`` (unit-norm per location; fine grid = 4x coarse grid).
        k: coarse cells per ROI. roi_radius: dilation of each ROI cell, in coarse cells.
        temperature: softmax temperature on cosine similarities for ``topk_weight``.
        soft_topk: T, candidates kept for the soft readout.
        chunk: current coarse cells processed at once (bounds memory, see module doc).

    Returns:
        ``Match`` on the current fine grid (N x 4hc x 4wc).
    """
    n, _, hk, wk = key.coarse.shape
    _, _, hc, wc = cur.coarse.shape
    if key.fine.shape[-2:] != (CELL * hk, CELL * wk) or cur.fine.shape[-2:] != (CELL * hc, CELL * wc):
        raise ValueError("fine grids must be exactly 4x the coarse grids (see features.Features)")
    top, _ = coarse_topk(key.coarse, cur.coarse, k)
    cells, valid = roi_cells(top, (hk, wk), roi_radius)  # N x Mc x R
    key_cells = _to_cells(F.normalize(key.fine, dim=1, eps=1e-6))  # N x Mk x 16 x C
    cur_cells = _to_cells(F.normalize(cur.fine, dim=1, eps=1e-6))  # N x Mc x 16 x C
    # flat key fine index of slot s (0..15) in key cell m
    wkf = CELL * wk
    slot = torch.arange(CELL * CELL, device=cells.device)
    slot_off = (slot // CELL) * wkf + slot % CELL  # 16
    t = min(soft_topk, CELL * CELL)  # every ROI holds at least one whole cell
    key_flat = key_cells.reshape(n * hk * wk, -1)  # (N*Mk) x 16C
    base = (torch.arange(n, device=cells.device) * (hk * wk))[:, None, None]
    out_val, out_idx = [], []
    for s in range(0, hc * wc, chunk):
        v_ok = valid[:, s : s + chunk]
        r = max(int(v_ok.sum(-1).max()), 1)  # compact: drop the all-invalid tail of the rows
        c = cells[:, s : s + chunk, :r]  # N x m x r
        v_ok = v_ok[..., :r]
        m = c.shape[1]
        cand = key_flat.index_select(0, (c + base).reshape(-1))
        cand = cand.reshape(n, m, r * CELL * CELL, -1)  # N x m x r*16 x C
        sims = torch.matmul(cur_cells[:, s : s + chunk], cand.transpose(-1, -2))  # N x m x 16 x r*16
        bias = torch.zeros(v_ok.shape, dtype=sims.dtype, device=sims.device).masked_fill_(~v_ok, float("-inf"))
        sims += bias.repeat_interleave(CELL * CELL, dim=-1).unsqueeze(2)
        v, p = sims.topk(t, dim=-1)  # N x m x 16 x T
        cell_of = torch.gather(c, 2, (p // (CELL * CELL)).reshape(n, m, -1)).reshape(p.shape)
        flat = (cell_of // wk) * CELL * wkf + (cell_of % wk) * CELL + slot_off[p % (CELL * CELL)]
        out_val.append(v)
        out_idx.append(flat)
    vals = _from_cells(torch.cat(out_val, 1), hc, wc)  # N x H4 x W4 x T
    idx = _from_cells(torch.cat(out_idx, 1), hc, wc)
    weights = torch.softmax(vals / temperature, dim=-1)
    best = idx[..., 0]
    return Match(
        index=best,
        key_y=torch.div(best, wkf, rounding_mode="floor").to(vals.dtype),
        key_x=(best % wkf).to(vals.dtype),
        similarity=vals[..., 0].unsqueeze(1),
        topk_index=idx,
        topk_weight=weights,
    )


def readout(values_key: torch.Tensor, match: Match) -> torch.Tensor:
    """Soft readout: ``out[n, :, y, x] = sum_t w_t * values_key[n, :, topk_index_t]``.

    Args:
        values_key: N x C x H4k x W4k on the key's fine grid (``index`` is flat into it).

    Returns:
        N x C x H4 x W4 on the current fine grid.
    """
    n, c = values_key.shape[:2]
    _, h, w, t = match.topk_index.shape
    flat = values_key.flatten(2)  # N x C x Mkf
    idx = match.topk_index.reshape(n, 1, h * w * t).expand(n, c, h * w * t)
    picked = torch.gather(flat, 2, idx).reshape(n, c, h, w, t)
    return (picked * match.topk_weight.unsqueeze(1)).sum(-1)
