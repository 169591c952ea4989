"""The packed candidates that training and the choice measurements run on are what inference computes.

Training precomputes every frame's ``Candidates`` once (``propagate.run_candidates``, packed by
``step.pack_candidates``) and unrolls ``step.propagate_step`` over the unpacked tensors; inference
(``Propagator.step``) computes the same candidates on the fly. Both must give the same colour, frame after
frame, on a real clip with the shipped weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from colorprop.colour import convert
from colorprop.data.example import example_shot_dir
from colorprop.engine.models import load_models
from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.propagate import Propagator, ab_numpy, key_direct, resize_hw, run_candidates
from colorprop.engine.step import (
    CANDIDATE_CHANNELS,
    DIRECT_CHANNELS,
    DIRECT_FIELDS,
    PACKED_LAYOUT,
    Candidates,
    Carried,
    carry_on,
    pack_candidates,
    packed_slice,
    propagate_step,
    start,
    unpack_candidates,
)
from colorprop.io.exr import read_exr

WIDTH, HEIGHT = 160, 90
FRAMES = 8


def example_labs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(L, ab) at 160 x 90 of the example shot: the key's colour at frame 1, then the gray plates 2..8."""
    shot = example_shot_dir()
    paths = [shot / "key.0001.exr"] + [shot / f"plate.{i:04d}.exr" for i in range(2, FRAMES + 1)]
    labs = []
    for path in paths:
        lab = convert.linear_rec709_to_lab(resize_hw(read_exr(path).rgb(), WIDTH, HEIGHT))
        labs.append((np.ascontiguousarray(lab[..., 0], np.float32), np.ascontiguousarray(lab[..., 1:], np.float32)))
    return labs


@pytest.mark.parametrize("direct", [False, True])
def test_the_packed_layout_is_the_candidates_fields_then_the_true_colour_then_key_direct(direct):
    base = tuple(f for f in Candidates._fields if f not in DIRECT_FIELDS)
    assert tuple(name for name, _ in PACKED_LAYOUT) == (*base, "ab_true", *DIRECT_FIELDS)
    assert DIRECT_FIELDS == Candidates._fields[-2:]
    assert (CANDIDATE_CHANNELS, DIRECT_CHANNELS) == (11, 14)
    sizes = dict(PACKED_LAYOUT)
    names = [*Candidates._fields] if direct else [*base]
    fields = Candidates(**{name: torch.full((1, sizes[name], 2, 3), float(i)) for i, name in enumerate(names)})
    packed = pack_candidates(fields, torch.full((1, 2, 2, 3), 99.0))
    assert packed.shape[1] == (DIRECT_CHANNELS if direct else CANDIDATE_CHANNELS)
    for i, name in enumerate(names):
        assert (packed[:, packed_slice(name)] == float(i)).all(), name
    assert (packed[:, packed_slice("ab_true")] == 99.0).all()
    unpacked, ab_true = unpack_candidates(packed)
    for name in Candidates._fields:
        if name in names:
            assert torch.equal(getattr(unpacked, name), getattr(fields, name)), name
        else:
            assert getattr(unpacked, name) is None, name
    assert (ab_true == 99.0).all()
    # a run packed with key-direct, cut to CANDIDATE_CHANNELS, is the run packed without it
    if direct:
        short, _ = unpack_candidates(packed[:, :CANDIDATE_CHANNELS])
        assert short.ab_direct is None and short.direct_consistency is None
        assert all(torch.equal(getattr(short, f), getattr(fields, f)) for f in base)
    with pytest.raises(ValueError, match="channels"):
        unpack_candidates(packed[:, :-1])


def error_head_models():
    """The shipped models with an error-head F_f over chain, key and key-direct that predicts each candidate's
    error from its own cue (1 − consistency, 1 − similarity, 1 − the direct flow's consistency): on the example
    clip it takes each of the three somewhere."""
    models = load_models(device="cpu", precision="fp32")
    net = FusionNet(FusionConfig(width=3, dilations=(1,), candidates=("chain", "key", "direct"), head="error"))
    conv = net.body[0]
    with torch.no_grad():
        conv.weight.zero_()
        for k, cue in enumerate((6, 10, 15)):  # fusion_features: consistency, similarity, direct consistency
            conv.weight[k, cue, 1, 1] = -1.0
        conv.bias.fill_(1.0)
        net.skip.weight.zero_()
        net.head.weight.copy_(torch.diag(torch.tensor([4.0, 1.0, 4.0]))[:, :, None, None])  # F_s's similarity is lower
    return replace(models, fusion=net.eval())


@pytest.mark.parametrize(
    "head", ["error with key-direct (shipped)", "error with key-direct (hand-made)", "choice (rule)"]
)
def test_packed_candidates_through_propagate_step_reproduce_propagator_step_on_a_real_clip(head):
    models = {
        "error with key-direct (shipped)": lambda: load_models(device="cpu", precision="fp32"),
        "error with key-direct (hand-made)": error_head_models,
        # the two-candidate choice head of older manifests, untrained: the rule (key match where consistency < 0.5)
        "choice (rule)": lambda: replace(
            load_models(device="cpu", precision="fp32"), fusion=FusionNet(FusionConfig()).eval()
        ),
    }[head]()
    labs = example_labs()
    (L_key, ab_key), rest = labs[0], labs[1:]

    propagator = Propagator("full", L_key, ab_key, models)
    inferred = []
    for L, _ in rest:
        pending = propagator.step(L)
        propagator.accept(pending, pending.colour.ab)
        inferred.append(pending.colour.ab)

    packed = torch.from_numpy(run_candidates(models, labs))
    direct = models.fusion.cfg.direct
    assert packed.shape == (FRAMES, DIRECT_CHANNELS if direct else CANDIDATE_CHANNELS, HEIGHT, WIDTH)
    if direct:  # the packed key-direct channels are the engine's key_direct, which measure.choice caches
        np.testing.assert_array_equal(packed[1:, CANDIDATE_CHANNELS:].numpy(), key_direct(labs)[1:])
    carried = start(packed[:1, packed_slice("ab_true")])
    taken = torch.zeros(len(models.fusion.cfg.candidates))
    with torch.inference_mode():
        for t in range(1, FRAMES):
            candidates, ab_true = unpack_candidates(packed[t : t + 1])
            np.testing.assert_array_equal(ab_numpy(ab_true), rest[t - 1][1])
            out = propagate_step(models.fusion, carried, candidates)
            carried = carry_on(Carried(out.ab_flow, out.age_flow), out.ab)
            chosen = out.key_weight.long() if out.chosen is None else out.chosen
            taken += torch.bincount(chosen.flatten(), minlength=len(taken))
            np.testing.assert_allclose(ab_numpy(out.ab), inferred[t - 1], atol=1e-3, err_msg=f"frame {t + 1}")
    # Every candidate is really chosen somewhere, so a swapped slice would show in the colour.
    assert (taken > 0).all(), taken


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ab_distance_is_norm_bit_for_bit_with_norms_zero_gradient(dtype):
    from colorprop.engine.step import ab_distance

    gen = torch.Generator().manual_seed(7)
    for scale in (1e-4, 1e-2, 1.0, 100.0):
        a = (torch.randn(3, 2, 37, 53, generator=gen) * scale).to(dtype)
        b = (torch.randn(3, 2, 37, 53, generator=gen) * scale).to(dtype)
        b[:, :, :5] = a[:, :, :5]  # equal colours: distance 0
        expected = (a - b).norm(dim=1, keepdim=True)
        got = ab_distance(a, b)
        assert got.dtype == dtype and torch.equal(got, expected), scale
    a = torch.randn(1, 2, 4, 4, generator=gen, requires_grad=True)
    b = a.detach().clone()
    b[:, :, 2:] += 1.0  # half the pixels differ
    ab_distance(a, b).sum().backward()
    reference = a.detach().clone().requires_grad_(True)
    (reference - b).norm(dim=1, keepdim=True).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.equal(a.grad[:, :, :2], torch.zeros_like(a.grad[:, :, :2]))
    assert torch.allclose(a.grad, reference.grad)
