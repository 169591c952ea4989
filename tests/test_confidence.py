"""The confidence matte predicts error, its measures, and key suggestions. Method flow."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from colorprop.cli.main import main as cli_main
from colorprop.colour import convert
from colorprop.data.clips import Clip
from colorprop.engine.confidence import FLOW_CALIBRATION, calibrated, carry_confidence, flatness, meet_confidence
from colorprop.engine.engine import Engine
from colorprop.measure.evaluate import colorize_clip_with_confidence, evaluate
from colorprop.measure.matte import CalibrationTable, error_captured, error_captured_max, fit_monotone, matte_measures
from colorprop.shot.suggest import suggest_frames
from shotkit import H, W, background, with_object, write_plate

GRAY = np.float32([0.35, 0.35, 0.35])  # linear; an occluder darker and flatter than the background


def textured_background(n: int, seed: int = 3) -> list[np.ndarray]:
    """n identical HxWx3 linear frames of a colourful texture with luminance detail at several scales."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 1.5)
    coarse = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 6)
    tex = 0.5 * (fine - fine.mean()) / fine.std() * 0.08 + (coarse - coarse.min()) / np.ptp(coarse) * 0.6 + 0.2
    return [np.clip(tex, 0.05, 1.0).astype(np.float32) for _ in range(n)]


def disocclusion_shot(n: int = 12) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A static textured background; a flat gray box covers x 24..52 until frame 5, then slides right 6 px a
    frame. Returns the frames, the mask of the background the box uncovers (hidden at the key, seen at the
    end) and the mask of background farther than 6 px from anywhere the box ever was (the flow of a moving
    edge bleeds into its neighbours, and so does the colour)."""
    frames = textured_background(n)
    x0 = {i: 24 + max(0, i - 4) * 6 for i in range(n)}
    covered = np.zeros((n, H, W), bool)
    for i, f in enumerate(frames):
        covered[i, 16:48, x0[i] : x0[i] + 28] = True
        f[covered[i]] = GRAY
    uncovered = covered[0] & ~covered[-1]
    never = cv2.dilate(covered.any(axis=0).astype(np.uint8), np.ones((13, 13), np.uint8)) == 0
    return frames, uncovered, never


# ---------------------------------------------------------------- the measure, on cases with a known answer


def test_error_captured_known_answers():
    rng = np.random.default_rng(0)
    err2 = rng.gamma(0.5, 10.0, size=(40, 50))
    assert error_captured(np.full_like(err2, 0.7), err2) == pytest.approx(0.2, abs=1e-12)  # knows nothing
    best = error_captured(-err2, err2)
    assert best == pytest.approx(error_captured_max(err2)) and best > 0.5
    assert error_captured(err2, err2) < 0.05  # exactly the wrong way round
    noisy = error_captured(-err2 + rng.normal(0, 3.0, err2.shape), err2)
    assert 0.2 < noisy < best
    # Ties share the cut pro rata: half the pixels at 0 holding all the error -> 20 % of pixels get 40 %.
    conf = np.r_[np.zeros(50), np.ones(50)]
    assert error_captured(conf, np.r_[np.ones(50), np.zeros(50)]) == pytest.approx(0.4)
    assert np.isnan(error_captured(conf, np.zeros(100)))


def test_matte_measures_and_calibration_table():
    rng = np.random.default_rng(1)
    true = np.zeros((30, 40, 3), np.float32)
    true[..., 0] = 50.0
    pred = true.copy()
    pred[:10, :, 1] = 20.0  # the top third is 20 ab units off
    conf = np.ones((30, 40), np.float32)
    conf[:10] = 0.05
    m = matte_measures([conf, conf], [pred, pred], [true, true])
    assert m["captured"] == pytest.approx(0.2 * 1200 / 400)  # the 240 lowest pixels all lie in the wrong third
    assert m["captured_max"] == pytest.approx(m["captured"])
    table = CalibrationTable.from_json(m["calibration"])
    rows = table.rows()
    assert (
        rows[0]["share"] == pytest.approx(1 / 3) and rows[0]["within"] == 0.0 and rows[0]["error"] == pytest.approx(20)
    )
    assert rows[-1]["share"] == pytest.approx(2 / 3) and rows[-1]["within"] == 1.0  # 1.0 falls in the last bin
    assert table.ece() == pytest.approx((0.05 * 400 + 0.0 * 800) / 1200)
    # A calibrated matte: each pixel right with the probability it states.
    p = rng.random(200_000)
    fair = CalibrationTable()
    fair.add(p, np.zeros_like(p), np.where(rng.random(p.size) < p, 0.0, 10.0))
    assert fair.ece() < 0.01
    sure = CalibrationTable()
    sure.add(np.ones_like(p), np.zeros_like(p), np.where(rng.random(p.size) < 0.5, 0.0, 10.0))
    assert sure.ece() == pytest.approx(0.5, abs=0.01)


def test_fit_monotone_recovers_a_known_map():
    rng = np.random.default_rng(2)
    raw = np.r_[np.zeros(20_000), rng.random(100_000)]  # a block of ties at 0, like the carried value
    truth = np.where(raw == 0, 0.4, 0.5 + 0.45 * raw)
    within = rng.random(raw.size) < truth
    knots = fit_monotone(raw, within, knots=12)
    xs, ps = map(np.asarray, zip(*knots))
    assert len(knots) <= 12 and np.all(np.diff(xs) > 0) and np.all(np.diff(ps) >= 0)
    assert xs[0] == 0.0 and xs[-1] == raw.max()
    test = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(np.interp(test, xs, ps), 0.5 + 0.45 * test, atol=0.04)
    assert np.interp(0.0, xs, ps) == pytest.approx(0.4, abs=0.02)


def test_shipped_calibration_is_a_monotone_probability():
    xs, ps = map(np.asarray, zip(*FLOW_CALIBRATION))
    assert xs[0] == 0.0 and xs[-1] == 1.0 and np.all(np.diff(xs) > 0)
    assert np.all(np.diff(ps) >= 0) and 0.0 < ps[0] and ps[-1] <= 1.0


def test_meet_confidence_falls_where_the_runs_disagree():
    ab_f = np.zeros((2, 2, 2), np.float32)
    ab_b = np.zeros((2, 2, 2), np.float32)
    ab_b[1] = 30.0  # the bottom row: the runs disagree
    conf = np.full((2, 2), 0.9, np.float32)
    ab = 0.5 * (ab_f + ab_b)  # an even blend
    meet = meet_confidence(ab, ab_f, conf, ab_b, conf)
    np.testing.assert_allclose(meet[0], 0.9, rtol=1e-6)  # agree: as sure as the surer run
    assert np.all(meet[1] < 0.01)  # the blend lies between two colours: neither run vouches for it
    meet = meet_confidence(ab_f.copy(), ab_f, conf, ab_b, np.zeros_like(conf))  # the blend kept the sure run
    np.testing.assert_allclose(meet, 0.9, rtol=1e-6)


# ---------------------------------------------------------------- the matte on a shot


def test_flat_luminance_keeps_confidence_unless_the_luminance_changes():
    """A step DIS cannot vouch for (consistency 0) keeps its confidence on textureless luminance that matches
    the previous frame, loses it on texture, and loses it on a flat object whose luminance is new."""
    rng = np.random.default_rng(4)
    textured = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32), (0, 0), 1.0) * 60 + 20
    L = textured.copy()
    L[:, : W // 2] = 50.0  # the left half is a plain backdrop
    assert flatness(L)[:, : W // 2 - 14].min() > 0.98  # 3.5 sigma from the texture
    assert flatness(L)[:, W // 2 + 14 :].max() < 0.05
    ones, zero_flow = np.ones((H, W), np.float32), np.zeros((H, W, 2), np.float32)
    lost_check = np.zeros((H, W), np.float32)
    carried = carry_confidence(ones, L, L, zero_flow, lost_check)
    assert carried[:, : W // 2 - 14].min() > 0.85 and carried[:, W // 2 + 14 :].max() < 0.1
    entering = L.copy()
    entering[20:40, 10:30] = 80.0  # a flat object with a new luminance
    carried = carry_confidence(ones, L, entering, zero_flow, lost_check)
    assert carried[24:36, 14:26].max() < 0.01
    np.testing.assert_array_equal(carry_confidence(ones, L, L, zero_flow, lost_check, flat_trust=0.0), 0.0)


def test_matte_is_low_where_background_is_uncovered_and_high_on_static_texture():
    frames, uncovered, never = disocclusion_shot()
    true = [convert.linear_rec709_to_lab(f) for f in frames]
    pred, conf = colorize_clip_with_confidence(Engine(None), frames, [0], "flow")
    last = conf[-1]
    assert last[uncovered].mean() < 0.55  # more likely wrong than right where the key never saw the background
    assert np.percentile(last[never], 5) > 0.9  # static texture stays high, its edges included
    gx = cv2.Sobel(true[-1][..., 0], cv2.CV_32F, 1, 0)
    edges = never & (np.abs(gx) > np.percentile(np.abs(gx[never]), 90))
    assert last[edges].min() > 0.9
    err = np.linalg.norm(pred[-1] - true[-1], axis=-1)
    assert err[uncovered].mean() > 5 * err[never].mean()  # the uncovered colour really is wrong
    scored = range(6, len(frames))
    m = matte_measures([conf[i] for i in scored], [pred[i] for i in scored], [true[i] for i in scored])
    assert m["captured"] > 0.6


def test_matte_is_calibrated_by_the_shipped_map():
    carried = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    p = calibrated(carried)
    assert np.all(np.diff(p) >= 0) and p[0, -1] == pytest.approx(FLOW_CALIBRATION[-1][1])


# ---------------------------------------------------------------- suggestions


def test_suggest_frames_ranks_by_expected_error_and_spreads():
    expected = {f: 0.01 * f for f in range(1, 41)}  # worse and worse away from the key at 1
    summary = {f: {"mean": 1.0 - e, "low_fraction": 0.0} for f, e in expected.items()}
    chosen = [s.frame for s in suggest_frames(summary, [1], 3)]
    assert chosen[0] == 40
    assert min(abs(a - b) for i, a in enumerate(chosen) for b in chosen[i + 1 :]) >= 4  # spread, not 40, 39, 38
    # The frame beside a key is suggested only when it really is the worst.
    summary[2]["mean"] = 0.0
    assert suggest_frames(summary, [1], 1)[0].frame == 2
    summary[2]["mean"] = 1.0 - 0.39  # second worst, beside the key: the next suggestion goes elsewhere
    assert 2 not in [s.frame for s in suggest_frames(summary, [1], 2)]
    assert all(s.frame != 1 for s in suggest_frames(summary, [1], 40))  # never a key


def test_suggest_keys_returns_the_known_bad_frame(tmp_path, capsys):
    """Keys at 1 and 12; an object seen by neither key flashes into frame 6 only: the one frame both runs
    get wrong."""
    n = 12
    frames, _ = with_object(background(n), {5: (36, 16, 64, 44)})
    plate, key_args = write_plate(tmp_path, frames, [1, n])
    assert (
        cli_main(
            [
                "suggest-keys",
                "--input",
                plate,
                *key_args,
                "--frames",
                f"1-{n}",
                "--method",
                "flow",
                "--count",
                "3",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["suggestions"][0]["frame"] == 6
    assert [s["frame"] for s in report["suggestions"]][1:] != [5, 7]  # the next ones are spread, not its neighbours
    by_frame = {f["frame"]: f["expected_error"] for f in report["frames"]}
    assert by_frame[6] == max(by_frame.values())


def test_suggest_keys_never_answers_the_frame_after_the_key(tmp_path, capsys):
    n = 12
    frames, _ = with_object(background(n), {i: (40, 18, 64, 42) for i in range(6, n)})  # appears at frame 7
    plate, key_args = write_plate(tmp_path, frames, [1])
    assert (
        cli_main(
            [
                "suggest-keys",
                "--input",
                plate,
                *key_args,
                "--frames",
                f"1-{n}",
                "--method",
                "flow",
                "--count",
                "2",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    first, second = (s["frame"] for s in report["suggestions"])
    assert 7 <= first <= n  # a frame where the object's colour is invented
    assert second != 2 and abs(second - first) >= 2
    assert cli_main(["suggest-keys", "--input", plate, *key_args, "--frames", f"1-{n}", "--method", "flow"]) == 0
    assert "suggested key frames" in capsys.readouterr().out


# ---------------------------------------------------------------- colorprop eval


def test_eval_reports_the_matte_and_the_suggestion_check():
    frames, uncovered, _ = disocclusion_shot(14)
    entering, _ = with_object(
        background(14), {i: (W - 5 * (i - 3), 20, W - 5 * (i - 3) + 24, 44) for i in range(4, 14)}
    )
    clips = [Clip("uncover", frames), Clip("entering", entering)]
    results = evaluate(Engine(None), clips, ["flow"], ns=(5,), log=lambda s: None, suggest=True)
    conf = results["confidence"]["flow"]
    assert set(conf["per_clip"]) == {"uncover", "entering"}
    assert min(conf["per_clip"].values()) > 0.5 and conf["mean"] < conf["ceiling"]
    assert sum(r["share"] for r in conf["calibration"]) == pytest.approx(1.0)
    check = results["clips"]["uncover"]["methods"]["flow"]["suggest"]
    assert check["hit"] and check["top"] in check["worst5"] and check["midpoint"] == 7
    assert check["gain_top_db"] > 0 and set(results["suggest"]["flow"]) >= {"hit_rate", "advantage_db"}
