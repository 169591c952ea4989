"""What every DCC plug-in (Nuke node, Blender add-on) does that is not the DCC itself.

Knob/field text (key frames, frame ranges, frame patterns, the server address: ``dcc_text``,
offered here too), the CURVE keys to connect with, the choices a server offers (methods, data modes,
quality presets), one job on the server with progress and cancel, and one line of text per error that
says what to do. The host layers only render or read
their images, write results and show what this module returns or raises.

Runs in Nuke's and Blender's Python: the standard library, numpy (1.x or 2.x) and pyzmq only; never
torch or OpenImageIO.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from .platforms import pip_platform


def pyzmq_missing_message() -> str:
    """What to tell an artist whose DCC Python has no pyzmq: which Python, and the fix for this host."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if "bpy" in sys.modules:
        fix = (
            "Install the ColorProp extension zip built by plugin/blender/build_extension.py for this platform "
            f'(it brings pyzmq along), or run: "{sys.executable}" -m pip install pyzmq'
        )
    elif "nuke" in sys.modules:
        fix = (
            "Put pyzmq for Nuke's Python into plugin/nuke/site-packages (init.py adds it), from any Python with "
            f"pip: python -m pip install --target <colorprop>/plugin/nuke/site-packages --only-binary :all: "
            f"--python-version {version} --platform {pip_platform()} pyzmq (docs/DCC.md, 'Install')"
        )
    else:
        fix = f'Run: "{sys.executable}" -m pip install pyzmq'
    return (
        f"colorprop cannot talk to its server: pyzmq (module zmq) is not installed in this Python "
        f"({sys.executable}, Python {version}). {fix}"
    )


try:
    import zmq  # noqa: F401  (imported here first so that a missing pyzmq is named as such)
except ModuleNotFoundError as _exc:
    if _exc.name != "zmq":
        raise
    raise ModuleNotFoundError(pyzmq_missing_message(), name="zmq") from None

from . import protocol as P
from .client import CancellableClient, Client, Event
from .colorize import colorize_arrays, colorize_paths
from .curve_keys import KEYS_DIR_ENV, CurveKeys, KeyFileError, KeyFilesMissing, key_files
from .dcc_text import (  # the knob and status texts, offered to the hosts here too
    NO_SUGGESTIONS,  # noqa: F401
    ColorizeError,
    FrameCounter,
    add_keyframe,  # noqa: F401
    check_address,
    check_frames,
    done_status,  # noqa: F401
    frame_path,  # noqa: F401
    last_run_suggestions_status,  # noqa: F401
    matte_path,  # noqa: F401
    matte_pattern,  # noqa: F401
    matte_rgb,  # noqa: F401
    note_text,
    parse_frame_range,  # noqa: F401
    parse_keyframes,  # noqa: F401
    suggested_frames_text,  # noqa: F401
    suggestion_frame,  # noqa: F401
    suggestion_labels,  # noqa: F401
)
from .errors import (
    AuthenticationFailed,
    CancelledByUser,
    JobCancelled,
    JobLost,
    ServerBusy,
    ServerError,
    ServerUnavailable,
)
from .transport import DEFAULT_TIMEOUT_S

DEFAULT_ADDRESS = os.environ.get("COLORPROP_SERVER", P.DEFAULT_ADDRESS)
CONNECT_TIMEOUT_S = 2.0  # a dead server is reported within this (one try)
CONNECT_LIVE_WAIT_S = 10.0  # a server that is up but does not answer hello: the UI waits no longer
JOB_TIMEOUT_S = DEFAULT_TIMEOUT_S  # per try once the server has answered: a dead one is reported within 5 s
FALLBACK_METHODS = ["full", "local", "global", "flow"]  # shown before the first connect
MODE_LABELS = {P.MODE_INBAND: "send pixels", P.MODE_PATHS: "shared paths"}
# Quality presets map onto the server's own options; only those the server declares are sent.
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"working_width": 320, "upsample": "bilinear"},
    "standard": {"working_width": 480, "upsample": "guided"},
    "high": {"working_width": 960, "upsample": "guided"},
}

Progress = Callable[[float, str], None]  # (fraction 0..1, message)
Cancelled = CancelledByUser  # the artist pressed cancel


# -- CURVE keys -----------------------------------------------------------------------------------
CLIENT_KEY_LABEL, SERVER_KEY_LABEL = "client key", "server key"  # the knob / preference names in both hosts


def curve_keys(client_key: str = "", server_key: str = "") -> CurveKeys | None:
    """The keys this plug-in connects with: the files set in its 'client key' / 'server key' fields, else
    ``$COLORPROP_CURVE_KEYS`` (``curve_keys.key_files``); None without any. ColorizeError names a missing or
    unreadable key file, the field it comes from, and the variable when it was the default."""
    given = ((client_key or "").strip(), (server_key or "").strip())
    files = None
    try:
        files = key_files(*given)
        return None if files is None else CurveKeys.from_files(*files)
    except KeyFilesMissing as exc:  # (only the folder of $COLORPROP_CURVE_KEYS is searched)
        raise ColorizeError(f"{CLIENT_KEY_LABEL} not set, and ${KEYS_DIR_ENV}: {exc}") from None
    except KeyFileError as exc:
        field = 1 if files is not None and exc.path == files[1] else 0
        if given[field]:
            default = ""
        elif not given[0]:
            default = f" (not set: found in ${KEYS_DIR_ENV})"
        else:
            default = " (not set: server.key beside the client key)"
        raise ColorizeError(
            f"CURVE {(CLIENT_KEY_LABEL, SERVER_KEY_LABEL)[field]}{default}: {exc.path}: {exc.reason}"
        ) from None


def identity_text(curve: CurveKeys | None) -> str:
    """Who the server sees this plug-in as, for a status line: ``as alice (CURVE key Zx8a...)``."""
    if curve is None:
        return "without CURVE keys (as this machine's address)"
    return f"as {curve.identity}"


# -- server choices -------------------------------------------------------------------------------
def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S, curve: CurveKeys | None = None) -> dict:
    """The server's capabilities, or ColorizeError with a message an artist can act on."""
    address = check_address(address)
    client = Client(address, timeout_s=timeout_s, retries=1, live_wait_s=CONNECT_LIVE_WAIT_S, curve=curve)
    try:
        return client.hello()
    except ServerUnavailable:
        raise ColorizeError(
            f"no colorprop server answers at {address} (waited {timeout_s:g} s). "
            "Is `colorprop serve` running there, and is the address right?"
        ) from None
    except (ServerError, P.ProtocolError) as exc:
        raise ColorizeError(describe_error(exc)) from None
    finally:
        client.close()


def method_choices(caps: Mapping[str, Any] | None) -> tuple[list[str], str]:
    """(methods, default) from a capabilities reply; a fixed list before the first connect."""
    engine = (caps or {}).get("engine") or {}
    methods = [str(m) for m in engine.get("methods") or []] or list(FALLBACK_METHODS)
    default = engine.get("default_method")
    return methods, default if default in methods else methods[0]


def mode_choices(caps: Mapping[str, Any] | None) -> list[str]:
    modes = [m for m in (caps or {}).get("modes") or [P.MODE_INBAND] if m in MODE_LABELS]
    return modes or [P.MODE_INBAND]


def declared_options(caps: Mapping[str, Any] | None) -> dict[str, Any]:
    """The shot options this server declares (name -> {type, choices, help})."""
    return dict(((caps or {}).get("engine") or {}).get("options") or {})


def build_options(
    caps: Mapping[str, Any] | None, method: str | None, quality: str = "standard", **extra: Any
) -> dict[str, Any]:
    """Options for OPEN_SHOT: the method (None: the server's default), the quality preset's values the
    server declares, and ``extra`` (e.g. ``regrade=True``), which the server must declare."""
    methods, default = method_choices(caps)
    method = method or default
    if caps and method not in methods:
        raise ColorizeError(f"method {method!r} is not offered by this server (it has {', '.join(methods)})")
    if quality not in QUALITY_PRESETS:
        raise ColorizeError(f"quality {quality!r} is not one of {', '.join(QUALITY_PRESETS)}")
    declared = declared_options(caps)
    options: dict[str, Any] = {"method": method}
    for name, value in QUALITY_PRESETS[quality].items():
        spec = declared.get(name)
        if spec is not None and (not spec.get("choices") or value in spec["choices"]):
            options[name] = value
    for name, value in extra.items():
        if caps and name not in declared:
            raise ColorizeError(f"this server has no option {name!r}; update the server or turn it off")
        options[name] = value
    return options


# -- one job --------------------------------------------------------------------------------------
class LazyFrames(Mapping):
    """frame -> HxWx3 pixels, made by ``load(frame)`` only when the client is about to send them."""

    def __init__(self, frames: list[int], load: Callable[[int], np.ndarray]):
        self.frames, self.load = list(frames), load

    def __getitem__(self, frame: int) -> np.ndarray:
        if frame not in self.frames:
            raise KeyError(frame)
        return self.load(frame)

    def __iter__(self) -> Iterator[int]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class InbandShot:
    """Pixels travel with the requests: the host loads each plate frame and writes each result."""

    load_frame: Callable[[int], np.ndarray]  # frame -> HxWx3 float32, top row first
    keys: dict[int, np.ndarray]  # key frame -> HxWx3 float32, or HxWx4 RGBA: its alpha makes a partial key
    write_result: Callable[[int, np.ndarray, np.ndarray], None]  # (frame, rgb HxWx3, confidence HxW)
    premultiplied: bool = True  # the keys' colour is premultiplied by their alpha (EXR's convention)
    mode = P.MODE_INBAND


@dataclass
class PathsShot:
    """The server reads the plate and keys and writes the results on storage both sides see."""

    plate_pattern: str
    key_paths: dict[int, str]
    output_pattern: str
    partial_keys: list[int] = field(default_factory=list)  # keys whose files' alpha makes them partial
    mode = P.MODE_PATHS


def key_and_matte(pixels: np.ndarray, name: str, premultiplied: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A key as the host read it (HxWx3 or RGBA HxWx4) -> (rgb, matte HxW or None), as core's ``load_key`` reads a
    file: a partial key unless alpha is 1 everywhere, ``premultiplied`` colour divided by alpha where it is > 0."""
    arr = np.asarray(pixels, np.float32)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ColorizeError(f"{name}: a key must be HxW RGB or RGBA, got shape {list(arr.shape)}")
    rgb, alpha = np.array(arr[..., :3]), np.ascontiguousarray(arr[..., 3]) if arr.shape[2] == 4 else None
    if alpha is None or float(np.min(alpha)) >= 1.0:  # (NaN is not >= 1: sent, and the server refuses it)
        return rgb, None
    if premultiplied:
        np.divide(rgb, alpha[..., None], out=rgb, where=alpha[..., None] > 0)
    return rgb, alpha


class JobReport(NamedTuple):
    """What a finished job tells the artist besides its frames: the server's key suggestions
    (``[{"frame", "expected_error"}]``, weakest first; :func:`suggestion_labels` shows them) and the notes of its
    pre-flight (e.g. a partial key's matte clamped into [0, 1]), each once; both empty from a server that sends none."""

    suggestions: list[dict]
    notes: list[str]


def run_job(
    address: str,
    frames: list[int],
    shot: InbandShot | PathsShot,
    options: dict[str, Any],
    progress: Progress | None = None,
    is_cancelled: Callable[[], bool] = lambda: False,
    colorspace: str | None = None,
    caps: Mapping[str, Any] | None = None,
    timeout_s: float = JOB_TIMEOUT_S,
    curve: CurveKeys | None = None,
) -> JobReport:
    """Colour ``frames`` on the server at ``address``; returns when every result is written, with the
    server's key suggestions and notes (each also shown through ``progress`` as it comes: :func:`note_text`).

    ``caps``: the capabilities from :func:`connect` (asked for here when None); ``curve``: the keys from
    :func:`curve_keys` (None: a plain connection). Raises ColorizeError (one line for the artist) or Cancelled."""
    address = check_address(address)
    keyframes = sorted(shot.keys if isinstance(shot, InbandShot) else shot.key_paths)
    check_frames(frames, keyframes)
    progress = progress or (lambda f, m: None)
    if caps is None:
        progress(0.0, f"connecting to {address} {identity_text(curve)}")
        caps = connect(address, curve=curve)
    if shot.mode not in mode_choices(caps):
        raise ColorizeError(
            "this server has no shared-path mode (it was started without allowed roots); use 'send pixels'"
        )
    counter = FrameCounter(len(frames))
    # In-band a frame counts when its result is written here, with shared paths when the server reports it written.
    counted = P.EV_RESULT if shot.mode == P.MODE_INBAND else P.EV_PROGRESS
    report = JobReport([], [])

    def on_event(ev: Event) -> None:
        if ev.kind == P.EV_RESULT and ev.rgb is not None and isinstance(shot, InbandShot):
            shot.write_result(int(ev.frame), ev.rgb, ev.confidence)
        if ev.kind == counted:
            progress(*counter.count(ev.frame))
        elif ev.kind == P.EV_RETRIED:
            progress(counter.done / counter.total, "a server worker was lost; the job restarted on another")
        elif ev.kind == P.EV_NOTE:
            note = str((ev.info or {}).get("message", ""))
            if note not in report.notes:  # (a job restarted tells its notes again)
                report.notes.append(note)
                progress(counter.done / counter.total, note_text(note))
        elif ev.kind == P.EV_DONE:
            report.suggestions[:] = P.parse_suggestions(ev.info or {})

    client = CancellableClient(address, timeout_s=timeout_s, curve=curve, is_cancelled=is_cancelled)
    try:
        progress(
            0.0, f"colorizing {len(frames)} frames ({options.get('method', 'default method')}) {identity_text(curve)}"
        )
        if isinstance(shot, InbandShot):
            keys = {k: key_and_matte(px, f"key {k}", shot.premultiplied) for k, px in shot.keys.items()}
            colorize_arrays(
                client,
                LazyFrames(frames, shot.load_frame),
                {k: rgb for k, (rgb, _) in keys.items()},
                options,
                colorspace=colorspace,
                on_progress=on_event,
                key_mattes={k: matte for k, (_, matte) in keys.items() if matte is not None},
            )
        else:
            colorize_paths(
                client,
                shot.plate_pattern,
                shot.output_pattern,
                frames,
                shot.key_paths,
                options,
                colorspace=colorspace,
                on_progress=on_event,
                partial_keys=shot.partial_keys,
            )
    except (Cancelled, JobCancelled):
        raise Cancelled() from None
    except (ServerError, TimeoutError, P.ProtocolError) as exc:
        raise ColorizeError(describe_error(exc)) from None
    finally:
        client.close()
    progress(1.0, counter.finished())
    return report


# -- key suggestions ------------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str:
    """One line for the node's status or the panel: what happened and what to do."""
    if isinstance(exc, AuthenticationFailed):
        return describe_refusal(exc)
    if isinstance(exc, ServerUnavailable):
        return f"the server stopped answering ({exc}); is it still running?"
    if isinstance(exc, ServerBusy):
        return f"the server is busy with other shots; retry in {exc.retry_after_s:g} s"
    if isinstance(exc, JobLost):
        return f"{exc} (the server restarted or dropped the job; press Colorize again)"
    if isinstance(exc, (ServerError, P.ProtocolError)):
        hints = {
            P.E_PATH: " (shared paths must lie under the server's allowed roots; or use 'send pixels')",
            P.E_PIXELS: " (NaN/Inf pixels in the plate or keys, or keys of another size than the plate)",
            P.E_VERSION: " (update the plug-in or the server so both speak the same protocol)",
        }
        return str(exc) + hints.get(exc.code, "")
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}"
    return f"{type(exc).__name__}: {exc}"


def describe_refusal(exc: AuthenticationFailed) -> str:
    """A refused CURVE handshake (``colorize --server``'s exit 7), as one line naming the field to fix."""
    curve, address = exc.curve, exc.address
    if exc.cause == exc.CLIENT_HAS_NO_KEYS:
        return (
            f"{address} requires CURVE keys and none are set: set '{CLIENT_KEY_LABEL}' (NAME.key_secret) and "
            f"'{SERVER_KEY_LABEL}' (server.key) from the server's admin, or ${KEYS_DIR_ENV}"
        )
    if curve is None:  # (a refusal that needs keys to happen; kept general)
        return f"{address} refused the connection: {exc.reason}"
    if exc.cause == exc.KEY_NOT_LISTED:
        return (
            f"{address} refused {curve.identity}: the key is not in the server's authorized_clients/; ask its "
            f"admin to add {curve.name or 'NAME'}.key there (`colorprop keys DIR --client NAME`), or set "
            f"'{CLIENT_KEY_LABEL}' ({curve.secret_file}) to a key it lists"
        )
    if exc.cause == exc.SERVER_HAS_NO_CURVE:
        return (
            f"{address} does not use CURVE keys but this plug-in has some ({curve.secret_file}): clear "
            f"'{CLIENT_KEY_LABEL}' and '{SERVER_KEY_LABEL}' (and ${KEYS_DIR_ENV})"
        )
    return (
        f"{address} refused the CURVE handshake: '{SERVER_KEY_LABEL}' ({curve.server_file}) is not this "
        "server's public key; get server.key from the server's keys folder"
    )
