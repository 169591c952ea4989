"""Lab at plate resolution: fused float32 kernels between a plate's colour space and CIE Lab's L and ab.

The same maths as ``convert.linear_rec709_to_lab`` / ``lab_to_linear_rec709`` (the float64 references), made
for 4K frames: float32 throughout, each matrix applied by one ``cv2.transform`` (the Lab white point, the
500/200 scales and a scene-linear plate's own matrix, ACEScg's, folded into it), only the channels the caller
needs (L alone in, ab alone out), and no float64 temporaries. Every function is per pixel (HxWxC arrays), so
``convert.map_row_bands`` spreads it over the cores in cache-sized bands. Float32 against the references: ab
within ~1e-4 Lab units, linear RGB within ~1e-6 of the pixel's largest channel (tests/test_color.py), far below
the half floats a plate is written in.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from colorprop.colour import convert

_F32 = np.float32
# f = (x/Xw, y/Yw, z/Zw) straight from RGB: the XYZ matrix with each row divided by its white.
_RGB_TO_XYZ_OVER_WHITE = (convert._RGB_TO_XYZ / convert._WHITE[:, None]).astype(_F32)
# (a, b) = (500 (fx - fy), 200 (fy - fz)).
_F_TO_AB = np.array([[500.0, -500.0, 0.0], [0.0, 200.0, -200.0]], _F32)
# g = f - 16/116 from (L, a, b): gy = L / 116, gx = gy + a / 500, gz = gy - b / 200.
_LAB_TO_G = np.array([[1 / 116, 1 / 500, 0.0], [1 / 116, 0.0, 0.0], [1 / 116, 0.0, -1 / 200]], _F32)
# RGB from (X/Xw, Y/Yw, Z/Zw) after f's inverse: the inverse matrix with the white folded in.
_XYZ_OVER_WHITE_TO_RGB = (convert._XYZ_TO_RGB * convert._WHITE[None, :]).astype(_F32)


# Both kernels work with g = f - 16/116 rather than CIE's f: on f's linear segment (dark pixels, Y < 0.9 %)
# g = t kappa / 116 keeps float32's full relative precision, where f = g + 16/116 would round it away
# (116 f - 16 cancelled to 2e-4 relative error at Y ~ 1e-5). The 16/116 cancels in a and b anyway.
_G_OFFSET = _F32(16.0 / 116.0)
_G_BREAK = convert._F_BREAK - 16.0 / 116.0  # g at t = EPSILON


# Both branches are computed for every pixel, as np.where would, but the result is made in place in the first one's
# array and the linear branch copied over where it applies: the same numbers, fewer band-sized temporaries.
def _g(t: np.ndarray) -> np.ndarray:
    """CIE f(t) - 16/116 (cube root above EPSILON, linear below and for negatives) in float32."""
    g = np.cbrt(t)
    g -= _G_OFFSET
    np.copyto(g, t * _F32(convert._KAPPA / 116.0), where=~(t > convert._EPSILON))
    return g


def _g_inv(g: np.ndarray) -> np.ndarray:
    cube = g + _G_OFFSET
    t = cube * cube
    t *= cube
    np.copyto(t, g * _F32(116.0 / convert._KAPPA), where=~(g > _G_BREAK))
    return t


def linear_to_ab(rgb_lin: np.ndarray) -> np.ndarray:
    """HxWx3 linear Rec.709 -> HxWx2 float32 CIE a, b (D65); L is not computed."""
    rgb_lin = np.ascontiguousarray(rgb_lin, dtype=_F32)
    return cv2.transform(_g(cv2.transform(rgb_lin, _RGB_TO_XYZ_OVER_WHITE)), _F_TO_AB)


def lab_to_linear(lab_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """HxW CIE L and HxWx2 a, b -> HxWx3 float32 linear Rec.709, unclipped; its luminance is L's Y (to float32
    rounding: the Y row of the inverse matrix picks Y/Yw alone)."""
    lab = cv2.merge([np.asarray(lab_l, _F32), np.asarray(ab, _F32)])
    return cv2.transform(_g_inv(cv2.transform(lab, _LAB_TO_G)), _XYZ_OVER_WHITE_TO_RGB)


def ab_of_plate(rgb: np.ndarray, space: str) -> np.ndarray:
    """HxWx3 pixels in colour space ``space`` -> HxWx2 float32 Lab a, b."""
    to_linear = _affine(space, to_linear=True)
    if to_linear is None:
        return linear_to_ab(convert.to_linear_rec709(rgb, space))
    rgb = np.ascontiguousarray(rgb, dtype=_F32)
    to_f = _compose(convert._RGB_TO_XYZ / convert._WHITE[:, None], to_linear)
    return cv2.transform(_g(cv2.transform(rgb, to_f)), _F_TO_AB)


def plate_from_lab(lab_l: np.ndarray, ab: np.ndarray, space: str) -> np.ndarray:
    """HxW L and HxWx2 ab -> HxWx3 float32 pixels in colour space ``space``, unclipped."""
    from_linear = _affine(space, to_linear=False)
    if from_linear is None:
        return convert.from_linear_rec709(lab_to_linear(lab_l, ab), space)
    lab = cv2.merge([np.asarray(lab_l, _F32), np.asarray(ab, _F32)])
    xyz_to_plate = from_linear[:, :3] @ (convert._XYZ_TO_RGB * convert._WHITE[None, :])
    to_plate = np.column_stack([xyz_to_plate, from_linear[:, 3]]).astype(_F32)
    return cv2.transform(_g_inv(cv2.transform(lab, _LAB_TO_G)), to_plate)


def lab_l_of_plate(pixels: np.ndarray, rgb_index: tuple[int, int, int], space: str) -> np.ndarray:
    """HxWxC plate pixels in colour space ``space`` -> HxW float32 CIE L of their luminance. ``rgb_index``: the
    channels holding R, G, B (a gray plate's one channel three times); the others are not read."""
    to_linear = _affine(space, to_linear=True)
    if to_linear is None:
        rgb = pixels[..., list(rgb_index)]
        return convert.lab_l_from_y(convert.luminance(convert.to_linear_rec709(rgb, space)))
    # Y / Yw straight from the plate's channels: the luminance weights after the plate's matrix, summed per channel
    # (a gray plate's one channel takes all three), added in R, G, B order whatever the layout, so that a plate
    # sent as RGB (in-band) and read as RGBA (a file) give the same bits. Only those channels are read: another
    # one (a depth pass's +inf) would spoil the sum even at weight 0.
    row = _compose(np.array([convert.LUMA_WEIGHTS]) / convert._Y_WHITE, to_linear)[0]
    weights: dict[int, float] = {}
    for k, c in enumerate(rgb_index):
        weights[c] = weights.get(c, 0.0) + float(row[k])
    (first, w), *rest = weights.items()
    t = np.multiply(pixels[..., first], _F32(w), dtype=_F32)
    term = np.empty_like(t) if rest else None
    for c, w in rest:
        t += np.multiply(pixels[..., c], _F32(w), out=term, dtype=_F32)
    if row[3]:
        t += row[3]
    lab_l = _g(t)  # L = 116 f(t) - 16 = 116 g(t)
    lab_l *= _F32(116.0)
    return lab_l


def _compose(outer: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``outer`` (Nx3) after the 3x4 ``affine``, as one Nx4 float32 affine matrix for ``cv2.transform``."""
    return np.column_stack([outer @ affine[:, :3], outer @ affine[:, 3]]).astype(_F32)


@functools.lru_cache(maxsize=32)
def _affine(space: str, to_linear: bool) -> np.ndarray | None:
    """The 3x4 affine matrix (float64) from ``space`` to linear Rec.709 (or back) where OCIO's transform is one
    (``convert.linear_transform``; identity for linear Rec.709 and data spaces); None where it is a curve. Folded
    into the Lab matrices, a scene-linear plate (ACEScg) costs no pass of its own over the frame."""
    space = convert.check_colorspace(space)
    if convert._is_identity(space):
        return np.column_stack([np.eye(3), np.zeros(3)])
    lin = convert.linear_rec709()
    matrix = convert.linear_transform(space, lin) if to_linear else convert.linear_transform(lin, space)
    return None if matrix is None else matrix.astype(np.float64)
