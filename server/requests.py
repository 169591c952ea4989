"""Checks of the request fields a client sends (job ids, in-band keys, shared-path plans): each
bad field is a ``ProtocolError`` naming it."""

from __future__ import annotations

import re

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from .config import ServerConfig
from .paths import AllowedRoots, PathRefused
from .session import Session

_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def job_id(msg: P.Message) -> str:
    job = msg.get("job")
    if not isinstance(job, str) or not _JOB_ID.match(job):
        raise ProtocolError(P.E_BAD_INPUT, "job must be 1-64 characters of [A-Za-z0-9_.-]", "job")
    return job


def inband_keys(msg: P.Message, s: Session, colorspace: str | None, config: ServerConfig) -> dict:
    from colorprop.shot.pipeline import KeyImage

    key_frames = msg.get("keys")
    if not isinstance(key_frames, list) or not key_frames or any(type(k) is not int for k in key_frames):
        raise ProtocolError(P.E_BAD_INPUT, "keys must be a non-empty list of frame numbers", "keys")
    if set(msg.arrays) != {f"key{k}" for k in key_frames}:
        raise ProtocolError(P.E_BAD_INPUT, "one buffer 'key<frame>' per key frame is needed", "buffers")
    key_cs = msg.get("key_colorspaces") or {}
    if not isinstance(key_cs, dict) or any(v is not None and not isinstance(v, str) for v in key_cs.values()):
        raise ProtocolError(P.E_BAD_INPUT, "key_colorspaces must map frames to colour space names", "key_colorspaces")
    keys = {}
    for k in key_frames:
        if k not in s.frame_set:
            raise ProtocolError(P.E_BAD_INPUT, f"key frame {k} is not among the shot's frames", "keys")
        arr = msg.arrays[f"key{k}"]
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ProtocolError(P.E_PIXELS, f"key {k}: must be HxWx3, got {list(arr.shape)}", "shape")
        if arr.shape[0] * arr.shape[1] > config.max_frame_pixels:
            raise ProtocolError(P.E_TOO_LARGE, f"key {k}: {arr.shape[1]}x{arr.shape[0]} is above the "
                                f"{config.max_frame_pixels}-pixel limit", "shape")
        if s.shape is None:
            s.shape = tuple(arr.shape[:2])
        elif tuple(arr.shape[:2]) != s.shape:
            raise ProtocolError(P.E_PIXELS, f"key {k}: size differs from the other keys", "shape")
        try:
            P.check_finite(arr, f"key {k}")
        except ProtocolError as exc:
            exc.field = "keys"
            raise
        keys[k] = KeyImage(np.array(arr, dtype=np.float32), key_cs.get(str(k), colorspace), f"key {k}")
    return keys


def paths_plan(msg: P.Message, frames: list[int], roots: AllowedRoots) -> dict:
    """The checks that cost nothing (socket thread): field types and bounds, the patterns'
    folders and the keys inside the roots. Per-frame checks run in the job thread."""
    from colorprop.errors import ColorpropError
    from colorprop.io.sequence import FramePattern

    if not roots:
        raise ProtocolError(P.E_PATH, "shared-path mode is off on this server (no allowed roots)", "mode")
    inp, out, keys = msg.get("input"), msg.get("output"), msg.get("keys")
    for name, v in (("input", inp), ("output", out)):
        if not isinstance(v, str) or not v or len(v) > P.MAX_PATH_CHARS:
            raise ProtocolError(P.E_BAD_INPUT, f"{name} must be a frame pattern of 1..{P.MAX_PATH_CHARS} "
                                "characters", name)
    if not isinstance(keys, dict) or not 0 < len(keys) <= P.MAX_KEYS:
        raise ProtocolError(P.E_BAD_INPUT, f"keys must map 1..{P.MAX_KEYS} frame numbers to EXR paths", "keys")
    try:
        key_paths = {int(k): v for k, v in keys.items()
                     if isinstance(v, str) and len(v) <= P.MAX_PATH_CHARS and str(int(k)) == k}
    except ValueError:
        key_paths = {}
    if len(key_paths) != len(keys):
        raise ProtocolError(P.E_BAD_INPUT, "keys must map frame numbers to EXR paths", "keys")
    try:
        in_pat, out_pat = FramePattern(inp), FramePattern(out)
    except ColorpropError as exc:
        raise ProtocolError(P.E_BAD_INPUT, str(exc), "input/output") from None
    for name, pattern in (("input", in_pat), ("output", out_pat)):
        if pattern.padding > P.MAX_FRAME_PADDING:
            raise ProtocolError(P.E_BAD_INPUT, f"{name}: a frame token of {pattern.padding} digits; at most "
                                f"{P.MAX_FRAME_PADDING}", name)
    try:
        for pattern in (in_pat, out_pat):
            roots.check(pattern.pattern)
            roots.check(pattern.path(frames[0]).parent)
        for path in key_paths.values():
            roots.check_file(path)
    except PathRefused as exc:
        raise ProtocolError(P.E_PATH, str(exc), "path") from None
    return {"input": in_pat.pattern, "output": out_pat.pattern, "keys": key_paths}
