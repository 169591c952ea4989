"""`colorprop colorize --server ADDRESS`: the CLI's job, run on a server.

First the same pre-flight as the embedded CLI (core's shot/preflight.py) runs here, before anything
is sent: a bad job fails with the same message and exit code on every path, and nothing on disk
changes. If the server offers shared-path mode and the files lie under its allowed roots, the server
reads and writes the EXRs itself (and runs the pre-flight again on its side). Otherwise the frames travel in-band: read
here, coloured there,
written here exactly as the embedded engine would write them (same channels, template, half
floats, and the same half-rounded colour carried from frame to frame, so the output is
identical).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from colorprop.errors import ColorpropError, ExrReadError, ExrWriteError, InputError, PixelError

from colorprop_client import client as C
from colorprop_client import protocol as P
from colorprop_client.curve_keys import KEY_ERRORS, find_curve_keys

EXIT_SERVER_UNAVAILABLE = 6
EXIT_AUTH_REFUSED = 7
BUSY_WAIT_S = 60.0  # how long a busy server ("all slots taken") is retried before giving up with exit 6


class ServerUnavailableError(ColorpropError):
    exit_code = EXIT_SERVER_UNAVAILABLE


class AuthRefusedError(ColorpropError):
    """The server is there and refused this client's CURVE keys (exit 7)."""

    exit_code = EXIT_AUTH_REFUSED


class RemoteJobError(ColorpropError):
    """A job the server refused or that failed there; ``exit_code`` as the embedded CLI would exit for the
    same cause (``EXIT_FOR_CODE``)."""

    def __init__(self, message: str, exit_code: int = 1):
        self.exit_code = exit_code
        super().__init__(message)


# The server's error code -> the exit code of the core error the embedded CLI raises for the same cause
# (the one table of exit codes is core/errors.py's classes; README "Exit codes").
EXIT_FOR_CODE = {
    P.E_BAD_INPUT: InputError.exit_code,
    P.E_PATH: InputError.exit_code,
    P.E_VERSION: InputError.exit_code,
    P.E_PIXELS: PixelError.exit_code,
    P.E_UNREADABLE: ExrReadError.exit_code,
    P.E_WRITE_FAILED: ExrWriteError.exit_code,
}


def connection_error(err: C.AuthenticationFailed | C.ServerUnavailable) -> ColorpropError:
    """The CLI's error for a server that refused this client's keys (exit 7) or did not answer (exit 6)."""
    if isinstance(err, C.AuthenticationFailed):
        return AuthRefusedError(str(err))
    return ServerUnavailableError(f"{err}; is `colorprop serve` running there?")


def client_curve_keys(curve_keys: str | None = None, curve_name: str | None = None) -> C.CurveKeys | None:
    """The client's CURVE keys from ``curve_keys`` or ``$COLORPROP_CURVE_KEYS`` (name from ``curve_name`` or
    ``$COLORPROP_CURVE_NAME``, default ``client``); None without either. The lookup the DCC plug-ins use too."""
    try:
        return find_curve_keys(keys_dir=curve_keys, name=curve_name)
    except KEY_ERRORS as err:
        raise InputError(str(err)) from None


def colorize_via_server(
    address: str,
    input_pattern: str,
    keys: dict[int, str],
    output_pattern: str,
    frames: list[int],
    options: Any,
    progress: Callable | None = None,
    skip_existing: bool = False,
    timeout_s: float | None = None,
    pixel_type: str = "half",
    curve_keys: str | None = None,
    curve_name: str | None = None,
    key_colorspace: str | None = None,
    key_mattes: dict[int, str] | None = None,
) -> Any:
    """Same contract as ``pipeline.colorize_sequence``; returns a ``ShotReport``. ``key_mattes``: frame -> the
    matte image of a partial key (``--key-matte``); a key file's own alpha makes a partial key too. Partial keys
    travel as protocol ``MATTE_VERSION``: a server that speaks only version 1 refuses them (exit 2).

    CURVE keys come from ``curve_keys`` or ``$COLORPROP_CURVE_KEYS`` (a folder holding
    ``<name>.key_secret`` and ``server.key``; name from ``curve_name``/``$COLORPROP_CURVE_NAME``,
    default ``client``).
    """
    from colorprop.shot.frames import ProgressEvent, ShotReport
    from colorprop.shot.preflight import check_sequence_job

    if not P.is_address(address):
        raise InputError(f"--server {address!r}: not a server address; use {P.ADDRESS_FORMS}")
    checked = check_sequence_job(
        input_pattern, keys, output_pattern, frames, options, key_colorspace=key_colorspace, key_mattes=key_mattes
    )
    curve = client_curve_keys(curve_keys, curve_name)
    client = C.Client(address, timeout_s=timeout_s or C.DEFAULT_TIMEOUT_S, retries=C.DEFAULT_RETRIES, curve=curve)
    report = ShotReport()
    t0 = time.perf_counter()
    total = len(frames)
    try:
        caps = client.hello()
        opts = options.to_dict()
        # The server reads keys in shared-path mode with its default key colour space; keys in another one
        # (--key-colorspace) travel in-band, converted as given.
        if P.MODE_PATHS in caps.get("modes", []) and key_colorspace is None:

            def on_event(ev: C.Event) -> None:
                if ev.kind == P.EV_PROGRESS and progress is not None:
                    info = ev.info or {}
                    progress(
                        ProgressEvent(
                            int(info.get("frame", 0)),
                            int(info.get("done", 0)),
                            int(info.get("total", total)),
                            float(info.get("seconds", 0.0)),
                            bool(info.get("skipped", False)),
                        )
                    )

            try:
                rep = C.colorize_paths(
                    client,
                    str(Path(input_pattern).absolute()),
                    str(Path(output_pattern).absolute()),
                    frames,
                    {k: str(Path(p).absolute()) for k, p in keys.items()},
                    opts,
                    on_progress=on_event,
                    skip_existing=skip_existing,
                    pixel_type=pixel_type,
                    busy_wait_s=BUSY_WAIT_S,
                    key_mattes={k: str(Path(p).absolute()) for k, p in (key_mattes or {}).items()},
                    partial_keys=[k for k, key in checked.keys.items() if key.is_partial],
                )
                report.frames_written = list(rep.get("frames_written", []))
                report.frames_skipped = list(rep.get("frames_skipped", []))
                report.seconds = time.perf_counter() - t0
                report.notes = checked.notes
                return report
            except C.ServerError as err:
                if err.code != P.E_PATH:
                    raise
                print(f"colorprop: {err}; sending the frames in-band instead", file=sys.stderr)
        _colorize_inband(client, checked, options, progress, skip_existing, pixel_type, report)
        report.seconds = time.perf_counter() - t0
        report.notes = checked.notes
        return report
    except (C.AuthenticationFailed, C.ServerUnavailable) as err:
        raise connection_error(err) from None
    except C.ServerBusy as err:
        raise ServerUnavailableError(f"{err}: still busy after {BUSY_WAIT_S:g} s of retries; try again later") from None
    except C.ServerError as err:
        raise RemoteJobError(str(err), EXIT_FOR_CODE.get(err.code, RemoteJobError.exit_code)) from None
    finally:
        client.close()


class _LazyPlates(Mapping):
    """frame -> HxWx3 rgb of the plate, read when the client sends it (``plates``: an ``ExrSequenceSource``)."""

    def __init__(self, plates: Any):
        self.plates = plates

    def __getitem__(self, frame: int) -> Any:
        from colorprop.shot.preflight import check_plate_pixels

        if frame not in self.plates.frames:
            raise KeyError(frame)
        plate = self.plates.read(frame)
        check_plate_pixels(plate.pixels, plate.channels, plate.name)  # as the embedded run checks each frame
        return plate.rgb()

    def __iter__(self):
        return iter(self.plates.frames)

    def __len__(self) -> int:
        return len(self.plates.frames)


def _colorize_inband(client, checked, options, progress, skip_existing, pixel_type, report) -> None:
    """Plates read here and sent, results received and written here (``checked``: the pre-flight's
    ``CheckedShot``, keys loaded)."""
    import numpy as np

    from colorprop.shot.frames import FrameResult, ProgressEvent

    frames, key_images = checked.frames, checked.keys
    plates = checked.source()
    colorspace = options.colorspace or checked.headers[frames[0]].colorspace
    sink = checked.sink(pixel_type)
    answered: set[int] = set()

    def on_result(frame: int, rgb: np.ndarray, confidence: np.ndarray) -> None:
        t = time.perf_counter()
        # A job restarted after its worker died sends the shot's results again: a frame written before is
        # written again (the whole output then comes from one run) but counted once; a skipped one stays.
        again = frame in answered
        answered.add(frame)
        if frame in report.frames_skipped or not again and skip_existing and sink.exists(frame):
            if not again:
                report.frames_skipped.append(frame)
        else:
            sink.write(
                frame, FrameResult(np.asarray(rgb, np.float32), np.asarray(confidence, np.float32), plates.read(frame))
            )
            if not again:
                report.frames_written.append(frame)
        if progress is not None and not again:
            progress(
                ProgressEvent(
                    frame, len(answered), len(frames), time.perf_counter() - t, frame in report.frames_skipped
                )
            )

    C.colorize_arrays(
        client,
        _LazyPlates(plates),
        {k: img.pixels for k, img in key_images.items()},
        options.to_dict(),
        colorspace=colorspace,
        on_result=on_result,
        carry_dtype="float16" if pixel_type == "half" else "float32",
        key_colorspaces={k: img.colorspace for k, img in key_images.items()},
        busy_wait_s=BUSY_WAIT_S,
        key_mattes={k: img.matte for k, img in key_images.items() if img.is_partial},
    )
