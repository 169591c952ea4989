"""The next frame's networks, computed while this frame is finished at the plate's resolution.

A one-way run spends each frame in two halves: the step at the working size (DIS flow, F_s, F_f) and the work at
the plate's size (upsampling, colour out, the carried state: numpy and OpenCV on the main thread, while the writer
compresses the frame before). What frame k+1's step needs and no colour changes — DIS flow back to frame k (and,
for key-direct, to the key) and F_s's features and key match, made from luminance alone — is computed on one
helper thread during frame k's second half, into the Propagator's stores (the same interface a shot cache gives:
cache.py's FlowEntries and NetworkEntries, held here in memory), where its step finds them bit for bit as it
would have computed them:

    main:    step(k) | prepare(k+1), ahead.start(k, k+1) | to_full(k), finish(k), carried state(k) | wait, step(k+1)
    helper:                                               | DIS(k+1 -> k), F_s(k+1)                |

Only from a source that reads ahead (overlap.py's ``PrefetchingSource``: EXR sequences, the CLI and the farm), whose
frame k+1 is read before frame k is out anyway; every other source (the server's, a DCC's) reads frame k+1 after
frame k is out, as a run without a look-ahead does. An error preparing frame k+1 early (a bad plate) is raised when
the run reaches it, after frame k is written (``ShotRun.prepared_early``). Off where a stage would change what the
step of k+1 sees while it runs: F_s's memory of the run's own output (``memory_every``) changes the key state in
``accept``; and with a shot cache (its own stores).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from colorprop.engine.flow import flow_step, make_dis
from colorprop.engine.propagate import Propagator, gray_tensor
from colorprop.shot.cache import FlowEntries, NetworkEntries

KEEP_ENTRIES = 16  # a frame puts at most 5 (two flows, features, match); the older ones have been used


class MemoryEntries:
    """``ShotCache.get`` / ``put`` of a few entries, in memory (the newest ``KEEP_ENTRIES``), for any thread."""

    def __init__(self):
        self._entries: OrderedDict[tuple[str, str], dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get((kind, key))
        return None if entry is None else dict(entry)

    def put(self, kind: str, key: str, **arrays: np.ndarray) -> None:
        with self._lock:
            self._entries[(kind, key)] = arrays
            self._entries.move_to_end((kind, key))
            while len(self._entries) > KEEP_ENTRIES:
                self._entries.popitem(last=False)


class LookAhead:
    """One helper thread computing frame k+1's flows and F_s match during frame k's plate-size work; ``stores``
    go to the Propagator (``Propagator(flows=..., features=...)``); ``close`` when the shot ends."""

    def __init__(self):
        entries = MemoryEntries()
        self.stores = {"flows": FlowEntries(entries, "ahead"), "features": NetworkEntries(entries, "ahead")}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colorprop-ahead")
        self._dis = None  # the helper's own DIS (an OpenCV algorithm object is not shared between threads)
        self._pending: Future | None = None

    @staticmethod
    def applies(method: str, models, source, cache) -> bool:
        """Whether a run's steps can be made ahead: ``full`` without F_s memory, or ``flow``; from a ``source`` that
        reads ahead (``reads_ahead``: frame k+1 may be read before frame k is out); not with a shot cache."""
        if cache is not None or not getattr(source, "reads_ahead", False):
            return False
        return method == "flow" or (method == "full" and models is not None and not models.fusion.cfg.memory_every)

    def start(self, propagator: Propagator, L: np.ndarray, L_next: np.ndarray | None) -> None:
        """Begin computing what ``propagator.step(L_next)`` will need, the run being at ``L`` (HxW, working size)
        by then; the propagator's stores must be ``stores``. ``L_next`` None: nothing (the next frame failed)."""
        self.wait()
        if L_next is None:
            return
        self._pending = self._pool.submit(self._compute, propagator, L, L_next)

    def wait(self) -> None:
        """Until the work begun is done (its error raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        self._pool.shutdown(wait=True)

    def _compute(self, propagator: Propagator, L: np.ndarray, L_next: np.ndarray) -> None:
        if self._dis is None:
            self._dis = make_dis()
        flow_step(self._dis, L, None, L_next, propagator.flows)
        if propagator.method != "full":
            return
        models = propagator.models
        if models.fusion.cfg.direct:
            flow_step(self._dis, propagator.key_lab[0], None, L_next, propagator.flows)
        with torch.inference_mode(), models.autocast():
            propagator.key_match(gray_tensor(L_next, propagator.device), L_next)
