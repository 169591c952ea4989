"""Many keys, confidence and key suggestions on real EXR sequences made here (method flow)."""

from __future__ import annotations

import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.cli.main import main as cli_main
from colorprop.engine.confidence import blend_by_confidence, blend_crossfade, either_right
from colorprop.measure.matte import error_captured
from colorprop.io.exr import read_exr

from shotkit import W, background, with_object, write_plate


def colorize(plate: str, key_args: list[str], out: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Lab HxWx3, confidence HxW) for frames 1..n."""
    assert (
        cli_main(
            [
                "colorize",
                "--progress",
                "none",
                "--input",
                plate,
                *key_args,
                "--output",
                out,
                "--frames",
                f"1-{n}",
                "--method",
                "flow",
                "--pixel-type",
                "float",
                "--confidence",
            ]
        )
        == 0
    )
    result = []
    for i in range(1, n + 1):
        res = read_exr(out.replace("####", f"{i:04d}"))
        rgb = np.dstack([res.channel(c) for c in "RGB"])
        result.append((convert.linear_rec709_to_lab(rgb), res.channel("colorprop.confidence")))
    return result


def entering_shot(n: int = 14) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A red box slides in from the right edge from frame 5 on, 5 px per frame, and stays."""
    boxes = {i: (W - 5 * (i - 3), 20, W - 5 * (i - 3) + 24, 44) for i in range(4, n)}
    return with_object(background(n), boxes)


def test_two_keys_beat_one_when_an_object_enters(tmp_path):
    n = 14
    frames, masks = entering_shot(n)
    true = [convert.linear_rec709_to_lab(f) for f in frames]
    plate, one = write_plate(tmp_path / "one", frames, [1])
    _, two = write_plate(tmp_path / "two", frames, [1, n])
    single = colorize(plate, one, str(tmp_path / "o1" / "c.####.exr"), n)
    double = colorize(plate, two, str(tmp_path / "o2" / "c.####.exr"), n)

    def error(result, region=None):
        errs = [np.linalg.norm(result[i][0] - true[i], axis=-1) for i in range(1, n - 1)]
        if region is not None:
            errs = [e[m] for e, m in zip(errs, region[1 : n - 1]) if m.any()]
        return float(np.mean(np.concatenate([np.ravel(e) for e in errs])))

    assert error(double) < 0.6 * error(single)
    assert error(double, masks) < 0.5 * error(single, masks)  # the box gets its colour from the later key
    assert error(double, masks) < 15.0


def test_confidence_is_lower_where_colour_is_wrong(tmp_path):
    n = 12
    frames, masks = entering_shot(n)
    true = [convert.linear_rec709_to_lab(f) for f in frames]
    plate, one = write_plate(tmp_path, frames, [1])
    result = colorize(plate, one, str(tmp_path / "o" / "c.####.exr"), n)
    inside = np.concatenate([result[i][1][masks[i]] for i in range(6, n)])
    outside = np.concatenate([result[i][1][~masks[i]] for i in range(6, n)])
    # The box's colour is invented: the matte says it is more likely wrong than right, the rest likely right
    # (outside includes the texture entering at the right border, invented too).
    assert inside.mean() < 0.5 < 0.8 < outside.mean()
    captured = [error_captured(result[i][1], np.sum((result[i][0] - true[i]) ** 2, axis=-1)) for i in range(6, n)]
    assert np.mean(captured) > 0.6
    np.testing.assert_array_equal(result[0][1], 1.0)  # the key is certain


def test_blend_is_per_pixel_by_confidence_not_a_crossfade():
    ab_f = np.full((4, 4, 2), 10.0, np.float32)
    ab_b = np.full((4, 4, 2), -10.0, np.float32)
    conf_f = np.ones((4, 4), np.float32)
    conf_f[:, 2:] = 0.0  # the forward run lost the right half
    conf_b = np.ones((4, 4), np.float32)
    conf_b[:, :2] = 0.0  # the backward run lost the left half
    ab = blend_by_confidence(ab_f, conf_f, ab_b, conf_b, t=0.5)
    assert np.all(ab[:, :2] > 9.0) and np.all(ab[:, 2:] < -9.0)
    np.testing.assert_allclose(either_right(conf_f, conf_b), 1.0)  # right where either run is
    ab = blend_crossfade(ab_f, conf_f, ab_b, conf_b, t=0.5)
    np.testing.assert_allclose(ab, 0.0)
    # both runs lost: the nearer key wins
    zero = np.zeros((4, 4), np.float32)
    ab = blend_by_confidence(ab_f, zero, ab_b, zero, t=0.1)
    assert np.all(ab > 9.0)


def test_suggest_keys_bad_count_is_bad_input(tmp_path):
    frames = background(3)
    plate, key_args = write_plate(tmp_path, frames, [1])
    assert cli_main(["suggest-keys", "--input", plate, *key_args, "--count", "0", "--method", "flow"]) == 2


@pytest.mark.parametrize("keys", [[1, 8], [1, 5, 8]])
def test_many_keys_reproduce_every_key_exactly(tmp_path, keys):
    frames, _ = entering_shot(8)
    plate, key_args = write_plate(tmp_path, frames, keys)
    result = colorize(plate, key_args, str(tmp_path / "o" / "c.####.exr"), 8)
    for k in keys:
        truth = convert.linear_rec709_to_lab(frames[k - 1])
        assert np.abs(result[k - 1][0][..., 1:] - truth[..., 1:]).max() < 0.2  # the key EXR is half


def test_resume_recomputes_the_carried_confidence_exactly():
    """``carried_only`` (a skipped frame: no networks, colour read back) carries what ``step`` carried."""
    from colorprop.engine.propagate import Propagator

    frames = [convert.linear_rec709_to_lab(f) for f in background(3)]
    stepped, resumed = (Propagator("flow", frames[0][..., 0], frames[0][..., 1:]) for _ in range(2))
    for lab in frames[1:]:
        pending, skipped = stepped.step(lab[..., 0]), resumed.carried_only(lab[..., 0])
        step = pending.colour
        np.testing.assert_array_equal(skipped.carried, step.carried)
        assert skipped.colour is None
        order = np.argsort(step.carried, axis=None)  # the written matte is a monotone map of the carried value
        assert np.all(np.diff(step.confidence.ravel()[order]) >= 0)
        stepped.accept(pending, step.ab)
        resumed.accept(skipped, step.ab)
