"""Typed errors raised at the edges (files, frames, options, weights).

Every message names the file, frame or field it is about; the CLI prints ``str(err)`` and exits
with ``err.exit_code``.
"""

from __future__ import annotations


class ColorpropError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it (documented in README)."""

    exit_code = 1


class InputError(ColorpropError):
    """Bad command-line input: a pattern, frame range, option value or key specification."""

    exit_code = 2


class SequenceError(InputError):
    """A frame sequence problem: pattern matches nothing, frame missing, output would overwrite input."""


class _FileError(ColorpropError):
    """A file that cannot be read or written: the message names the file (``path``) and why (``reason``)."""

    verb = "read"
    what = "EXR"

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot {self.verb} {self.what} {self.path}: {reason}")


class ExrReadError(_FileError):
    exit_code = 3


class ImageReadError(ExrReadError):
    """An image other than an EXR (a key painted as PNG/TIFF/JPEG/DPX) that cannot be read."""

    what = "image"


class ExrWriteError(_FileError):
    exit_code = 4
    verb = "write"


class ImageWriteError(ExrWriteError):
    """An image other than an EXR (a contact sheet) that cannot be written."""

    what = "image"


class ColorSpaceError(InputError):
    """Unknown or unusable OCIO colour space name."""


class PixelError(ColorpropError):
    """Pixel content that cannot be processed (NaN/Inf, size mismatch). Names file/frame."""

    exit_code = 3


class WeightsError(ColorpropError):
    """Missing, corrupt (sha256 mismatch) or incompatible network weights. Says what to do."""

    exit_code = 5
