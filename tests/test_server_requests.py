"""The request parsers on their own: a header (and buffers) in, a typed request or a ProtocolError naming
the field out. No server, no threads, no sockets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError
from colorprop_server import requests as R
from colorprop_server.logs import TextFormatter, loggable
from colorprop_server.config import ServerConfig
from colorprop_server.paths import AllowedRoots

CONFIG = ServerConfig(max_frames_per_shot=100, max_frame_pixels=64 * 64)
NO_ROOTS = AllowedRoots(())


def _msg(type_: str, arrays: dict | None = None, **fields) -> P.Message:
    return P.decode(P.encode(type_, "rid", arrays, **fields), expect=P.REQUEST_TYPES)


def _known_method(name: str) -> None:
    from colorprop.errors import InputError

    if name != "flow":
        raise InputError(f"method {name!r} is not available")


def _open(arrays=None, **fields) -> R.OpenShot:
    head = {"job": "job-1", "mode": P.MODE_INBAND, "frames": [3, 1, 2], "keys": [1], "options": {"method": "flow"}}
    head.update(fields)
    if arrays is None:
        arrays = {"key1": np.full((8, 12, 3), 0.5, np.float16)}
    return R.parse_open(_msg(P.OPEN_SHOT, arrays, **head), CONFIG, NO_ROOTS, _known_method)


def _refused(call, code: str, field: str) -> str:
    with pytest.raises(ProtocolError) as err:
        call()
    assert (err.value.code, err.value.field) == (code, field)
    return str(err.value)


def test_an_inband_open_becomes_a_typed_request_with_its_keys_held_at_float32():
    req = _open(carry_dtype="float16", colorspace="ACEScg")
    assert (req.job, req.mode, req.frames, req.colorspace, req.seq_base) == (
        "job-1",
        P.MODE_INBAND,
        [1, 2, 3],
        "ACEScg",
        0,
    )
    assert req.options.method == "flow" and req.key_frames == [1]
    assert isinstance(req.shot, R.InbandShot) and req.shot.shape == (8, 12) and req.shot.carry is np.float16
    key = req.shot.keys[1]
    assert key.pixels.dtype == np.float32 and key.colorspace == "ACEScg"
    assert req.shot.key_bytes == 8 * 12 * 3 * 4  # sent as half floats, held (and counted) as float32


@pytest.mark.parametrize(
    "fields, code, field, says",
    [
        ({"job": "a\x1b[31mred"}, P.E_BAD_INPUT, "job", "1-64 characters"),
        ({"job": "x" * 65}, P.E_BAD_INPUT, "job", "1-64 characters"),
        ({"mode": "ftp"}, P.E_BAD_INPUT, "mode", "mode must be one of"),
        ({"frames": [1, 1]}, P.E_BAD_INPUT, "frames", "distinct integers"),
        ({"frames": [1, 10**9]}, P.E_BAD_INPUT, "frames", "at most 9 digits"),
        ({"frames": list(range(101))}, P.E_BAD_INPUT, "frames", "1..100"),
        ({"options": [1]}, P.E_BAD_INPUT, "options", "must be an object"),
        ({"options": {"method": "magic"}}, P.E_BAD_INPUT, "options", "magic"),
        ({"colorspace": 7}, P.E_BAD_INPUT, "colorspace", "string or null"),
        ({"seq_base": -1}, P.E_BAD_INPUT, "seq_base", "non-negative"),
        ({"keys": [9]}, P.E_BAD_INPUT, "buffers", "key<frame>"),
        ({"carry_dtype": "int8"}, P.E_BAD_INPUT, "carry_dtype", "float32 or float16"),
    ],
)
def test_a_bad_open_field_is_named_with_its_code(fields, code, field, says):
    assert says in _refused(lambda: _open(**fields), code, field)


def test_bad_keys_are_refused_by_shape_size_and_value():
    nan = np.zeros((8, 12, 3), np.float32)
    nan[2, 3, 1] = np.nan
    assert "HxWx3" in _refused(lambda: _open({"key1": np.zeros((8, 12, 4), np.float32)}), P.E_PIXELS, "shape")
    assert "pixel limit" in _refused(lambda: _open({"key1": np.zeros((65, 64, 3), np.float32)}), P.E_TOO_LARGE, "shape")
    assert "key 1" in _refused(lambda: _open({"key1": nan}), P.E_PIXELS, "keys")
    two = {"key1": np.zeros((8, 12, 3), np.float32), "key3": np.zeros((8, 10, 3), np.float32)}
    assert "differs" in _refused(lambda: _open(two, keys=[1, 3]), P.E_PIXELS, "shape")


def test_a_shared_path_open_on_a_server_without_roots_is_a_path_refusal():
    _refused(
        lambda: _open({}, mode=P.MODE_PATHS, input="/a/p.####.exr", output="/b/o.####.exr", keys={"1": "/a/k.exr"}),
        P.E_PATH,
        "mode",
    )


def test_shared_paths_outside_the_roots_and_huge_tokens_are_refused(tmp_path):
    roots = AllowedRoots((str(tmp_path),))

    def paths_open(**fields):
        head = {
            "job": "j",
            "mode": P.MODE_PATHS,
            "frames": [1, 2],
            "options": {"method": "flow"},
            "input": f"{tmp_path}/p.####.exr",
            "output": f"{tmp_path}/o.####.exr",
            "keys": {"1": f"{tmp_path}/k.exr"},
        }
        head.update(fields)
        return R.parse_open(_msg(P.OPEN_SHOT, None, **head), CONFIG, roots, _known_method)

    (tmp_path / "k.exr").write_bytes(b"not read here")
    req = paths_open(pixel_type="float")
    assert isinstance(req.shot, R.PathsShot) and req.shot.keys == {1: f"{tmp_path}/k.exr"}
    assert (req.shot.pixel_type, req.shot.skip_existing, req.shot.key_bytes) == ("float", False, 0)
    _refused(lambda: paths_open(output="/etc/o.####.exr"), P.E_PATH, "path")
    assert "at most 16" in _refused(lambda: paths_open(input=f"{tmp_path}/p.%099d.exr"), P.E_BAD_INPUT, "input")
    _refused(lambda: paths_open(keys={"one": f"{tmp_path}/k.exr"}), P.E_BAD_INPUT, "keys")
    _refused(lambda: paths_open(skip_existing="yes"), P.E_BAD_INPUT, "skip_existing")


def _frame(pixels, **fields) -> R.FrameIn:
    head = {"job": "j", "frame": 2, "channels": ["R", "G", "B"]}
    head.update(fields)
    return R.parse_frame(_msg(P.FRAME, {"pixels": pixels}, **head), {1, 2, 3}, (4, 5))


def test_a_frame_is_parsed_and_counted_at_float32():
    req = _frame(np.zeros((4, 5, 3), np.float16), colorspace="ACEScg")
    assert (req.frame, req.channels, req.colorspace, req.held_bytes) == (2, ("R", "G", "B"), "ACEScg", 4 * 5 * 3 * 4)


def test_bad_frames_name_the_field():
    ok = np.zeros((4, 5, 3), np.float32)
    assert "not a frame of this shot" in _refused(lambda: _frame(ok, frame=9), P.E_BAD_INPUT, "frame")
    assert "differs from the shot's 5x4" in _refused(
        lambda: _frame(np.zeros((5, 4, 3), np.float32)), P.E_PIXELS, "shape"
    )
    assert "neither R,G,B nor Y" in _refused(lambda: _frame(ok, channels=["X", "Y2", "Z"]), P.E_BAD_INPUT, "channels")
    inf = ok.copy()
    inf[0, 0, 0] = np.inf
    _refused(lambda: _frame(inf), P.E_PIXELS, "pixels")


def test_a_fetch_is_clamped_to_the_server_limits():
    req = R.parse_fetch(_msg(P.FETCH, job="j", after=4, wait_ms=10**9, max_events=10**6), CONFIG)
    assert (req.after, req.wait_s, req.max_events) == (4, CONFIG.max_wait_ms / 1000, CONFIG.max_events_per_fetch)
    assert "after must be an integer" in _refused(
        lambda: R.parse_fetch(_msg(P.FETCH, job="j", after=-2), CONFIG), P.E_BAD_INPUT, "after"
    )


def test_loggable_escapes_control_characters_and_keeps_printable_text():
    assert loggable("job-é 1") == "job-é 1"
    assert loggable("a\x1b[31mb\nc") == "a\\x1b[31mb\\nc"


def test_a_text_log_line_carries_no_control_character_whatever_the_message_or_field():
    """Any client-chosen text (a path in an error, a colour space, a key name) may reach a message or a field."""
    record = logging.LogRecord("colorprop_server", logging.ERROR, __file__, 1, "bad \x1b[2Jplate\x9b1m", None, None)
    record.colorprop_fields = {"path": "/shows/\x1b]0;owned\x07a.exr", "job": "j1", "note": "two words"}
    line = TextFormatter().format(record)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
    assert "bad \\x1b[2Jplate\\x9b1m" in line and "job=j1" in line and 'note="two words"' in line
