"""``StageClock``: wall seconds per stage of a step (``colorprop bench``; ``Propagator.clock``)."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch


class StageClock:
    """Wall seconds per stage name, summed over calls (``colorprop bench``). CUDA work is waited for
    at both ends of a stage, so a stage's time is its own, not the queue's."""

    def __init__(self, device: torch.device | None = None):
        self.seconds: dict[str, float] = {}
        self._cuda = device is not None and device.type == "cuda"

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
