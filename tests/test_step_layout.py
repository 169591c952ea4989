"""The packed candidates that training and the choice measurements run on are what inference computes.

Training precomputes every frame's ``Candidates`` once (``propagate.run_candidates``, packed by
``step.pack_candidates``) and unrolls ``step.propagate_step`` over the unpacked tensors; inference
(``Propagator.step``) computes the same candidates on the fly. Both must give the same colour, frame after
frame, on a real clip with the shipped weights."""

from __future__ import annotations

import numpy as np
import torch

from colorprop.colour import convert
from colorprop.data.example import example_shot_dir
from colorprop.engine.models import load_models
from colorprop.engine.propagate import Propagator, ab_numpy, resize_hw, run_candidates
from colorprop.engine.step import (
    CANDIDATE_CHANNELS,
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


def test_the_packed_layout_is_the_candidates_fields_then_the_true_colour():
    assert tuple(name for name, _ in PACKED_LAYOUT) == (*Candidates._fields, "ab_true")
    assert CANDIDATE_CHANNELS == 11
    fields = Candidates(*(torch.full((1, n, 2, 3), float(i)) for i, (_, n) in enumerate(PACKED_LAYOUT[:-1])))
    packed = pack_candidates(fields, torch.full((1, 2, 2, 3), 99.0))
    for i, (name, n) in enumerate(PACKED_LAYOUT[:-1]):
        assert (packed[:, packed_slice(name)] == float(i)).all(), name
    unpacked, ab_true = unpack_candidates(packed)
    for name in Candidates._fields:
        assert torch.equal(getattr(unpacked, name), getattr(fields, name)), name
    assert (ab_true == 99.0).all()


def test_packed_candidates_through_propagate_step_reproduce_propagator_step_on_a_real_clip():
    models = load_models(device="cpu", precision="fp32")
    labs = example_labs()
    (L_key, ab_key), rest = labs[0], labs[1:]

    propagator = Propagator("full", L_key, ab_key, models)
    inferred = []
    for L, _ in rest:
        pending = propagator.step(L)
        propagator.accept(pending, pending.colour.ab)
        inferred.append(pending.colour.ab)

    packed = torch.from_numpy(run_candidates(models, labs))
    assert packed.shape == (FRAMES, CANDIDATE_CHANNELS, HEIGHT, WIDTH)
    carried = start(packed[:1, packed_slice("ab_true")])
    key_taken = 0.0
    with torch.inference_mode():
        for t in range(1, FRAMES):
            candidates, ab_true = unpack_candidates(packed[t : t + 1])
            np.testing.assert_array_equal(ab_numpy(ab_true), rest[t - 1][1])
            out = propagate_step(models.fusion, carried, candidates)
            carried = carry_on(Carried(out.ab_flow, out.age_flow), out.ab)
            key_taken += float(out.key_weight.mean())
            np.testing.assert_allclose(ab_numpy(out.ab), inferred[t - 1], atol=1e-3, err_msg=f"frame {t + 1}")
    # The key match is really chosen somewhere, so a swapped key slice would show in the colour.
    assert key_taken > 0.0
