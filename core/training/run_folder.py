"""The folder of one training run (config.json, log.jsonl, checkpoints, precomputed data); resumable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from colorprop.training.config import TrainConfig


class TrainingPaused(Exception):
    """``max_steps`` optimiser steps were taken in this process; the run resumes from its checkpoints."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"paused in stage {stage} at step {step}")


class Run:
    """config.json, log.jsonl, <stage>.ckpt and precomputed data of one training run.

    ``max_steps``: this process takes at most that many training steps (all stages together), checkpoints
    and stops (``TrainingPaused``): a long run fits sessions that may end, and is resumed with ``resume``."""

    def __init__(self, folder: Path, cfg: TrainConfig, resume: bool, max_steps: int | None = None):
        self.steps_left = max_steps
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.json"
        if resume and config_path.exists():
            # a field added after the run started has its default there: the behaviour the run was made with
            saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **json.loads(config_path.read_text())}
            if saved != json.loads(json.dumps(asdict(cfg))):
                raise SystemExit(f"{config_path}: the run was started with another config; use a new --out")
        config_path.write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        self.resuming = resume
        self.started = time.perf_counter()
        self._log = open(folder / "log.jsonl", "a")

    def out_of_steps(self) -> bool:
        """Counts the step just taken; True once ``max_steps`` have been taken by this process."""
        return self.steps_left is not None and self.steps_left <= 0

    def log(self, stage: str, step: int, **values) -> None:
        if self.steps_left is not None:
            self.steps_left -= 1
        record = {"stage": stage, "step": step, "t": round(time.perf_counter() - self.started, 2), **values}
        self._log.write(json.dumps(record) + "\n")
        if step % 25 == 0:
            self._log.flush()
            shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
            print(f"[{stage} {step}] {shown}", file=sys.stderr, flush=True)

    def checkpoint(self, stage: str, step: int, net, opt, sched) -> None:
        tmp = self.folder / f".{stage}.ckpt.tmp"
        torch.save({"step": step, "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, tmp)
        tmp.replace(self.folder / f"{stage}.ckpt")

    def saved(self, stage: str) -> dict | None:
        """The checkpoint of ``stage`` when resuming (step, net, opt, sched), else None."""
        path = self.folder / f"{stage}.ckpt"
        if not (self.resuming and path.exists()):
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def resume(self, stage: str, net, opt, sched) -> int:
        state = self.saved(stage)
        if state is None:
            return 0
        net.load_state_dict(state["net"], strict=True)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        print(f"resuming {stage} at step {state['step']}", file=sys.stderr)
        return int(state["step"])

    def finished(self, stage: str, steps: int, net) -> bool:
        """True for a resumed run whose ``stage`` took its last step: ``net`` gets that checkpoint's weights, and
        nothing of the stage is packed, started from or trained again (a finished run's folder alone gives its
        weights back)."""
        state = self.saved(stage)
        if state is None or int(state["step"]) < steps:
            return False
        net.load_state_dict(state["net"], strict=True)
        net.eval()
        print(f"{stage} finished at step {state['step']}: weights from its checkpoint", file=sys.stderr)
        return True

    def cached(self, name: str, make) -> dict[str, np.ndarray]:
        """Precomputed arrays, kept in the run folder so a resumed run skips the work."""
        path = self.folder / f"{name}.npz"
        if self.resuming and path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        data = make()
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, **data)
        tmp.replace(path)
        return data


def git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "core"], cwd=here, capture_output=True, text=True, timeout=10
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
