"""EXR reader fuzz: seeded mutants of a small plate are read back as a Plate or refused with
ExrReadError (exit 3, naming the file); never another exception, never a hang.

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
    write_exr(path, rng.random((12, 20, 5), dtype=np.float32), ("R", "G", "B", "A", "Z"), pixel_type="half",
              extra_metadata={"comment": "colorprop fuzz seed", "owner": "tests"})
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
        del out[rng.randrange(len(out)):]
    else:
        pos = rng.randrange(min(len(out), HEADER_BYTES))
        out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
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
    rc = main(["colorize", "--input", str(tmp_path / "plate.####.exr"), "--key", f"1={tmp_path / 'key.exr'}",
               "--output", str(tmp_path / "out" / "o.####.exr"), "--method", "flow", "--progress", "none"])
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
    print(f"{args.count} mutants (seed {args.seed}) in {time.monotonic() - t0:.1f} s: {dict(outcomes)}; "
          "no other exception, no hang")
    return 0


if __name__ == "__main__":
    sys.exit(main())
