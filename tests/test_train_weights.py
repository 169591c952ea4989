"""Training (smoke mode, real code path) and the weights manifest: sha256-checked, strict loading."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from colorprop.engine import weights
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import WeightsError
from colorprop.engine.models import load_models
from colorprop.engine.nets.fusion_net import FusionConfig
from colorprop.engine.step import DIRECT_CHANNELS
from colorprop.training.config import SMOKE, TrainConfig
from colorprop.training.train import train


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    train(replace(TrainConfig(), **SMOKE), out / "run", out / "weights", device="cpu")
    return out


def test_smoke_training_writes_a_loadable_manifest(smoke_run):
    folder = smoke_run / "weights"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("local", "fusion"):
        entry = manifest["networks"][name]
        assert entry["sha256"] == weights.sha256_file(folder / entry["file"])
    assert manifest["training"]["config"]["smoke"] is True
    assert manifest["code_revision"]
    models = load_models(folder, device="cpu")
    assert models.fusion.cfg.width == manifest["networks"]["fusion"]["config"]["width"]
    log = [json.loads(line) for line in (smoke_run / "run" / "log.jsonl").read_text().splitlines()]
    stages = {r["stage"] for r in log}
    assert stages == {"local", "fusion"}
    assert all(np.isfinite(r.get("loss", r.get("l1"))) for r in log)


def test_training_resumes_from_its_checkpoints(smoke_run, tmp_path):
    """A resumed run with nothing left to do reproduces the same weights from its checkpoints alone: the
    precomputed data of a finished run (a committed run folder holds none) is not made again."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run / "run", run)
    packed = sorted(p.name for p in run.glob("*.npz"))
    assert packed == ["fusion_inputs.npz", "local_pairs.npz"]
    for name in packed:
        (run / name).unlink()
    saved = json.loads((run / "config.json").read_text())
    del saved["train_lists"]  # a folder written before the field existed: its run had the default
    (run / "config.json").write_text(json.dumps(saved))
    train(replace(TrainConfig(), **SMOKE), run, tmp_path / "w2", device="cpu", resume=True, cache_dir=tmp_path / "no")
    assert not list(run.glob("*.npz")) and not (tmp_path / "no").exists()
    for name in ("local", "fusion"):
        a = torch.load(smoke_run / "weights" / f"{name}.pt", weights_only=True)
        b = torch.load(tmp_path / "w2" / f"{name}.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    other = replace(TrainConfig(), **SMOKE, train_lists=("train", "train_generated"))
    with pytest.raises(SystemExit, match="another config"):
        train(other, run, tmp_path / "w3", device="cpu", resume=True)


@pytest.mark.parametrize("pause_after, stage", [(5, "local"), (14, "fusion")])
def test_training_paused_mid_stage_reproduces_an_uninterrupted_run(smoke_run, tmp_path, pause_after, stage):
    """A run stopped in the middle of a stage and resumed gives the uninterrupted run's weights: the batch of
    step k depends on (seed, k) alone, and optimiser and schedule resume from the checkpoint."""
    cfg = replace(TrainConfig(), **SMOKE)
    inside = {
        "local": 0 < pause_after < cfg.local_steps,  # the pause falls strictly inside the stage it names
        "fusion": cfg.local_steps < pause_after < cfg.local_steps + cfg.fusion_steps,
    }
    assert inside[stage], (pause_after, stage, cfg.local_steps, cfg.fusion_steps)
    run = tmp_path / "run"
    assert train(cfg, run, tmp_path / "w", device="cpu", max_steps=pause_after) is None
    assert not (tmp_path / "w" / "manifest.json").exists()
    assert train(cfg, run, tmp_path / "w", device="cpu", resume=True) is not None
    for name in ("local", "fusion"):
        a = torch.load(smoke_run / "weights" / f"{name}.pt", weights_only=True)
        b = torch.load(tmp_path / "w" / f"{name}.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def error_head_config() -> TrainConfig:
    """A fusion-only smoke run: F_w from the shipped weights, F_f with the key-direct candidate and the error head."""
    fusion = FusionConfig(width=8, candidates=("chain", "key", "direct"), head="error")
    return replace(TrainConfig(), **SMOKE, local_from="shipped", fusion=fusion.to_dict())


@pytest.fixture(scope="module")
def error_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_error")
    train(error_head_config(), out / "run", out / "weights", device="cpu")
    return out


def test_fusion_only_run_reuses_the_shipped_f_w_and_trains_the_error_head(error_run):
    folder = error_run / "weights"
    shipped = weights.read_manifest()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["networks"]["local"]["sha256"] == shipped.network("local").sha256  # stage 1 skipped
    assert manifest["training"]["config"]["local_from"] == "shipped"
    models = load_models(folder, device="cpu")
    assert models.fusion.cfg.head == "error" and models.fusion.cfg.candidates == ("chain", "key", "direct")
    log = [json.loads(line) for line in (error_run / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"fusion"} and len(log) == SMOKE["fusion_steps"]
    assert all(np.isfinite(r["error_fit"]) and 0.0 <= r["direct_share"] <= 1.0 for r in log)
    inputs = np.load(error_run / "run" / "fusion_inputs.npz")["runs"]
    assert inputs.shape[2] == DIRECT_CHANNELS  # the runs are packed with key-direct
    # the trained F_f colours through the Propagator; its matte is the chosen candidate's confidence in [0, 1]
    from colorprop.engine.propagate import Propagator

    frames = load_example_labs()
    propagator = Propagator("full", *frames[0], models)
    step = propagator.step(frames[1][0]).colour
    assert step.ab.shape == frames[1][1].shape and np.isfinite(step.ab).all()
    assert 0.0 <= step.confidence.min() and step.confidence.max() <= 1.0


def test_fusion_only_run_paused_mid_stage_reproduces_an_uninterrupted_run(error_run, tmp_path):
    cfg = error_head_config()
    run = tmp_path / "run"
    assert train(cfg, run, tmp_path / "w", device="cpu", max_steps=cfg.fusion_steps // 2) is None
    assert train(cfg, run, tmp_path / "w", device="cpu", resume=True) is not None
    a = torch.load(error_run / "weights" / "fusion.pt", weights_only=True)
    b = torch.load(tmp_path / "w" / "fusion.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_fine_tuning_run_starts_from_the_f_f_it_names_and_refuses_another_config(error_run, tmp_path):
    source = tmp_path / "start"
    shutil.copytree(error_run / "weights", source)
    cfg = replace(error_head_config(), fusion_from=str(source), fusion_lr=0.0, fusion_outcome_weight=10.0)
    train(cfg, tmp_path / "run", tmp_path / "w", device="cpu")
    a = torch.load(source / "fusion.pt", weights_only=True)
    b = torch.load(tmp_path / "w" / "fusion.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # learning rate 0: the F_f it started from, unchanged
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == SMOKE["fusion_steps"] and all(np.isfinite(r["l1"]) for r in log)
    other = replace(cfg, fusion={**cfg.fusion, "width": 12})
    with pytest.raises(SystemExit, match="F_f config differs"):
        train(other, tmp_path / "run2", tmp_path / "w2", device="cpu")
    # finished, the run gives its weights back from its folder alone: neither the F_f it started from nor its
    # packed runs are needed again
    (tmp_path / "run" / "fusion_inputs.npz").unlink()
    shutil.rmtree(source)
    train(cfg, tmp_path / "run", tmp_path / "w3", device="cpu", resume=True)
    c = torch.load(tmp_path / "w3" / "fusion.pt", weights_only=True)
    assert all(torch.equal(b[k], c[k]) for k in b) and not (tmp_path / "run" / "fusion_inputs.npz").exists()


def test_a_run_from_several_f_f_starts_from_their_mean_and_with_no_steps_writes_it(error_run, tmp_path):
    # a uniform soup: runs fine-tuned from one start, averaged weight by weight
    first = error_run / "weights"
    second = tmp_path / "second"
    shutil.copytree(first, second)
    a = torch.load(first / "fusion.pt", weights_only=True)
    shifted = {k: v + 0.5 if v.is_floating_point() else v for k, v in a.items()}
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["networks"]["fusion"] = weights.write_network(
        second, "fusion", shifted, manifest["networks"]["fusion"]["config"]
    )
    weights.write_manifest(second, manifest)
    cfg = replace(error_head_config(), fusion_from=[str(first), str(second)], fusion_steps=0)
    train(cfg, tmp_path / "run", tmp_path / "w", device="cpu")
    soup = torch.load(tmp_path / "w" / "fusion.pt", weights_only=True)
    assert soup.keys() == a.keys()
    assert all(torch.allclose(soup[k], a[k] + 0.25) for k in a if a[k].is_floating_point())
    assert not (tmp_path / "run" / "fusion_inputs.npz").exists()  # nothing trained: no runs packed
    load_models(tmp_path / "w", device="cpu")  # a weights folder like any other


def test_a_run_whose_f_w_config_differs_from_the_weights_it_reuses_is_refused(tmp_path):
    cfg = replace(error_head_config(), local={**TrainConfig().local, "kernel_size": 7})
    with pytest.raises(SystemExit, match="F_w config differs"):
        train(cfg, tmp_path / "run", tmp_path / "w", device="cpu")


def load_example_labs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(L, ab) of the example shot's key and second plate at 160 x 90."""
    from colorprop.colour import convert
    from colorprop.data.example import example_shot_dir
    from colorprop.engine.propagate import resize_hw
    from colorprop.io.exr import read_exr

    shot = example_shot_dir()
    labs = []
    for path in (shot / "key.0001.exr", shot / "plate.0002.exr"):
        lab = convert.linear_rec709_to_lab(resize_hw(read_exr(path).rgb(), 160, 90))
        labs.append((np.ascontiguousarray(lab[..., 0]), np.ascontiguousarray(lab[..., 1:])))
    return labs


def test_corrupt_weights_are_refused(smoke_run, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(smoke_run / "weights", folder)
    data = bytearray((folder / "fusion.pt").read_bytes())
    data[-10] ^= 0xFF
    (folder / "fusion.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_models(folder, device="cpu")


def test_weights_for_another_architecture_are_refused(smoke_run, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(smoke_run / "weights", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["networks"]["fusion"]["config"]["width"] = 7
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="do not fit"):
        load_models(folder, device="cpu")


def test_engine_without_weights_offers_flow_only(tmp_path):
    engine = Engine.load(tmp_path / "nothing")
    assert engine.methods() == ["flow"]
    with pytest.raises(WeightsError, match="colorprop train"):
        engine.check_method("full")


def test_shipped_weights_load_and_carry_their_eval_table():
    manifest = weights.read_manifest()
    models = load_models(device="cpu")
    assert models.manifest.folder == manifest.folder
    table = manifest.data["metrics"]["mean_lab_psnr"]
    assert {"flow", "full"} <= set(table)
    engine = Engine(models)
    assert ShotOptions().method == "full" and "full" in engine.methods()


def test_bf16_runs_the_networks_in_bfloat16_and_stays_close_to_fp32():
    """``precision="bf16"``: the convolutions run under bfloat16 autocast (the F_w kernels and the output
    come back in float32), matching stays float32, and the colour stays within a fraction of a Lab unit."""
    from colorprop.engine.propagate import Propagator

    rng = np.random.default_rng(1)
    import cv2

    L = cv2.GaussianBlur(rng.random((64, 96)).astype(np.float32), (0, 0), 2) * 80 + 10
    ab = cv2.GaussianBlur(rng.random((64, 96, 2)).astype(np.float32), (0, 0), 2) * 40 - 20
    out = {}
    for precision in ("fp32", "bf16"):
        models = load_models(device="cpu", precision=precision)
        conv = models.fusion.body[0]
        with torch.inference_mode(), models.autocast():
            y = conv(torch.zeros(1, conv.in_channels, 8, 8))
        assert y.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        step = Propagator("full", L, ab, models).step(np.roll(L, 2, axis=1)).colour
        assert step.ab.dtype == np.float32
        out[precision] = step.ab
    assert float(np.abs(out["bf16"] - out["fp32"]).mean()) < 0.5
    with pytest.raises(ValueError, match="precision"):
        load_models(device="cpu", precision="fp16")
    from colorprop.engine.models import resolve_precision

    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
