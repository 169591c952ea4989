"""Per-pixel separable kernels (SepConv, Niklaus et al. 2017) applied to an image.

``out(y, x) = sum_i sum_j kv[i](y, x) * kh[j](y, x) * image(y + (i - r) d, x + (j - r) d)``
with ``r = K // 2``, ``d`` the dilation, and **replicate** padding at the borders (a tap that falls
outside the image reads the nearest edge pixel, so softmax kernels keep the colour of the edge
instead of fading to zero).

The fast path never materialises the K x K patches (``unfold`` costs K*K*C*H*W floats): for each
vertical tap i it takes the image shifted by row offset (i - r) d, sums its K column-shifted slices
weighted by the *output pixel's* horizontal kernel, and accumulates that row sum weighted by the
output pixel's vertical tap i. That is exact because the 2-D kernel of each output pixel is the
outer product kv(y, x) kh(y, x)^T. Extra memory: O(C*H*W) in inference; autograd keeps the K row
sums for the backward pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["apply_separable_kernels", "apply_separable_kernels_direct"]


def _check(image: torch.Tensor, k_vertical: torch.Tensor, k_horizontal: torch.Tensor) -> int:
    if image.dim() != 4 or k_vertical.dim() != 4 or k_horizontal.dim() != 4:
        raise ValueError("image, k_vertical and k_horizontal must be NCHW tensors")
    n, _, h, w = image.shape
    if k_vertical.shape != k_horizontal.shape:
        raise ValueError(f"kernel shapes differ: {tuple(k_vertical.shape)} vs {tuple(k_horizontal.shape)}")
    kn, k, kh, kw = k_vertical.shape
    if (kn, kh, kw) != (n, h, w):
        raise ValueError(f"kernels {tuple(k_vertical.shape)} do not match image {tuple(image.shape)}")
    if k % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {k}")
    return k


def apply_separable_kernels(
    image: torch.Tensor,
    k_vertical: torch.Tensor,
    k_horizontal: torch.Tensor,
    dilation: int = 1,
) -> torch.Tensor:
    """Apply a per-pixel separable kernel to ``image``.

    Args:
        image: N x C x H x W float (e.g. chroma ab/128 of the previous frame).
        k_vertical: N x K x H x W, tap i weights row offset (i - K//2) * dilation.
        k_horizontal: N x K x H x W, tap j weights column offset (j - K//2) * dilation.
        dilation: spacing of the taps in pixels (>= 1).

    Returns:
        N x C x H x W. With kernels that each sum to 1 (softmax) the output is a convex combination
        of input pixels, so its range is that of ``image``. Differentiable w.r.t. all three inputs.
    """
    k = _check(image, k_vertical, k_horizontal)
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    _, _, h, w = image.shape
    pad = (k // 2) * dilation
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate") if pad else image
    needs_grad = torch.is_grad_enabled() and (
        image.requires_grad or k_vertical.requires_grad or k_horizontal.requires_grad
    )
    if not needs_grad:  # inference: accumulate in place, two buffers of N x C x H x W
        out = torch.zeros_like(image)
        row_sum = torch.empty_like(image)
        for i in range(k):
            rows = padded[:, :, i * dilation : i * dilation + h, :]  # N x C x H x (W + 2 pad)
            torch.mul(k_horizontal[:, 0:1], rows[..., 0:w], out=row_sum)
            for j in range(1, k):
                row_sum.addcmul_(k_horizontal[:, j : j + 1], rows[..., j * dilation : j * dilation + w])
            out.addcmul_(k_vertical[:, i : i + 1], row_sum)
        return out
    out = None
    for i in range(k):
        rows = padded[:, :, i * dilation : i * dilation + h, :]
        row_sum = None
        for j in range(k):
            term = k_horizontal[:, j : j + 1] * rows[:, :, :, j * dilation : j * dilation + w]
            row_sum = term if row_sum is None else row_sum + term
        term = k_vertical[:, i : i + 1] * row_sum
        out = term if out is None else out + term
    return out


def apply_separable_kernels_direct(
    image: torch.Tensor,
    k_vertical: torch.Tensor,
    k_horizontal: torch.Tensor,
    dilation: int = 1,
) -> torch.Tensor:
    """Reference implementation with explicit per-pixel loops (numpy, float64). Tests only: slow."""
    k = _check(image, k_vertical, k_horizontal)
    img = image.detach().cpu().double().numpy()
    kv = k_vertical.detach().cpu().double().numpy()
    kh = k_horizontal.detach().cpu().double().numpy()
    n, c, h, w = img.shape
    r = k // 2
    out = np.zeros_like(img)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                acc = np.zeros(c)
                for i in range(k):
                    yy = min(max(y + (i - r) * dilation, 0), h - 1)
                    for j in range(k):
                        xx = min(max(x + (j - r) * dilation, 0), w - 1)
                        acc += kv[b, i, y, x] * kh[b, j, y, x] * img[b, :, yy, xx]
                out[b, :, y, x] = acc
    return torch.from_numpy(out).to(image.dtype)
