"""The wire protocol on its own: strict decoding, typed errors, no pickle, a numpy-only module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

REPO = Path(__file__).resolve().parents[1]


def _frames_bytes(frames):
    return [bytes(f) for f in frames]


def test_round_trip_keeps_arrays_and_fields():
    rgb = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32) * 40 - 3  # HDR and negatives survive
    half = rgb.astype(np.float16)
    frames = P.encode(
        P.FRAME,
        "r1",
        [("pixels", rgb), ("half", half)],
        job="j",
        frame=12,
        channels=["R", "G", "B"],
        colorspace="ACEScg",
    )
    msg = P.decode(_frames_bytes(frames))
    assert (msg.type, msg.id, msg.get("frame"), msg.get("colorspace")) == (P.FRAME, "r1", 12, "ACEScg")
    assert msg.header["total_bytes"] == rgb.nbytes + half.nbytes
    np.testing.assert_array_equal(msg.arrays["pixels"], rgb)
    np.testing.assert_array_equal(msg.arrays["half"], half)
    assert msg.arrays["half"].dtype == np.float16


def test_encode_refuses_unsupported_dtypes_and_non_finite_header_values():
    with pytest.raises(ProtocolError) as err:
        P.encode(P.FRAME, "r", [("pixels", np.zeros((2, 2, 3), np.int64))])
    assert err.value.code == P.E_BAD_INPUT
    with pytest.raises(ValueError):
        P.encode(P.PING, "r", value=float("nan"))


def _header(**over):
    h = {"v": P.PROTOCOL_VERSION, "type": P.PING, "id": "abc", "buffers": [], "total_bytes": 0}
    h.update(over)
    return json.dumps(h).encode()


BUF = {"name": "pixels", "shape": [2, 2, 3], "dtype": "float32", "nbytes": 48}


@pytest.mark.parametrize(
    "frames, code, field",
    [
        ([], P.E_PROTOCOL, None),
        ([b"\xff\xfe"], P.E_PROTOCOL, None),
        ([b"[1,2]"], P.E_PROTOCOL, None),
        ([b'{"v":1,"type":"ping","id":"a","x":NaN}'], P.E_PROTOCOL, None),
        ([_header(v=P.PROTOCOL_VERSION + 1)], P.E_VERSION, "v"),
        ([_header(v="1")], P.E_PROTOCOL, "v"),
        ([_header(type="eval")], P.E_PROTOCOL, "type"),
        ([_header(id=7)], P.E_PROTOCOL, "id"),
        ([_header(total_bytes=1 << 40, buffers=[dict(BUF, nbytes=1 << 40)])], P.E_TOO_LARGE, "total_bytes"),
        ([_header(buffers=[BUF], total_bytes=48)], P.E_PROTOCOL, "buffers"),  # buffer frame missing
        ([_header(buffers=[BUF], total_bytes=48), b"x" * 47], P.E_BAD_INPUT, "buffers"),  # truncated buffer
        ([_header(buffers=[BUF], total_bytes=40), b"x" * 48], P.E_PROTOCOL, "total_bytes"),
        ([_header(buffers=[dict(BUF, nbytes=40)], total_bytes=40), b"x" * 40], P.E_BAD_INPUT, "buffers[0].nbytes"),
        (
            [_header(buffers=[dict(BUF, dtype="float64", nbytes=96)], total_bytes=96), b"x" * 96],
            P.E_BAD_INPUT,
            "buffers[0].dtype",
        ),
        ([_header(buffers=[dict(BUF, dtype="O")], total_bytes=48), b"x" * 48], P.E_BAD_INPUT, "buffers[0].dtype"),
        ([_header(buffers=[dict(BUF, shape=[2, -2, 3])], total_bytes=48), b"x" * 48], P.E_PROTOCOL, "buffers[0].shape"),
        ([_header(buffers=[BUF, BUF], total_bytes=96), b"x" * 48, b"x" * 48], P.E_PROTOCOL, "buffers[1].name"),
        ([b"{" + b" " * (P.MAX_HEADER_BYTES + 1) + b"}"], P.E_TOO_LARGE, None),
        ([_header()] + [b""] * (P.MAX_BUFFERS + 1), P.E_TOO_LARGE, None),
    ],
)
def test_malformed_messages_raise_typed_errors(frames, code, field):
    with pytest.raises(ProtocolError) as err:
        P.decode(frames, max_message_bytes=1 << 20)
    assert err.value.code == code
    assert err.value.field == field


def test_declared_total_is_checked_before_any_buffer_is_looked_at():
    # Declared 2 MiB against a 1 MiB limit: refused from the header alone.
    desc = dict(BUF, shape=[512, 512, 2], nbytes=512 * 512 * 2 * 4)
    with pytest.raises(ProtocolError) as err:
        P.decode([_header(buffers=[desc], total_bytes=desc["nbytes"])], max_message_bytes=1 << 20)
    assert err.value.code == P.E_TOO_LARGE


def test_request_id_is_recovered_for_error_replies():
    assert P.peek_request_id(_header(v=99, id="req-7")) == "req-7"
    assert P.peek_request_id(b"\x00garbage") is None


def test_check_finite_names_what_is_wrong():
    a = np.zeros((4, 4, 3), np.float32)
    P.check_finite(a, "frame 3")
    a[1, 1, 1] = np.inf
    a[2, 2, 2] = np.nan
    with pytest.raises(ProtocolError) as err:
        P.check_finite(a, "frame 3")
    assert err.value.code == P.E_PIXELS and "frame 3" in str(err.value) and "2 NaN/Inf" in str(err.value)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=20))
def test_decode_of_random_frames_only_ever_raises_protocol_error(frames):
    try:
        P.decode(frames, max_message_bytes=1 << 16)
    except ProtocolError:
        pass


def test_no_pickle_or_eval_anywhere_on_the_wire_path():
    for path in [*(REPO / "plugin" / "colorprop_client").glob("*.py"), *(REPO / "server").glob("*.py")]:
        text = path.read_text()
        for word in ("pickle", "eval(", "exec(", "allow_pickle", "recv_pyobj", "send_pyobj", "marshal"):
            assert word not in text, f"{path.name} mentions {word}"


def test_client_imports_with_numpy_and_zmq_only():
    code = (
        "import sys; import colorprop_client.client, colorprop_client.protocol; "
        "bad = [m for m in ('torch', 'OpenImageIO', 'cv2', 'colorprop', 'colorprop_server') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_protocol_module_imports_stdlib_and_numpy_only():
    code = (
        "import sys, importlib.util; spec = importlib.util.spec_from_file_location('p', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m); "
        "print('zmq' in sys.modules); sys.exit(1 if 'zmq' in sys.modules else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "plugin" / "colorprop_client" / "protocol.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
