"""Colour spaces (OIIO's built-in OCIO config), luminance, CIE Lab and chroma upsampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from colorprop.colour import convert, plate_lab
from colorprop.colour.convert import (
    LINEAR_REC709,
    check_colorspace,
    colorspace_names,
    from_linear_rec709,
    lab_l_from_y,
    lab_to_linear_rec709,
    lab_to_linear_rec709_t,
    linear_rec709_to_lab,
    linear_rec709_to_lab_t,
    luminance,
    to_linear_rec709,
    y_from_lab_l,
)
from colorprop.colour.upsample import upsample_chroma
from colorprop.engine.propagate import resize_hw
from colorprop.errors import ColorSpaceError, InputError

# HDR and negative values that must survive every conversion.
_HDR = np.array([[[4.0, -0.1, 0.5], [16.0, 0.18, -0.02], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]], np.float32)

_ROUND_TRIP_SPACES = [
    "ACEScg",
    "sRGB Encoded Rec.709 (sRGB)",
    "ACES2065-1",
    "ACEScct",
    "Linear Rec.2020",
    "Linear P3-D65",
    "Gamma 2.2 Encoded Rec.709",
    "sRGB Encoded P3-D65",
    "CIE XYZ-D65 - Scene-referred",
]


# ----------------------------------------------------------------------------- colour spaces


def test_colorspace_names_are_the_builtin_config():
    names = colorspace_names()
    assert len(names) == 27
    for name in ("ACEScg", LINEAR_REC709, "sRGB Encoded Rec.709 (sRGB)", "Raw", "ACES2065-1"):
        assert name in names


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("ACEScg", "ACEScg"),
        ("acescg", "ACEScg"),
        ("lin_ap1_scene", "ACEScg"),  # alias, as OIIO writes it into EXR headers
        ("scene_linear", "ACEScg"),  # role
        ("data", "Raw"),  # role
        ("srgb_tx", "sRGB Encoded Rec.709 (sRGB)"),
        ("Utility - Linear - sRGB", LINEAR_REC709),
        ("linear", LINEAR_REC709),
        ("lin_rec709", LINEAR_REC709),
        ("  ACEScct ", "ACEScct"),
    ],
)
def test_check_colorspace_accepts_names_aliases_roles(given, canonical):
    assert check_colorspace(given) == canonical


@pytest.mark.parametrize("bad", ["ACEScgg", "rec709ish", "", "   "])
def test_unknown_colorspace_lists_valid_names(bad):
    with pytest.raises(ColorSpaceError) as info:
        check_colorspace(bad)
    message = str(info.value)
    assert repr(bad) in message  # named as given (a blank name is not stripped to '')
    assert "ACEScg" in message and LINEAR_REC709 in message
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_close_names_suggested():
    with pytest.raises(ColorSpaceError, match="Did you mean 'ACEScg'"):
        check_colorspace("ACEScgg")


def test_conversion_rejects_unknown_space():
    with pytest.raises(ColorSpaceError):
        to_linear_rec709(_HDR, "not a space")


@pytest.mark.parametrize("space", _ROUND_TRIP_SPACES)
def test_round_trip_keeps_hdr_and_negatives(space):
    encoded = from_linear_rec709(_HDR, space)
    assert encoded.shape == _HDR.shape and encoded.dtype == np.float32
    back = to_linear_rec709(encoded, space)
    assert back.dtype == np.float32
    # OCIO evaluates power curves with a fast approximation: ~5e-5 relative, far below half precision.
    np.testing.assert_allclose(back, _HDR, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", ["ACEScg", "sRGB Encoded Rec.709 (sRGB)"])
def test_encoded_values_are_not_clipped(space):
    rgb = np.array([[[4.0, -0.1, 0.5], [-1.0, 0.0, 0.0]]], np.float32)
    encoded = from_linear_rec709(rgb, space)
    assert encoded[0, 0].max() > 1.5  # 4.0 stays above 1
    assert encoded[0, 1, 0] < 0.0  # negative red stays negative (AP1 is wider, so -0.1 alone may not)
    np.testing.assert_allclose(to_linear_rec709(encoded, space), rgb, rtol=1e-4, atol=1e-5)


def test_srgb_encoding_known_values():
    # The sRGB curve: 0.18 -> 0.4614, 4.0 -> 1.055 * 4^(1/2.4) - 0.055 (not clamped to 1).
    rgb = np.array([[[0.18, 4.0, 0.0]]], np.float32)
    encoded = from_linear_rec709(rgb, "sRGB Encoded Rec.709 (sRGB)")[0, 0]
    np.testing.assert_allclose(encoded, [0.46135, 1.055 * 4.0 ** (1 / 2.4) - 0.055, 0.0], rtol=1e-4, atol=1e-6)


def test_acescg_matrix_known_values():
    # Rec.709 red in ACEScg (AP1), from the published Rec.709 -> AP1 matrix (Bradford D65 -> D60).
    red = from_linear_rec709(np.array([[[1.0, 0.0, 0.0]]], np.float32), "ACEScg")[0, 0]
    np.testing.assert_allclose(red, [0.6131, 0.0702, 0.0206], atol=2e-3)


@pytest.mark.parametrize("space", [LINEAR_REC709, "linear", "lin_rec709", "Raw"])
def test_identity_spaces_leave_pixels_bit_exact(space):
    pixels = _HDR * np.float32(1.0000001)
    np.testing.assert_array_equal(to_linear_rec709(pixels, space), pixels)
    np.testing.assert_array_equal(from_linear_rec709(pixels, space), pixels)


def test_conversion_is_per_pixel_on_larger_images():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-0.5, 8.0, (37, 53, 3)).astype(np.float32)
    back = to_linear_rec709(from_linear_rec709(rgb, "ACEScg"), "ACEScg")
    np.testing.assert_allclose(back, rgb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("src", "dst"), [("ACEScg", LINEAR_REC709), (LINEAR_REC709, "ACEScg"), ("ACES2065-1", LINEAR_REC709)]
)
def test_a_linear_transform_is_ocios_own_matrix(src, dst):
    # Scene-linear pairs run as one matrix; OCIO's processor (through an ImageBuf) is the reference.
    matrix = convert.linear_transform(src, dst)
    assert matrix is not None and matrix.shape == (3, 4)
    rng = np.random.default_rng(8)
    rgb = (rng.uniform(-1.0, 1.0, (40, 60, 3)) * np.logspace(-5, 3, 60)[None, :, None]).astype(np.float32)
    fast, ocio = (
        to_linear_rec709(rgb, src) if dst == LINEAR_REC709 else from_linear_rec709(rgb, dst),
        convert._ocio_convert(rgb, src, dst),
    )
    scale = np.abs(ocio).max(axis=-1, keepdims=True)
    assert np.all(np.abs(fast - ocio) <= 1e-6 * scale)


@pytest.mark.parametrize("space", ["sRGB Encoded Rec.709 (sRGB)", "ACEScct", "srgb_tx"])
def test_curves_are_not_taken_for_a_matrix(space):
    assert convert.linear_transform(space, LINEAR_REC709) is None
    assert convert.linear_transform(LINEAR_REC709, space) is None


# ----------------------------------------------------------------------------- luminance and Lab


def test_luminance_weights():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [2.0, 4.0, -1.0]]], np.float32)
    y = luminance(rgb)
    assert y.shape == (1, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], [0.2126, 0.7152, 0.0722, 0.4252 + 2.8608 - 0.0722], rtol=1e-6)


def test_lab_known_values():
    rgb = np.array([[[1.0, 1.0, 1.0], [0.18, 0.18, 0.18], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)
    lab = linear_rec709_to_lab(rgb)[0]
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(lab[1], [49.496, 0.0, 0.0], atol=1e-3)  # greys are exactly achromatic
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)  # sRGB red
    np.testing.assert_allclose(lab[3], [32.30, 79.19, -107.86], atol=0.1)  # sRGB blue


def test_lab_above_white_and_below_zero():
    lab = linear_rec709_to_lab(np.array([[[8.0, 8.0, 8.0], [-0.01, -0.01, -0.01]]], np.float32))[0]
    assert lab[0, 0] > 100.0
    assert lab[1, 0] < 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lab_round_trip_unclipped(dtype):
    rng = np.random.default_rng(1)
    rgb = np.concatenate([rng.uniform(-0.3, 12.0, (20, 20, 3)), rng.uniform(0.0, 1e-3, (20, 20, 3))]).astype(dtype)
    lab = linear_rec709_to_lab(rgb)
    assert lab.dtype == dtype and lab.shape == rgb.shape
    back = lab_to_linear_rec709(lab)
    assert back.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(back, rgb, rtol=tol, atol=tol)


def _lab_with_true_l(y: float, ab: np.ndarray, dtype) -> np.ndarray:
    """HxWx3 Lab whose L comes from luminance ``y`` and whose ab is ``ab`` (HxWx2)."""
    lab_l = lab_l_from_y(np.full(ab.shape[:2], y, np.float64))
    return np.concatenate([lab_l[..., None], ab], axis=-1).astype(dtype)


@pytest.mark.parametrize("y", [8.0, 1e-4, 0.18, 1.0, 100.0, 1e-6, 0.005])
def test_luminance_exact_for_any_ab_float64(y):
    ab = np.random.default_rng(2).uniform(-200.0, 200.0, (64, 64, 2))
    rgb = lab_to_linear_rec709(_lab_with_true_l(y, ab, np.float64))
    np.testing.assert_allclose(luminance(rgb), y, rtol=1e-10)


@pytest.mark.parametrize(("y", "ab_range"), [(8.0, 128.0), (1.0, 128.0), (0.18, 128.0), (0.01, 128.0), (1e-4, 16.0)])
def test_luminance_exact_float32(y, ab_range):
    # float32 output can hold Y only as exactly as its components: at Y=1e-4 an ab of 128 makes
    # R, G, B ~600x larger than Y, so the float32 case is checked for the chroma range that such
    # dark pixels really have; the float64 test above covers every ab.
    ab = np.random.default_rng(3).uniform(-ab_range, ab_range, (64, 64, 2))
    rgb = lab_to_linear_rec709(_lab_with_true_l(y, ab, np.float32))
    assert rgb.dtype == np.float32
    y_back = rgb.astype(np.float64) @ np.asarray(convert.LUMA_WEIGHTS)
    assert np.abs(y_back / y - 1.0).max() < 1e-5


def test_luminance_exact_through_recolouring():
    # The pipeline's path: Y of a plate pixel, ab from elsewhere -> RGB with that same Y.
    rng = np.random.default_rng(4)
    plate = rng.uniform(0.0, 6.0, (16, 16, 3))
    other = rng.uniform(0.0, 1.0, (16, 16, 3))
    y = luminance(plate)
    lab = np.concatenate([lab_l_from_y(y)[..., None], linear_rec709_to_lab(other)[..., 1:]], axis=-1)
    np.testing.assert_allclose(luminance(lab_to_linear_rec709(lab)), y, rtol=1e-10)


def test_l_from_y_linear_segment_and_inverse():
    eps = 216.0 / 24389.0
    ys = np.concatenate(
        [np.linspace(-0.05, 0.05, 2001), [eps, eps * (1 - 1e-12), eps * (1 + 1e-12)], np.logspace(-8, 3, 200)]
    )
    lab_l = lab_l_from_y(ys)
    np.testing.assert_allclose(y_from_lab_l(lab_l), ys, rtol=1e-10, atol=1e-15)
    assert np.all(np.diff(lab_l_from_y(np.sort(ys))) >= 0)  # monotone through the segment switch
    np.testing.assert_allclose(lab_l_from_y(np.array([eps * (1 - 1e-12)])), lab_l_from_y(np.array([eps])), atol=1e-8)
    np.testing.assert_allclose(lab_l_from_y(np.array([1e-4])), [24389.0 / 27.0 * 1e-4], rtol=1e-12)
    np.testing.assert_allclose(lab_l_from_y(np.array([1.0, 8.0])), [100.0, 216.0], atol=1e-9)


def test_l_from_y_keeps_float32():
    assert lab_l_from_y(np.array([0.5], np.float32)).dtype == np.float32


def _hdr_rgb(seed: int) -> np.ndarray:
    """Bright, dark (f's linear segment), negative and near-black pixels, float32."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.uniform(-0.3, 12.0, (30, 40, 3)),
            rng.uniform(0.0, 1e-3, (30, 40, 3)),
            rng.uniform(-1e-4, 1e-4, (30, 40, 3)),
        ]
    ).astype(np.float32)


def test_plate_lab_ab_matches_the_float64_reference():
    rgb = _hdr_rgb(9)
    ab = plate_lab.linear_to_ab(rgb)
    assert ab.shape == (90, 40, 2) and ab.dtype == np.float32 and ab.flags.c_contiguous
    np.testing.assert_allclose(ab, linear_rec709_to_lab(rgb.astype(np.float64))[..., 1:], rtol=1e-5, atol=5e-4)


def test_plate_lab_to_linear_matches_the_float64_reference():
    lab = linear_rec709_to_lab(_hdr_rgb(10).astype(np.float64))
    rgb = plate_lab.lab_to_linear(lab[..., 0].astype(np.float32), lab[..., 1:].astype(np.float32))
    assert rgb.shape == (90, 40, 3) and rgb.dtype == np.float32
    reference = lab_to_linear_rec709(lab.astype(np.float32).astype(np.float64))
    # Within float32 rounding of the pixel's largest channel, dark pixels too (f's linear segment).
    scale = np.abs(reference).max(axis=-1, keepdims=True)
    assert np.all(np.abs(rgb - reference) <= 3e-6 * scale)
    y = lab_l_from_y(np.array([0.18, 1e-5], np.float32))
    back = plate_lab.lab_to_linear(y[:, None], np.array([[[60.0, -40.0]], [[3.0, -2.0]]], np.float32))
    np.testing.assert_allclose(back.astype(np.float64) @ np.asarray(convert.LUMA_WEIGHTS), [[0.18], [1e-5]], rtol=5e-5)


@pytest.mark.parametrize("space", ["ACEScg", "sRGB Encoded Rec.709 (sRGB)", LINEAR_REC709])
def test_plate_lab_through_a_plate_space_matches_the_reference_path(space):
    # The pipeline's reference path: OCIO to linear, then the float64 Lab maths (and back).
    plate = from_linear_rec709(_hdr_rgb(11), space)
    reference_lab = linear_rec709_to_lab(to_linear_rec709(plate, space).astype(np.float64))
    np.testing.assert_allclose(plate_lab.ab_of_plate(plate, space), reference_lab[..., 1:], rtol=1e-5, atol=5e-4)
    lab = reference_lab.astype(np.float32)
    reference = from_linear_rec709(lab_to_linear_rec709(lab), space)
    scale = np.abs(reference).max(axis=-1, keepdims=True)
    # 3e-6 of the pixel in linear light; an encoding curve's slope (sRGB: 12.92 near black) scales it up.
    tolerance = 1e-4 if "sRGB Encoded" in space else 3e-6
    assert np.all(np.abs(plate_lab.plate_from_lab(lab[..., 0], lab[..., 1:], space) - reference) <= tolerance * scale)


@pytest.mark.parametrize("space", ["ACEScg", "sRGB Encoded Rec.709 (sRGB)", LINEAR_REC709])
def test_plate_l_reads_only_the_colour_channels_and_matches_the_reference_path(space):
    # A plate's L straight from its channels (R, G, B among A and a depth pass of +inf; a gray plate's Y) equals
    # OCIO to linear, then luminance and L in float64.
    rgb = from_linear_rec709(_hdr_rgb(12), space)
    depth = np.full(rgb.shape[:2] + (1,), np.inf, np.float32)
    plate = np.concatenate([rgb, np.ones_like(depth), depth], axis=-1)
    reference = lab_l_from_y(convert.luminance(to_linear_rec709(rgb, space).astype(np.float64)))
    lab_l = plate_lab.lab_l_of_plate(plate, (0, 1, 2), space)
    np.testing.assert_allclose(lab_l, reference, rtol=1e-5, atol=2e-5)
    # The same bits from the plate sent as RGB alone (in-band) or stored B, G, R: embedded and server runs agree.
    assert np.array_equal(plate_lab.lab_l_of_plate(np.ascontiguousarray(rgb), (0, 1, 2), space), lab_l)
    assert np.array_equal(plate_lab.lab_l_of_plate(np.ascontiguousarray(rgb[..., ::-1]), (2, 1, 0), space), lab_l)
    gray = np.concatenate([depth, rgb[..., 1:2]], axis=-1)  # channels (Z, Y)
    reference = lab_l_from_y(convert.luminance(to_linear_rec709(np.repeat(rgb[..., 1:2], 3, -1), space).astype(float)))
    np.testing.assert_allclose(plate_lab.lab_l_of_plate(gray, (1, 1, 1), space), reference, rtol=1e-5, atol=2e-5)


# ----------------------------------------------------------------------------- torch Lab


def _to_nchw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]


def test_torch_lab_matches_numpy():
    rng = np.random.default_rng(5)
    rgb = rng.uniform(-0.2, 9.0, (12, 10, 3))
    lab_np = linear_rec709_to_lab(rgb)
    lab_t = linear_rec709_to_lab_t(_to_nchw(rgb))
    assert lab_t.shape == (1, 3, 12, 10) and lab_t.dtype == torch.float64
    np.testing.assert_allclose(lab_t[0].numpy().transpose(1, 2, 0), lab_np, rtol=1e-10, atol=1e-9)
    back = lab_to_linear_rec709_t(lab_t)
    np.testing.assert_allclose(back[0].numpy().transpose(1, 2, 0), rgb, rtol=1e-10, atol=1e-10)


def test_torch_lab_float32_batch_round_trip():
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 5.0 - 0.1
    lab = linear_rec709_to_lab_t(rgb)
    assert lab.dtype == torch.float32 and torch.isfinite(lab).all()
    torch.testing.assert_close(lab_to_linear_rec709_t(lab), rgb, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("y", [8.0, 1e-4, 0.18])
def test_torch_luminance_exact(y):
    ab = torch.empty(1, 2, 16, 16, dtype=torch.float64).uniform_(-128, 128, generator=torch.Generator().manual_seed(1))
    lab_l = lab_l_from_y(torch.full((1, 1, 16, 16), y, dtype=torch.float64))
    rgb = lab_to_linear_rec709_t(torch.cat([lab_l, ab], dim=1))
    weights = torch.tensor(convert.LUMA_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(
        (rgb * weights).sum(dim=1), torch.full((1, 16, 16), y, dtype=torch.float64), rtol=1e-10, atol=0
    )


def test_torch_l_helpers_match_numpy():
    ys = np.array([-0.01, 0.0, 1e-4, 0.0088, 0.5, 8.0])
    np.testing.assert_allclose(lab_l_from_y(torch.from_numpy(ys)).numpy(), lab_l_from_y(ys), rtol=1e-12)
    ls = lab_l_from_y(ys)
    np.testing.assert_allclose(y_from_lab_l(torch.from_numpy(ls)).numpy(), ys, rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------------------- chroma upsampling


def _edge_scene(height=64, width=64, edge=37):
    """Full-res L with a vertical luminance edge at column ``edge`` and chroma that changes there."""
    lab_l = np.full((height, width), 20.0, np.float32)
    lab_l[:, edge:] = 80.0
    ab = np.zeros((height, width, 2), np.float32)
    ab[:, edge:, 0] = 50.0
    ab[:, :edge, 1] = -30.0
    return lab_l, ab


@pytest.mark.parametrize("method", ["bilinear", "guided"])
def test_upsample_shapes(method):
    lab_l, ab = _edge_scene()
    small = cv2.resize(ab, (16, 16), interpolation=cv2.INTER_AREA)
    up = upsample_chroma(small, lab_l, method=method)
    assert up.shape == (64, 64, 2) and up.dtype == np.float32
    chw = upsample_chroma(np.ascontiguousarray(small.transpose(2, 0, 1)), lab_l, method=method)
    np.testing.assert_allclose(chw, up, atol=1e-5)


def test_guided_keeps_chroma_edge_sharper_than_bilinear():
    lab_l, ab = _edge_scene()
    small = cv2.resize(ab, (16, 16), interpolation=cv2.INTER_AREA)  # edge falls inside a small pixel
    band = slice(30, 44)  # columns around the edge
    errors = {}
    for method in ("bilinear", "guided"):
        up = upsample_chroma(small, lab_l, method=method)
        errors[method] = np.abs(up[:, band] - ab[:, band]).mean()
    assert errors["guided"] < 0.25 * errors["bilinear"]
    assert errors["guided"] < 1.0  # ab units


def test_guided_keeps_flat_chroma_flat():
    lab_l = np.random.default_rng(6).uniform(0.0, 150.0, (40, 48)).astype(np.float32)
    small = np.empty((10, 12, 2), np.float32)
    small[..., 0], small[..., 1] = 12.5, -40.0
    up = upsample_chroma(small, lab_l, method="guided", radius=1, eps=1e-3)
    np.testing.assert_allclose(up[..., 0], 12.5, atol=1e-3)
    np.testing.assert_allclose(up[..., 1], -40.0, atol=1e-3)


def _reference_guided_upsample(ab_small, lab_l_full, radius=1, eps=1e-3):
    """The guided upsampling with back-projection as first written (a guide L/100 frame, one model per
    channel, stacked): the reference the float32 version is checked against."""

    def box(x):
        return cv2.boxFilter(x, -1, (2 * radius + 1,) * 2, normalize=True, borderType=cv2.BORDER_REFLECT)

    full, small = lab_l_full.shape[::-1], ab_small.shape[1::-1]
    guide = lab_l_full / 100.0
    guide_small = cv2.resize(guide, small, interpolation=cv2.INTER_AREA)
    mean_i = box(guide_small)
    var_i = box(guide_small * guide_small) - mean_i * mean_i
    channels = []
    for c in range(2):
        p = ab_small[..., c]
        mean_p = box(p)
        a = (box(guide_small * p) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        channels.append(cv2.resize(box(a), full) * guide + cv2.resize(box(b), full))
    up = np.stack(channels, axis=-1)
    return up + cv2.resize(ab_small - cv2.resize(up, small, interpolation=cv2.INTER_AREA), full)


def test_guided_upsample_matches_the_reference():
    rng = np.random.default_rng(12)
    lab_l = cv2.GaussianBlur(rng.uniform(0.0, 180.0, (270, 480)).astype(np.float32), (0, 0), 2.0)
    ab_small = cv2.GaussianBlur(rng.uniform(-120.0, 120.0, (45, 80, 2)).astype(np.float32), (0, 0), 1.0)
    up = upsample_chroma(ab_small, lab_l, method="guided")
    assert up.shape == (270, 480, 2) and up.dtype == np.float32 and up.flags.c_contiguous
    np.testing.assert_allclose(up, _reference_guided_upsample(ab_small, lab_l), rtol=1e-4, atol=1e-3)


def test_guided_upsample_takes_the_working_luminance_given():
    """The small guide a caller already has (``Prepared.L_work``: resize_hw of L, INTER_AREA) gives bit for bit
    what resizing L here gives; one of another size is refused."""
    rng = np.random.default_rng(13)
    lab_l = cv2.GaussianBlur(rng.uniform(0.0, 180.0, (270, 480)).astype(np.float32), (0, 0), 2.0)
    ab_small = cv2.GaussianBlur(rng.uniform(-120.0, 120.0, (45, 80, 2)).astype(np.float32), (0, 0), 1.0)
    given = upsample_chroma(ab_small, lab_l, method="guided", lab_l_small=resize_hw(lab_l, 80, 45))
    assert np.array_equal(given, upsample_chroma(ab_small, lab_l, method="guided"))
    with pytest.raises(ValueError, match="lab_l_small"):
        upsample_chroma(ab_small, lab_l, method="guided", lab_l_small=resize_hw(lab_l, 96, 54))


def test_upsample_rejects_bad_input():
    lab_l, _ = _edge_scene()
    with pytest.raises(ValueError, match="method"):
        upsample_chroma(np.zeros((8, 8, 2), np.float32), lab_l, method="nearest")
    with pytest.raises(ValueError, match="chroma"):
        upsample_chroma(np.zeros((8, 8, 3), np.float32), lab_l)
