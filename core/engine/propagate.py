"""One direction of propagation: colour carried from a key frame through a run of frames.

A ``Propagator`` owns the per-run state (the previous frame's L and carried colour, the key's features) and
nothing else, so memory is flat in shot length. Its boundary is numpy at the working resolution, and its state
changes only in ``accept``:

    pending = step(L  HxW float32, CIE L 0..100)    nothing changes; pending.colour is
                                                     Step(ab HxWx2 float32 Lab units, confidence HxW, carried HxW)
    accept(pending, ab written HxWx2)                the run moves on to this frame

Methods:
    flow    DIS optical flow warps the previous frame's ab (classical baseline, no weights)
    local   F_w: kernels predicted from (previous, current) gray carry the previous ab (after DIS pre-alignment
            when the trained F_w was trained that way)
    global  F_s: the key's colour copied at coarse-to-fine feature matches
    full    F_f chooses per pixel between the flow-carried colour and F_s's key match (engine/step.py);
            F_w is not used: trained on flow-aligned frames it learns identity kernels (docs/TRAINING.md).
            When the fusion config asks for it, also the key-direct candidate: the key's colour along DIS
            flow from the frame straight to the key (``key_direct``)
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import torch

from colorprop.engine.clock import StageClock
from colorprop.engine.confidence import carry_confidence, photometric_similarity, written_confidence
from colorprop.engine.step import (
    AB_SCALE,
    CANDIDATE_CHANNELS,
    DIRECT_CHANNELS,
    Candidates,
    Carried,
    advance,
    carry_on,
    pack_candidates,
    packed_slice,
    propagate_step,
    start,
)
from colorprop.engine.flow import FlowStep, flow_step, make_dis, warp_backward
from colorprop.engine.nets.features import Features
from colorprop.engine.nets.matching import Match

if TYPE_CHECKING:
    from colorprop.engine.models import Models

METHODS = ("full", "local", "global", "flow")
LEARNED_METHODS = ("full", "local", "global")

# F_f's chain cue is the flow chain's confidence without the flatness trust the written matte uses: the
# shipped F_f was trained on that cue (changing it changes F_f's input; retrain before changing it).
CHAIN_FLAT_TRUST = 0.0
L_SCALE = 100.0  # network gray = L / 100
L_NET_MAX = 1.2  # HDR luminance is shown to the networks clipped here; the true L is kept outside


class Step(NamedTuple):
    ab: np.ndarray  # HxWx2 float32, Lab units
    confidence: np.ndarray  # HxW float32 in [0, 1]: the matte that is written (confidence.written_confidence)
    carried: np.ndarray  # HxW float32 in [0, 1]: carried on to the next frame; weighs runs in a blend


class PendingFrame(NamedTuple):
    """One frame as ``Propagator.step`` (or ``carried_only``) computed it, for ``Propagator.accept`` to carry on."""

    L: np.ndarray  # HxW, this frame's luminance at the working size
    colour: Step | None  # the result; None from ``carried_only`` (a frame already written)
    flow: np.ndarray | None  # HxWx2 pixels, backward flow this frame -> the previous one (None: ``global``)
    chain: np.ndarray  # HxW, the flow chain's confidence here (F_f's cue, carried to the next frame)
    carried: np.ndarray  # HxW, the carried confidence (``colour.carried`` when there is a colour)
    advanced: Carried | None  # ``full``: the carried colour and age moved onto this frame (``step.advance``)


def gray_tensor(L: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxW CIE L (0..100) -> 1x1xHxW network gray, clipped for the networks only."""
    return torch.from_numpy(np.clip(L / L_SCALE, 0.0, L_NET_MAX).astype(np.float32))[None, None].to(device)


def ab_tensor(ab: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWx2 Lab ab -> 1x2xHxW network chroma."""
    return torch.from_numpy(np.ascontiguousarray(ab.transpose(2, 0, 1) / AB_SCALE, dtype=np.float32))[None].to(device)


def ab_numpy(ab: torch.Tensor) -> np.ndarray:
    """1x2xHxW network chroma -> HxWx2 Lab ab."""
    return (ab[0].permute(1, 2, 0).float().cpu().numpy() * AB_SCALE).astype(np.float32)


def as_float32(outputs: tuple) -> tuple:
    """A network's NamedTuple output with every tensor in float32 (after a bfloat16 autocast)."""
    return type(outputs)(*(t.float() for t in outputs))


def flow_tensor(flow: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWx2 flow (pixels) -> 1x2xHxW."""
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32))[None].to(device)


def map_numpy(x: torch.Tensor) -> np.ndarray:
    """1x1xHxW -> HxW."""
    return x[0, 0].float().cpu().numpy().astype(np.float32)


class Propagator:
    """Carries the key's colour forward (or backward) one frame per ``step``.

    ``clock``: a StageClock to time dis_flow / F_w / F_s / F_f (bench), or None."""

    def __init__(
        self,
        method: str,
        key_L: np.ndarray,
        key_ab: np.ndarray,
        models: "Models | None" = None,
        change_only: bool = False,
        other_keys: list[tuple[np.ndarray, np.ndarray]] = (),
        flows=None,
        features=None,
    ):
        """``change_only`` (regrade: ``key_ab`` is a change, 0 where the key left the plate alone): ``full``
        puts no change where the tracked change (F_w's output) is exactly 0, so untouched regions stay the
        plate's own colour; measured on real footage in docs/KEYS.md. ``flows`` and ``features``: a shot
        cache's stores (shot/cache.py) of what does not depend on the key, DIS flows (``flow.flow_step``) and
        F_s's features and key match of a frame (``key_match``); taken from them bit for bit as computed, or computed
        and kept there; None: computed."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if method in LEARNED_METHODS and models is None:
            raise ValueError(f"method {method!r} needs trained models")
        self.method = method
        self.change_only = change_only
        self.flows, self.feature_store, self.key_digest = flows, features, None
        self.models = models
        self.device = models.device if models is not None else torch.device("cpu")
        self.dis = make_dis()
        self.key_lab = (key_L, key_ab)  # full's key-direct candidate warps the key itself (fusion config)
        self.prev_L = key_L
        self.prev_conf = np.ones(key_L.shape[:2], np.float32)  # confidence.py: carried, 1 at the key
        # The flow chain's own confidence, a cue for F_f: the carried one without what blends add between keys.
        self.prev_chain = self.prev_conf
        # The carried colour, one copy: full carries step.Carried (torch, with its age), the others numpy ab.
        self.carried_state = start(ab_tensor(key_ab, self.device)) if method == "full" else None
        self.prev_ab = None if method == "full" else key_ab
        self.key_state = None
        self.clock: StageClock | None = None
        if method in ("full", "global"):
            with torch.inference_mode(), models.autocast():
                states = [
                    models.global_branch.encode_key(gray_tensor(kl, self.device), ab_tensor(kab, self.device))
                    for kl, kab in [(key_L, key_ab), *other_keys]
                ]
                self.key_state = states[0] if len(states) == 1 else models.global_branch.join_keys(*states)
        # full: F_s also matches against a bounded memory of this run's own past output (fusion config
        # memory_every / memory_size; 0 = off): flat in shot length, refreshed from what was written.
        self.key_states = [self.key_state]
        self.memory: list = []
        self.frames_since_memory = 0

    def step(self, L: np.ndarray) -> PendingFrame:
        """The frame with luminance ``L`` (HxW) coloured from the state (``.colour``); the state is not changed."""
        if self.method == "flow":
            with self._stage("dis_flow"):
                flowed = self._flow(L)
            carried = self._carried(flowed, L)
            return PendingFrame(
                L, Step(flowed.ab, written_confidence(carried), carried), flowed.flow, self.prev_chain, carried, None
            )
        with torch.inference_mode():
            return self._step_learned(L)

    def carried_only(self, L: np.ndarray) -> PendingFrame:
        """For a frame that is already written (resume): ``step(L)`` without its colour and without the networks.

        ``.carried`` is exact for every method but ``global`` (whose confidence is the key match's similarity
        alone): it depends on flow only. The flow chain's cue for F_f is carried exactly too."""
        flowed = self._flow(L)
        advanced = None
        if self.carried_state is not None:
            with torch.inference_mode():
                advanced = advance(self.carried_state, flow_tensor(flowed.flow, self.device))
        return PendingFrame(L, None, flowed.flow, self._chain(flowed, L), self._carried(flowed, L), advanced)

    def accept(self, pending: PendingFrame, ab: np.ndarray, carried: np.ndarray | None = None) -> None:
        """Move the run on to ``pending``'s frame, carrying what was written there (colour HxWx2) and the
        carried confidence (HxW; default: ``pending.carried``)."""
        self.follow(pending.L, pending.chain)
        self.prev_conf = pending.carried if carried is None else np.asarray(carried, np.float32)
        if self.carried_state is None:
            self.prev_ab = ab
            return
        with torch.inference_mode():
            self.carried_state = carry_on(pending.advanced, ab_tensor(ab, self.device))
        self._remember(pending.L, ab)

    def _remember(self, L: np.ndarray, ab: np.ndarray) -> None:
        """Every ``memory_every`` frames, this written frame joins F_s's memory (the oldest one leaves)."""
        cfg = self.models.fusion.cfg
        self.frames_since_memory += 1
        if not cfg.memory_every or self.frames_since_memory < cfg.memory_every:
            return
        self.frames_since_memory = 0
        branch = self.models.global_branch
        with torch.inference_mode(), self.models.autocast():
            self.memory = [*self.memory, branch.encode_key(gray_tensor(L, self.device), ab_tensor(ab, self.device))]
            self.memory = self.memory[-cfg.memory_size :]
            self.key_state = branch.join_keys(*self.key_states, *self.memory)
            self.key_digest = None

    def _flow(self, L: np.ndarray) -> FlowStep:
        """DIS from this frame back to the previous one (and the previous colour along it, but for ``full``,
        which carries its colour in torch)."""
        return flow_step(self.dis, self.prev_L, self.prev_ab, L, self.flows)

    def _carried(self, flowed: FlowStep, L: np.ndarray) -> np.ndarray:
        return carry_confidence(self.prev_conf, self.prev_L, L, flowed.flow, flowed.consistency)

    def _chain(self, flowed: FlowStep, L: np.ndarray) -> np.ndarray:
        """The flow chain's confidence at this frame (F_f's ``chain`` cue), carried from the previous one."""
        return carry_confidence(
            self.prev_chain, self.prev_L, L, flowed.flow, flowed.consistency, flat_trust=CHAIN_FLAT_TRUST
        )

    def _stage(self, name: str):
        return self.clock(name) if self.clock is not None else contextlib.nullcontext()

    def _step_learned(self, L: np.ndarray) -> PendingFrame:
        models, dev = self.models, self.device
        gray = gray_tensor(L, dev)

        if self.method == "local":
            # DIS pre-alignment of the previous frame, then F_w's kernels fix what flow got wrong.
            with self._stage("dis_flow"):
                flowed = self._flow(L)
                prev_L_aligned = warp_backward(self.prev_L, flowed.flow)
            with self._stage("F_w"):
                with models.autocast():  # the kernels come out in float32 for the warp (docs/BENCHMARKS.md)
                    local_out = models.local(gray_tensor(prev_L_aligned, dev), gray, ab_tensor(flowed.ab, dev))
                local_out = as_float32(local_out)
                ab_local = models.local.warp(ab_tensor(flowed.ab, dev), local_out)
            carried = self._carried(flowed, L)
            return PendingFrame(
                L,
                Step(ab_numpy(ab_local), written_confidence(carried), carried),
                flowed.flow,
                self.prev_chain,
                carried,
                None,
            )

        if self.method == "global":
            with self._stage("F_s"):
                with models.autocast():
                    global_out = as_float32(models.global_branch(gray, self.key_state, self.key_match(gray, L)))
            similarity = map_numpy(global_out.similarity).clip(0, 1)  # no flow: nothing is carried
            return PendingFrame(
                L,
                Step(ab_numpy(global_out.ab), written_confidence(similarity), similarity),
                None,
                self.prev_chain,
                similarity,
                None,
            )

        candidates, flowed = self.candidates(L)
        with self._stage("F_f"):
            with models.autocast():
                out = propagate_step(models.fusion, self.carried_state, candidates)
            ab, ab_flow = ab_numpy(out.ab), ab_numpy(out.ab_flow)
        carried = self._carried(flowed, L)
        # The written matte: F_f's own estimate that this colour is within a few Lab units of the truth
        # (trained against its error, so calibrated on the training runs; docs/KEYS.md).
        confidence = map_numpy(out.confidence)
        if self.change_only:  # regrade: no change where the tracked change is exactly 0
            ab[np.all(ab_flow == 0.0, axis=-1)] = 0.0
        chain = map_numpy(candidates.chain)
        return PendingFrame(
            L, Step(ab, confidence, carried), flowed.flow, chain, carried, Carried(out.ab_flow, out.age_flow)
        )

    def candidates(self, L: np.ndarray) -> tuple[Candidates, FlowStep]:
        """``full``: what F_f chooses between for the frame with luminance ``L`` (HxW), and its cues
        (``step.Candidates``, 1 x C x h x w): DIS flow back to the previous frame, the flow chain's confidence
        and F_s's key match. Training precomputes its runs with this, too."""
        dev = self.device
        gray = gray_tensor(L, dev)
        with self._stage("dis_flow"):
            flowed = self._flow(L)
        with torch.inference_mode():
            with self._stage("F_s"):
                with self.models.autocast():
                    global_out = as_float32(self.models.global_branch(gray, self.key_state, self.key_match(gray, L)))
        chain = self._chain(flowed, L)
        photometric = photometric_similarity(L, warp_backward(self.prev_L, flowed.flow))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(dev)  # noqa: E731
        direct = ()
        if self.models.fusion.cfg.direct:
            with self._stage("dis_direct"):  # DIS from this frame straight to the key: no accumulated drift
                to_key = flow_step(self.dis, *self.key_lab, L, self.flows)
            direct = (ab_tensor(to_key.ab, dev), t(to_key.consistency))
        return Candidates(
            gray,
            flow_tensor(flowed.flow, dev),
            t(flowed.consistency),
            t(photometric),
            t(chain),
            global_out.ab,
            global_out.similarity.clamp(0.0, 1.0),
            *direct,
        ), flowed

    def key_match(self, gray: torch.Tensor, L: np.ndarray) -> Match | None:
        """F_s's match of the frame (gray, and its luminance ``L`` HxW that names it) against the key(s): made
        from luminance alone, never from a key's colour, so a shot cache keeps it (``features``, with F_s's
        features of the frame, which no key changes at all); None without one (F_s makes it itself). Called
        under the same autocast as F_s."""
        store = self.feature_store
        if store is None:
            return None
        if self.key_digest is None:
            self.key_digest = store.digest(self.key_state.features)
        match = store.get("match", L, self.device, self.key_digest)
        if match is None:
            branch = self.models.global_branch
            features = store.get("features", L, self.device)
            if features is None:
                features = branch.features(gray)
                store.put("features", L, features)
            match = branch.match(Features(*features), self.key_state)
            store.put("match", L, match, self.key_digest)
        return Match(*match)

    def follow(self, L: np.ndarray, chain: np.ndarray) -> None:
        """Move the luminance and the flow chain (HxW) on to this frame (``accept`` without colour)."""
        self.prev_L = L
        self.prev_chain = chain


def run_candidates(models: "Models", labs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """What no trained weight of F_f changes, for every frame of a run keyed at its first frame, exactly as the
    Propagator computes it at inference (``Propagator.candidates``). ``labs``: (L HxW, ab HxWx2) per frame,
    the first one the key. Returns T x C x H x W float32 (``step.pack_candidates``: the ``Candidates`` channels,
    the true ab/128, key-direct's when the fusion config has it: C = CANDIDATE_CHANNELS or DIRECT_CHANNELS);
    frame 0 holds the key's own colour, its other channels unused. Training and the choice measurements run
    the recursion on these."""
    L_key, ab_key = labs[0]
    propagator = Propagator("full", L_key, ab_key, models)
    channels = DIRECT_CHANNELS if models.fusion.cfg.direct else CANDIDATE_CHANNELS
    out = np.zeros((len(labs), channels, *L_key.shape), np.float32)
    out[0, packed_slice("ab_true")] = ab_key.transpose(2, 0, 1) / AB_SCALE
    for t, (L, ab_true) in enumerate(labs[1:], start=1):
        c, _ = propagator.candidates(L)
        out[t] = pack_candidates(c, ab_tensor(ab_true, c.gray.device))[0].cpu().numpy()
        propagator.follow(L, map_numpy(c.chain))
    return out


def key_direct(labs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The key-direct candidate of a run keyed at its first frame (``labs``: (L, ab) per frame), as
    ``Propagator.candidates`` computes it (``flow_step`` from the key): T x 3 x H x W float32, ab/128 then
    consistency (``step.DIRECT_FIELDS``' channels); frame 0 is the key itself."""
    dis = make_dis()
    L_key, ab_key = labs[0]
    out = np.ones((len(labs), 3, *L_key.shape), np.float32)
    out[0, :2] = ab_key.transpose(2, 0, 1) / AB_SCALE
    for t, (L, _) in enumerate(labs[1:], start=1):
        to_key = flow_step(dis, L_key, ab_key, L)
        out[t, :2] = to_key.ab.transpose(2, 0, 1) / AB_SCALE
        out[t, 2] = to_key.consistency
    return out


def resize_hw(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average when shrinking, bilinear when growing; HxW or HxWxC."""
    h, w = x.shape[:2]
    if (w, h) == (width, height):
        return x
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(x, (width, height), interpolation=interp)
