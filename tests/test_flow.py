"""DIS flow propagation (the `flow` method, through the Propagator the product runs) and the Lab metrics."""

import cv2
import numpy as np
import pytest

from colorprop.colour.convert import lab_to_linear_rec709, linear_rec709_to_lab
from colorprop.engine.flow import FlowStep, forward_backward_consistency, make_dis, warp_backward
from colorprop.engine.propagate import Propagator, flow_step
from colorprop.measure.metrics import colourfulness, lab_psnr, mean_lab_psnr_first_n


def _textured_lab_canvas(size: int = 192, seed: int = 0) -> np.ndarray:
    """HxWx3 Lab: a fine random luminance texture under a smooth, strong colour pattern."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.5)
    tex /= tex.std()
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    L = 55 + 12 * tex
    a = 35 * np.sin(x / 13.0) + 10 * np.cos(y / 7.0)
    b = 35 * np.cos(y / 17.0 + x / 29.0)
    return np.stack([L, a, b], -1).astype(np.float32)


def _translate(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


@pytest.fixture(scope="module")
def shifted_sequence():
    """Key + 10 frames (Lab, 128x128) of the canvas translated by a known subpixel shift per frame."""
    rgb = lab_to_linear_rec709(_textured_lab_canvas())
    frames = []
    for k in range(11):
        moved = _translate(rgb, 0.7 * k, 0.4 * k)  # the shift is applied in linear light, like a camera
        frames.append(linear_rec709_to_lab(moved[32:160, 32:160]))
    return frames


def propagate_flow(L_frames, ab_key):
    """The `flow` method frame by frame, as the pipeline drives it: step, then accept what it wrote."""
    prop = Propagator("flow", L_frames[0], ab_key)
    out = [ab_key]
    for L in L_frames[1:]:
        pending = prop.step(L)
        out.append(pending.colour.ab)
        prop.accept(pending, out[-1])
    return out


def test_flow_propagation_keeps_colour_on_known_subpixel_shift(shifted_sequence):
    labs = shifted_sequence
    abs_ = propagate_flow([lab[..., 0] for lab in labs], labs[0][..., 1:])
    assert len(abs_) == len(labs)
    flow_labs = [np.concatenate([lab[..., :1], ab], -1) for lab, ab in zip(labs, abs_)]
    gray_labs = [np.concatenate([lab[..., :1], np.zeros_like(ab)], -1) for lab, ab in zip(labs, abs_)]
    psnr_flow = mean_lab_psnr_first_n(flow_labs, labs, 10)
    psnr_gray = mean_lab_psnr_first_n(gray_labs, labs, 10)
    assert psnr_flow > 30.0, psnr_flow
    assert psnr_gray < 20.0, psnr_gray
    # even the last frame, after 10 warps, is still good
    assert lab_psnr(flow_labs[-1], labs[-1]) > 28.0


def test_step_returns_flow_of_the_known_shift_and_high_consistency(shifted_sequence):
    labs = shifted_sequence
    out = flow_step(make_dis(), labs[0][..., 0], labs[0][..., 1:], labs[1][..., 0])
    assert isinstance(out, FlowStep)
    h, w = labs[0].shape[:2]
    assert out.ab.shape == (h, w, 2) and out.ab.dtype == np.float32
    assert out.consistency.shape == (h, w) and out.flow.shape == (h, w, 2)
    assert 0.0 <= out.consistency.min() and out.consistency.max() <= 1.0
    inner = (slice(16, -16), slice(16, -16))
    # cur(x) = prev(x - shift): the backward flow is minus the per-frame shift
    np.testing.assert_allclose(np.median(out.flow[inner][..., 0]), -0.7, atol=0.1)
    np.testing.assert_allclose(np.median(out.flow[inner][..., 1]), -0.4, atol=0.1)
    assert out.consistency[inner].mean() > 0.9


def test_identical_frames_propagate_chroma_unchanged(shifted_sequence):
    lab = shifted_sequence[0]
    abs_ = propagate_flow([lab[..., 0]] * 4, lab[..., 1:])
    np.testing.assert_allclose(abs_[-1], lab[..., 1:], atol=1e-3)


def test_consistency_drops_where_an_occluder_uncovers_background():
    rng = np.random.default_rng(1)
    bg = cv2.GaussianBlur(rng.uniform(20, 80, (128, 128)).astype(np.float32), (0, 0), 1.2)
    sq = cv2.GaussianBlur(rng.uniform(20, 80, (40, 40)).astype(np.float32), (0, 0), 1.2) + 10
    prev, cur = bg.copy(), bg.copy()
    prev[44:84, 30:70] = sq  # the square moves 10 px to the right
    cur[44:84, 40:80] = sq
    ab0 = np.zeros((128, 128, 2), np.float32)
    out = flow_step(make_dis(), prev, ab0, cur)
    uncovered = out.consistency[50:78, 32:38]  # background in cur, under the square in prev
    static = out.consistency[100:124, 8:120]
    assert static.mean() > 0.9, static.mean()
    assert uncovered.mean() < 0.5, uncovered.mean()


def test_consistency_is_zero_where_the_match_leaves_the_frame():
    b = np.zeros((8, 8, 2), np.float32)
    b[..., 0] = -3.0  # every pixel comes from 3 px to the left
    f = np.zeros_like(b)
    f[..., 0] = 3.0
    c = forward_backward_consistency(b, f)
    assert np.all(c[:, :2] == 0.0) and np.all(c[:, 4:] > 0.9)


def test_warp_backward_bilinear_and_replicated_border():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    flow = np.zeros((4, 4, 2), np.float32)
    flow[..., 0] = 0.5
    out = warp_backward(img, flow)
    np.testing.assert_allclose(out[:, :3], img[:, :3] + 0.5, atol=1e-2)
    np.testing.assert_allclose(out[:, 3], img[:, 3], atol=1e-2)  # replicate: no black border


def test_lab_psnr_definition():
    true = np.zeros((4, 4, 3), np.float32)
    true[..., 0] = 50
    pred = true.copy()
    pred[..., 1] = 10.0  # MSE over 3 channels = 100/3
    assert lab_psnr(pred, true) == pytest.approx(10 * np.log10(100**2 / (100 / 3)))
    assert lab_psnr(true, true) == 100.0
    assert colourfulness(pred) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        lab_psnr(pred[..., :2], true[..., :2])
