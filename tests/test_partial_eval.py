"""`colorprop eval --partial` (measure/partial.py) on a synthetic shot whose new content the one key never saw."""

from __future__ import annotations

import numpy as np

from colorprop.data.clips import Clip
from colorprop.engine.engine import Engine
from colorprop.measure.evaluate import evaluate
from colorprop.measure.partial import painted_matte
from shotkit import W, background, with_object


def test_painted_matte_covers_the_worst_pixels_softly():
    rng = np.random.default_rng(1)
    true = rng.random((40, 60, 3)).astype(np.float32) * 50
    pred = true.copy()
    pred += rng.random(pred.shape).astype(np.float32)  # small errors everywhere ...
    pred[10:30, 20:40] += 30  # ... and a wrong block of 400 of 2400 pixels: it holds the worst 10 %
    matte = painted_matte(pred, true)
    assert matte[12:28, 22:38].min() > 0.9 and matte.max() <= 1.0
    edge = matte[2:12, 30]  # across the block's top edge
    assert ((edge > 0.05) & (edge < 0.95)).sum() >= 2  # a soft edge, not a hard box
    assert matte[36:, :10].max() == 0.0  # far away: not painted


def test_a_partial_key_fixes_the_new_object_and_leaves_the_rest_alone():
    n = 16
    entering, _ = with_object(
        background(n, shift=6.0), {i: (W - 5 * (i - 3), 20, W - 5 * (i - 3) + 24, 44) for i in range(4, n)}
    )
    results = evaluate(Engine(None), [Clip("entering", entering)], ["flow"], ns=(5,), log=lambda s: None, partial=True)
    check = results["clips"]["entering"]["methods"]["flow"]["partial"]
    assert check["fall"] >= 0.5, check
    assert check["psnr_reached_after"] > check["psnr_reached_before"], check
    assert check["unreached_equal"] and check["unreached"] >= 1, check
    assert results["partial"]["flow"]["losers"] == []
