"""convert.map_row_bands: a per-pixel function over bands of rows on the band pool, each band written into one
result as it is done; the same numbers as the function over the whole frame."""

from __future__ import annotations

import numpy as np

from colorprop.colour import convert, plate_lab


def _frame(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 4.0, (height, width, channels)).astype(np.float32)


def test_bands_give_the_whole_frames_result_bit_for_bit():
    rgb, plane = _frame(203, 64, 3), _frame(203, 64, 1, seed=1)[..., 0]  # 203 rows: the last band is short

    def per_pixel(colour: np.ndarray, gray: np.ndarray) -> np.ndarray:
        return colour * np.float32(0.5) + gray[..., None]

    banded = convert.map_row_bands(per_pixel, rgb, plane, band_rows=16)
    assert banded.shape == rgb.shape and banded.dtype == np.float32 and banded.flags.c_contiguous
    assert np.array_equal(banded.view(np.uint32), per_pixel(rgb, plane).view(np.uint32))


def test_a_tuple_of_results_of_other_shapes_and_types_is_banded_alike():
    rgb = _frame(100, 48, 3)

    def split(colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return colour[..., 0] - colour[..., 1], colour.astype(np.float16)

    first, second = convert.map_row_bands(split, rgb, band_rows=9)
    whole = split(rgb)
    assert first.shape == (100, 48) and second.dtype == np.float16 and second.shape == (100, 48, 3)
    assert np.array_equal(first, whole[0]) and np.array_equal(second.view(np.uint16), whole[1].view(np.uint16))


def test_a_frame_of_one_band_is_the_functions_own_result():
    rgb = _frame(10, 8, 3)
    assert convert.map_row_bands(lambda colour: colour, rgb, band_rows=16) is rgb


def test_banded_lab_equals_the_same_bands_concatenated():
    # the kernels the pipeline bands (plate_lab) give, band by band, what each band gives on its own
    rgb = _frame(257, 130, 3, seed=3)
    rows = 32
    banded = convert.map_row_bands(plate_lab.linear_to_ab, rgb, band_rows=rows)
    alone = np.concatenate([plate_lab.linear_to_ab(rgb[y : y + rows]) for y in range(0, 257, rows)])
    assert np.array_equal(banded.view(np.uint32), alone.view(np.uint32))
