"""EXR reader fuzz: seeded mutants of a small plate are read back as a Plate or refused with
ExrReadError (exit 3, naming the file); never another exception, never a hang. Header names and string values
with bytes that are not UTF-8 are refused when read, and `colorize` on such plates and keys exits 3 naming the
file, on every path (the pre-flight reads every header).

CI runs a few hundred mutants. A longer run is a command::

    .venv/bin/python tests/test_exr_fuzz.py --count 60000 [--seed 7]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from colorprop.errors import ExrReadError
from colorprop.io.exr import read_exr, write_exr

HEADER_BYTES = 600  # the header of the seed file ends before this (attributes, channel list, offsets)


def seed_file(folder: Path) -> bytes:
    """A small RGBA + Z plate with string metadata: many header strings for the mutants to break."""
    rng = np.random.default_rng(0)
    path = folder / "seed.exr"
    write_exr(
        path,
        rng.random((12, 20, 5), dtype=np.float32),
        ("R", "G", "B", "A", "Z"),
        pixel_type="half",
        extra_metadata={"comment": "colorprop fuzz seed", "owner": "tests"},
    )
    return path.read_bytes()


def mutant(data: bytes, rng: random.Random) -> bytes:
    """One mutation: bytes set to 0xff / 0x00 / random (mostly in the header), a cut, or an insertion."""
    out = bytearray(data)
    kind = rng.random()
    if kind < 0.75:
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(min(len(out), HEADER_BYTES)) if rng.random() < 0.85 else rng.randrange(len(out))
            out[pos] = rng.choice((0xFF, 0x00, rng.randrange(256)))
    elif kind < 0.9:
        del out[rng.randrange(len(out)) :]
    else:
        pos = rng.randrange(min(len(out), HEADER_BYTES))
        out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(out)


def header_strings(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of the header's texts: every attribute name, every string value and every channel
    name (the EXR header: name NUL, type NUL, int32 size, value; a channel list is name NUL + 16 bytes per
    channel, then NUL)."""
    spans, pos = [], 8  # magic number and version
    while data[pos] != 0:
        name_end = data.index(b"\0", pos)
        type_end = data.index(b"\0", name_end + 1)
        kind = data[name_end + 1 : type_end]
        size = int.from_bytes(data[type_end + 1 : type_end + 5], "little")
        value = type_end + 5
        spans.append((pos, name_end))
        if kind == b"string":
            spans.append((value, value + size))
        elif kind == b"chlist":
            at = value
            while data[at] != 0:
                end = data.index(b"\0", at)
                spans.append((at, end))
                at = end + 1 + 16
        pos = value + size
    return [(a, b) for a, b in spans if b > a]


def not_utf8_mutant(data: bytes, spans: list[tuple[int, int]], rng: random.Random) -> bytes:
    """One byte of a header name or string value (a random one of ``spans``) set to 0x80..0xff: never UTF-8 text
    between ASCII bytes; the header stays well-formed."""
    out = bytearray(data)
    start, end = rng.choice(spans)
    out[rng.randrange(start, end)] = rng.randrange(0x80, 0x100)
    return bytes(out)


def run(count: int, seed: int, folder: Path) -> collections.Counter:
    """Read ``count`` mutants; returns counts by outcome. Any exception but ExrReadError propagates,
    with the mutant kept on disk and named in the message."""
    data = seed_file(folder)
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    path = folder / "mutant.exr"
    for i in range(count):
        path.write_bytes(mutant(data, rng))
        try:
            read_exr(path)
            outcomes["read"] += 1
        except ExrReadError as err:
            assert str(path) in str(err)
            outcomes["refused"] += 1
        except BaseException as err:
            keep = folder / f"crash-{seed}-{i}.exr"
            path.rename(keep)
            raise AssertionError(f"mutant {i} (seed {seed}, kept as {keep}): {type(err).__name__}: {err}") from err
    return outcomes


def test_three_hundred_header_mutants_read_or_refused_cleanly(tmp_path):
    outcomes = run(300, seed=16, folder=tmp_path)
    assert sum(outcomes.values()) == 300
    assert outcomes["refused"] >= 100, outcomes  # the mutants do break headers, so the test tests something


def header_texts(plate) -> list[str]:
    return [*plate.channels, *plate.metadata, *(v for v in plate.metadata.values() if isinstance(v, str))]


def test_every_header_string_with_a_byte_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    """Each attribute name, string value and channel name of the seed, one non-UTF-8 byte in it: ExrReadError
    naming the file (OpenImageIO hands such bytes over as lone surrogates, which crashed later steps), or, where
    OpenEXR drops the attribute (a standard attribute's name mangled), a plate whose texts are all UTF-8."""
    data = seed_file(tmp_path)
    spans = header_strings(data)
    texts = {data[a:b] for a, b in spans}
    assert {b"channels", b"comment", b"colorprop fuzz seed", b"owner", b"tests", b"R", b"Z"} <= texts, texts
    rng = random.Random(3)
    path = tmp_path / "mutant.exr"
    outcomes: collections.Counter = collections.Counter()
    for start, end in spans:
        for spot in {start, end - 1, rng.randrange(start, end)}:
            raw = bytearray(data)
            raw[spot] = rng.randrange(0x80, 0x100)
            path.write_bytes(bytes(raw))
            try:
                plate = read_exr(path)
            except ExrReadError as err:
                assert str(path) in str(err), (data[start:end], spot)
                outcomes[data[start:end] in (b"compression", b"lineOrder")] += 1  # typed attributes: dropped instead
                continue
            for text in header_texts(plate):
                text.encode("utf-8")  # a lone surrogate raises here
    assert outcomes[False] > 2 * len(spans) - 4, outcomes


def test_colorize_with_non_utf8_header_strings_in_plates_and_keys_exits_0_or_3_never_a_traceback(tmp_path, capsys):
    """The header fuzz through the whole command: seeded mutants (non-UTF-8 bytes in names and values, and the
    byte mutations above) as plate frame 2 and as the key; every run exits 0 or 3 naming the file, no traceback,
    and a header refused writes nothing."""
    from colorprop.cli.main import main

    rng = np.random.default_rng(2)
    frames = {f: rng.random((16, 16, 3), dtype=np.float32) for f in (1, 2, 3)}
    key_seed = tmp_path / "key-seed.exr"
    write_exr(key_seed, frames[1], ("R", "G", "B"), extra_metadata={"colorspace": "ACEScg", "Software": "paint 2"})
    for f, pixels in frames.items():
        write_exr(tmp_path / f"plate.{f:04d}.exr", pixels, ("R", "G", "B"), extra_metadata={"Software": "cam 1"})
    plate_seed, key_data = (tmp_path / "plate.0002.exr").read_bytes(), key_seed.read_bytes()
    chooser = random.Random(11)
    outcomes: collections.Counter = collections.Counter()
    for i in range(40):
        target = tmp_path / ("plate.0002.exr" if i % 2 == 0 else "key.exr")
        data = plate_seed if i % 2 == 0 else key_data
        not_utf8 = i % 4 < 2
        mutated = not_utf8_mutant(data, header_strings(data), chooser) if not_utf8 else mutant(data, chooser)
        (tmp_path / "key.exr").write_bytes(key_data)
        (tmp_path / "plate.0002.exr").write_bytes(plate_seed)
        target.write_bytes(mutated)
        out = tmp_path / f"out{i}"
        rc = main(
            [
                "colorize",
                "--input",
                str(tmp_path / "plate.####.exr"),
                "--key",
                f"1={tmp_path / 'key.exr'}",
                "--output",
                str(out / "o.####.exr"),
                "--method",
                "flow",
                "--progress",
                "none",
            ]
        )
        err = capsys.readouterr().err
        assert rc in (0, 3) and "Traceback" not in err, (i, rc, err)
        if rc == 3:
            assert str(target) in err, (i, err)
        if rc == 3 and not_utf8:  # refused by the pre-flight (a byte mutant may break pixels: found when read)
            assert not out.exists() or not list(out.iterdir()), (i, err)
        outcomes[not_utf8, rc] += 1
    assert outcomes[True, 3] >= 15 and outcomes[False, 3] >= 5, outcomes


def test_byte_0xff_in_a_header_string_is_exit_3_naming_the_file(tmp_path, capsys):
    """The issue's reproduction: one 0xff inside a header attribute name of a plate, then colorize."""
    from colorprop.cli.main import main

    rng = np.random.default_rng(1)
    for f in (1, 2):
        write_exr(tmp_path / f"plate.{f:04d}.exr", rng.random((16, 16, 3), dtype=np.float32), ("R", "G", "B"))
    write_exr(tmp_path / "key.exr", rng.random((16, 16, 3), dtype=np.float32), ("R", "G", "B"))
    bad = tmp_path / "plate.0002.exr"
    raw = bytearray(bad.read_bytes())
    raw[15] = 0xFF  # inside the first attribute name ("channels")
    bad.write_bytes(bytes(raw))
    rc = main(
        [
            "colorize",
            "--input",
            str(tmp_path / "plate.####.exr"),
            "--key",
            f"1={tmp_path / 'key.exr'}",
            "--output",
            str(tmp_path / "out" / "o.####.exr"),
            "--method",
            "flow",
            "--progress",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 3, err
    assert str(bad) in err and "Traceback" not in err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="colorprop-exr-fuzz-") as folder:
        outcomes = run(args.count, args.seed, Path(folder))
    print(
        f"{args.count} mutants (seed {args.seed}) in {time.monotonic() - t0:.1f} s: {dict(outcomes)}; "
        "no other exception, no hang"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
