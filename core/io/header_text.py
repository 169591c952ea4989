"""Header text of an image file: every channel name, attribute name and string value must be UTF-8 text."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_header_text(channels, metadata: dict[str, Any], path: Path, error) -> None:
    """``error`` naming the file unless every channel name, attribute name and string value is UTF-8 text.

    OpenImageIO hands other bytes over as lone surrogates ('\\udcff'), which no later step can use: a
    colour-space lookup raises TypeError, copying the attribute to the output raises std::bad_cast after
    earlier frames were written. Refused here, every path (the pre-flight reads every header) stops at
    once with exit 3."""
    for name in channels:
        if not _is_text(name):
            raise error(path, f"corrupt header: channel name {_escaped(name)} is not valid UTF-8 text")
    for name, value in metadata.items():
        if not _is_text(name):
            raise error(path, f"corrupt header: attribute name {_escaped(name)} is not valid UTF-8 text")
        if not all(_is_text(text) for text in _strings_in(value)):
            raise error(path, f"corrupt header: the value of attribute {_escaped(name)} is not valid UTF-8 text")


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in _strings_in(item)]
    return []


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    """``text`` quoted, its undecodable bytes written as \\xNN (so the message itself is printable)."""
    return f"'{text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')[:120]}'"
