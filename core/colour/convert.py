"""Colour math: plate space <-> linear Rec.709, luminance, CIE Lab (D65); row bands for per-pixel maths.

Layouts: numpy images are HxWxC float32, torch tensors NxCxHxW. Nothing here clips: values
above 1.0 and below 0.0 survive every round trip (HDR plates, negative lobes from grading).

Colour spaces come from the studio's OCIO config when ``$OCIO`` names one, else from OpenImageIO's
built-in config: names such as "ACEScg", "Linear Rec.709 (sRGB)", "sRGB Encoded Rec.709 (sRGB)",
"Raw", their aliases ("lin_ap1_scene", "srgb_tx", ...) and roles ("scene_linear", "data", ...).
The Lab maths work in linear Rec.709, whatever the config calls it (``linear_rec709()``).
Conversion uses OCIO's processors through ``ImageBufAlgo.colorconvert``, which do not clamp:
the sRGB/gamma curves of that config extend linearly or by pass-through below 0 and keep their
power law above 1 (verified in tests/test_color.py), so no hand-written curve is needed.
OCIO evaluates power curves with a fast approximation: round trips are exact to ~5e-5
relative, well below half-float precision (~5e-4). A transform that OCIO's output shows to be a
matrix (between scene-linear spaces: ACEScg <-> linear Rec.709) runs as that matrix in one
``cv2.transform`` (``linear_transform``), equal to OCIO's processor to float32 rounding.

Lab: XYZ from linear Rec.709 uses the Rec.709/D65 matrix whose Y row is exactly the luminance
weights (0.2126, 0.7152, 0.0722), and the white point is that matrix applied to RGB (1, 1, 1),
so neutral greys have a = b = 0 and ``lab_to_linear_rec709`` reproduces the luminance that L was
computed from, whatever a and b are. L is 0..100 for Y in 0..1 and exceeds 100 for Y > 1.
These float64 functions are the reference; plate-resolution frames use the float32 kernels of plate_lab.
"""

from __future__ import annotations

import difflib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np
import OpenImageIO as oiio
import torch

from colorprop.errors import ColorSpaceError

LINEAR_REC709 = "Linear Rec.709 (sRGB)"  # the built-in config's name; ``linear_rec709()`` finds it in any config
# Display-referred sRGB (8/16-bit keys, previews): an alias the built-in and the ACES studio configs share.
SRGB_DISPLAY = "srgb_tx"
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)

# Linear Rec.709 -> CIE XYZ (D65). X and Z rows from the Rec.709 primaries and D65 white; the Y
# row is the rounded luminance weights the whole project uses, so Y == luminance() exactly.
_RGB_TO_XYZ = np.array(
    [
        [0.4123908, 0.3575843, 0.1804808],
        LUMA_WEIGHTS,
        [0.0193308, 0.1191948, 0.9505322],
    ],
    dtype=np.float64,
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
# White = XYZ of RGB (1, 1, 1): makes greys exactly achromatic. Y white is 1.0.
_WHITE = _RGB_TO_XYZ.sum(axis=1)
_Y_WHITE = float(_WHITE[1])

# CIE constants, exact rationals: f(t) is linear below EPSILON, a cube root above it.
_EPSILON = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0
_F_BREAK = 6.0 / 29.0  # f(EPSILON); the inverse switches segments here


# ----------------------------------------------------------------------------- colour spaces


@functools.lru_cache(maxsize=1)
def _config() -> oiio.ColorConfig:
    # Built lazily (no import-time side effects): $OCIO when set, else OIIO's built-in config. OIIO's own
    # conversions (colorconvert) read $OCIO the same way, so names and processors come from one config.
    config = oiio.ColorConfig(os.environ.get("OCIO", ""))
    problem = config.geterror()
    if problem:  # OIIO would fall back to a minimal config; a studio wants to know its config was not read
        raise ColorSpaceError(f"$OCIO={os.environ.get('OCIO')!r}: {problem}")
    return config


def config_name() -> str:
    """The OCIO config in use: the $OCIO file, or ``ocio://default`` (built-in)."""
    return _config().configname()


@functools.lru_cache(maxsize=1)
def linear_rec709() -> str:
    """The config's name for linear Rec.709 (D65), the space the Lab maths start from."""
    for spelling in (LINEAR_REC709, "lin_rec709", "lin_rec709_scene", "Linear Rec.709", "lin_srgb"):
        try:
            return check_colorspace(spelling)
        except ColorSpaceError:
            continue
    raise ColorSpaceError(
        f"the OCIO config {config_name()} has no linear Rec.709 colour space; colorprop's Lab "
        "maths need one (name it, or give it the alias 'lin_rec709')"
    )


def colorspace_names() -> list[str]:
    """Canonical colour space names of the config, in config order."""
    return list(_config().getColorSpaceNames())


def check_colorspace(name: str) -> str:
    """The canonical colour space for ``name``: a name, alias or role, case-insensitive.

    OIIO's resolver decides first, so "linear" means "Linear Rec.709 (sRGB)" (as in Nuke) while
    the role "scene_linear" means "ACEScg" in this config. Raises ColorSpaceError naming the bad
    value, the closest known spellings and all valid names.
    """
    names = colorspace_names()
    if not isinstance(name, str) or not name.strip():
        raise ColorSpaceError(f"colour space {name!r}: empty; valid names: {', '.join(names)}")
    name = name.strip()
    resolved = _config().resolve(name)
    if resolved in names:
        return resolved
    lowered = {known.lower(): canonical for known, canonical in _all_spellings().items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, list(_all_spellings()), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ColorSpaceError(f"unknown colour space {name!r}.{hint} Valid names: {', '.join(names)}")


@functools.lru_cache(maxsize=1)
def _all_spellings() -> dict[str, str]:
    """Every name, alias and role -> canonical name."""
    config = _config()
    spellings = {}
    for canonical in config.getColorSpaceNames():
        spellings[canonical] = canonical
        for alias in config.getAliases(canonical):
            spellings[alias] = canonical
    for role in config.getRoles():
        spellings[role] = config.getColorSpaceNameByRole(role)
    return spellings


def _is_identity(space: str) -> bool:
    # Data spaces ("Raw") carry no colour transform; converting them would be meaningless.
    return space == linear_rec709() or _config().isData(space)


def to_linear_rec709(rgb: np.ndarray, space: str) -> np.ndarray:
    """HxWx3 pixels in ``space`` -> HxWx3 float32 linear Rec.709, unclipped."""
    space = check_colorspace(space)
    if _is_identity(space):
        return np.asarray(rgb, dtype=np.float32)
    return _colorconvert(rgb, space, linear_rec709())


def from_linear_rec709(rgb: np.ndarray, space: str) -> np.ndarray:
    """HxWx3 float32 linear Rec.709 -> HxWx3 float32 in ``space``, unclipped."""
    space = check_colorspace(space)
    if _is_identity(space):
        return np.asarray(rgb, dtype=np.float32)
    return _colorconvert(rgb, linear_rec709(), space)


def _colorconvert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {rgb.shape}")
    matrix = linear_transform(src, dst)
    if matrix is not None:
        return cv2.transform(np.ascontiguousarray(rgb, dtype=np.float32), matrix)
    return _ocio_convert(rgb, src, dst)


def _ocio_convert(rgb: np.ndarray, src: str, dst: str, threads: int = 1) -> np.ndarray:
    buf = oiio.ImageBuf(np.ascontiguousarray(rgb, dtype=np.float32))
    # unpremult=False: our buffers have no alpha, and unpremultiplying would touch nothing but cost.
    # One thread: callers spread frames over the cores in row bands (map_row_bands) already.
    out = oiio.ImageBufAlgo.colorconvert(buf, src, dst, False, nthreads=threads)
    if out.has_error:
        raise ColorSpaceError(f"cannot convert {src!r} -> {dst!r}: {out.geterror()}")
    return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(rgb.shape)


# Probe pixels for linear_transform: black, the three primaries, then values of every sign and of magnitudes
# 1e-4..1e4 (HDR, negative lobes), where a curve, a clamp or a range limit would show.
_PROBE = np.concatenate(
    [
        np.zeros((1, 3)),
        np.eye(3),
        np.random.default_rng(0).uniform(-1.0, 1.0, (60, 3)) * np.logspace(-4, 4, 60)[:, None],
    ]
).astype(np.float32)[None]


@functools.lru_cache(maxsize=32)
def linear_transform(src: str, dst: str) -> np.ndarray | None:
    """The 3x4 affine matrix that OCIO's ``src`` -> ``dst`` transform is, when it is one (ACEScg <-> linear
    Rec.709 and every other pair of scene-linear spaces), else None (curves: sRGB, log, OCIO's approximated
    powers). Read from OCIO's own output for black and the primaries, and accepted only where it reproduces
    OCIO's output for every probe pixel to float32 rounding; then one ``cv2.transform`` replaces OCIO's
    processor and the copies into and out of an ImageBuf (at 4K the conversion took 3x longer than the maths)."""
    out = _ocio_convert(_PROBE, src, dst).astype(np.float64)[0]
    offset = out[0]
    matrix = np.column_stack([(out[1:4] - offset).T, offset])
    predicted = _PROBE[0].astype(np.float64) @ matrix[:, :3].T + offset
    scale = np.abs(_PROBE[0]).max(axis=1, keepdims=True) + np.abs(out).max(axis=1, keepdims=True)
    if not np.all(np.abs(predicted - out) <= 1e-6 * scale):
        return None
    return matrix.astype(np.float32)


# ----------------------------------------------------------------------------- luminance, Lab


def luminance(rgb_lin: np.ndarray) -> np.ndarray:
    """HxWx3 linear Rec.709 -> HxW CIE Y = 0.2126 R + 0.7152 G + 0.0722 B (in the input's float dtype)."""
    rgb_lin = np.asarray(rgb_lin)
    dtype = rgb_lin.dtype if rgb_lin.dtype == np.float64 else np.float32
    weights = np.asarray(LUMA_WEIGHTS, dtype=dtype)
    return (rgb_lin.astype(dtype, copy=False) @ weights).astype(dtype, copy=False)


def _f(t):
    """CIE f(t), with the linear segment below EPSILON extended to negatives (numpy or torch)."""
    lib = torch if isinstance(t, torch.Tensor) else np
    return lib.where(t > _EPSILON, _cbrt(t), (_KAPPA * t + 16.0) / 116.0)


def _f_inv(f):
    lib = torch if isinstance(f, torch.Tensor) else np
    return lib.where(f > _F_BREAK, f * f * f, (116.0 * f - 16.0) / _KAPPA)


def _cbrt(t):
    if isinstance(t, torch.Tensor):
        # Only the t > EPSILON branch is kept; clamping keeps pow() away from NaN for negatives.
        return torch.clamp(t, min=_EPSILON).pow(1.0 / 3.0)
    return np.cbrt(t)


def lab_l_from_y(y):
    """CIE L* (0..100 for Y in 0..1, more above) from luminance Y; numpy array or torch tensor."""
    return 116.0 * _f(y / _Y_WHITE) - 16.0


def y_from_lab_l(lab_l):
    """Luminance Y from CIE L*; exact inverse of ``lab_l_from_y``; numpy array or torch tensor."""
    return _Y_WHITE * _f_inv((lab_l + 16.0) / 116.0)


def _out_dtype(array: np.ndarray):
    # float64 in -> float64 out (tests, offline maths); anything else -> the project's float32.
    return np.float64 if array.dtype == np.float64 else np.float32


def linear_rec709_to_lab(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 linear Rec.709 -> HxWx3 CIE Lab (D65): L in 0..100(+), a and b roughly -128..128.

    Computed in float64; returned as float32 (float64 if given float64).
    """
    rgb = np.asarray(rgb)
    xyz = rgb.astype(np.float64) @ _RGB_TO_XYZ.T
    fx, fy, fz = (_f(xyz[..., i] / _WHITE[i]) for i in range(3))
    lab = np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)
    return lab.astype(_out_dtype(rgb))


def lab_to_linear_rec709(lab: np.ndarray) -> np.ndarray:
    """HxWx3 CIE Lab (D65) -> HxWx3 linear Rec.709, unclipped.

    luminance() of the result equals y_from_lab_l(L) for any a, b (the Y row of the inverse
    matrix maps XYZ back to exactly that Y); computed in float64 so the cancellation between
    large X/Z and small Y does not eat the precision.
    """
    lab = np.asarray(lab)
    lab64 = lab.astype(np.float64)
    fy = (lab64[..., 0] + 16.0) / 116.0
    fx = fy + lab64[..., 1] / 500.0
    fz = fy - lab64[..., 2] / 200.0
    xyz = np.stack([_WHITE[i] * _f_inv(f) for i, f in enumerate((fx, fy, fz))], axis=-1)
    return (xyz @ _XYZ_TO_RGB.T).astype(_out_dtype(lab))


def linear_rec709_to_lab_t(rgb: torch.Tensor) -> torch.Tensor:
    """Nx3xHxW linear Rec.709 -> Nx3xHxW CIE Lab (D65), in the tensor's dtype and device."""
    xyz = _matmul_channels(rgb, _RGB_TO_XYZ)
    fx, fy, fz = (_f(xyz[:, i] / float(_WHITE[i])) for i in range(3))
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_linear_rec709_t(lab: torch.Tensor) -> torch.Tensor:
    """Nx3xHxW CIE Lab (D65) -> Nx3xHxW linear Rec.709, unclipped, in the tensor's dtype and device."""
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = fy + lab[:, 1] / 500.0
    fz = fy - lab[:, 2] / 200.0
    xyz = torch.stack([float(_WHITE[i]) * _f_inv(f) for i, f in enumerate((fx, fy, fz))], dim=1)
    return _matmul_channels(xyz, _XYZ_TO_RGB)


def _matmul_channels(image: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel axis of an Nx3xHxW tensor."""
    m = torch.as_tensor(matrix, dtype=image.dtype, device=image.device)
    return torch.einsum("ij,njhw->nihw", m, image)


# ----------------------------------------------------------------------------- row bands

BAND_PIXELS = 1 << 17  # ~130k pixels a band: a float64 HxWx3 temporary of one band stays in cache


_band_threads: int | None = None  # set by engine.threads.apply_thread_policy, the one place that decides


def set_band_threads(count: int) -> None:
    """How many threads share the row bands; the next band map builds its pool with that many."""
    global _band_threads
    _band_threads = count
    _band_pool.cache_clear()  # an idle pool dropped here lets its threads exit


@functools.lru_cache(maxsize=1)
def _band_pool() -> ThreadPoolExecutor:
    # Built on first use (no import-time side effects). numpy's ufuncs, cv2 and OIIO release the GIL.
    # Before the thread policy ran (the engine used as a library): the CPUs this process may run on, at most 4.
    count = _band_threads or min(4, len(os.sched_getaffinity(0)))
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="colorprop-band")


def map_row_bands(
    fn: Callable[..., np.ndarray | tuple[np.ndarray, ...]], *images: np.ndarray, band_rows: int | None = None
) -> np.ndarray | tuple[np.ndarray, ...]:
    """``fn(*images)`` for a per-pixel ``fn``, computed on bands of rows on a thread pool.

    images: arrays sharing H (axis 0), HxW or HxWxC. ``fn`` must treat every pixel on its own
    (colour conversions, Lab): then the result equals ``fn(*images)``, in less time (the cores share
    the bands) and less memory (temporaries exist one band at a time). Equal to the last bit for most
    maths; vectorised kernels (cv2, numpy's cbrt) may round the few pixels at the end of a band one ulp
    apart from the same pixels mid-frame, so compare banded results with banded results. Returns what ``fn``
    returns (one array or a tuple), bands stacked along axis 0: each band copies its own rows into the result
    while they are still in its core's cache (a concatenation after the last band was one more pass over the
    frame on one core: at 4K a tenth of a second a frame over the calls of a frame).
    """
    height = images[0].shape[0]
    width = images[0].shape[1] if images[0].ndim > 1 else 1
    rows = band_rows or max(8, BAND_PIXELS // max(1, width))
    if height <= rows:
        return fn(*images)
    result: list[tuple[np.ndarray, ...]] = []  # the output arrays, made by the first band done
    made = threading.Lock()

    def band(y: int) -> bool:
        part = fn(*(im[y : y + rows] for im in images))
        parts = part if isinstance(part, tuple) else (part,)
        with made:
            if not result:
                result.append(tuple(np.empty((height, *p.shape[1:]), p.dtype) for p in parts))
        for out, p in zip(result[0], parts):
            out[y : y + rows] = p
        return isinstance(part, tuple)

    is_tuple = list(_band_pool().map(band, range(0, height, rows)))[0]
    return result[0] if is_tuple else result[0][0]
