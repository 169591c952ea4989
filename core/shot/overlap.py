"""Reading ahead and writing behind on helper threads, for sources and sinks whose reads and writes are
independent files (EXR sequences): ``overlapped_io`` wraps a ``FrameSource`` and a ``FrameSink`` (frames.py)."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np

from colorprop.shot.cache import plate_identity

# A FrameSource, FrameSink, PlateFrame, FrameResult (frames.py, which imports this module: no circle back).
FrameSource = FrameSink = PlateFrame = FrameResult = Any


class PrefetchingSource:
    """Reads the frame a run will ask for next on a helper thread while the caller computes.

    Runs walk the frame list one step at a time, forward or backward; after ``read(f)`` the next frame
    in the same direction is read ahead. A frame not read ahead is read on the spot, so the frames (and
    errors) the caller gets are exactly those of ``source`` alone. A run from it may read frame k+1 before frame k
    is out (``reads_ahead``: the shot's look-ahead, ahead.py); from any other source, frame k+1 is read after.
    """

    reads_ahead = True

    def __init__(self, source: FrameSource, pool: ThreadPoolExecutor):
        self.source = source
        self.frames = source.frames
        self._pool = pool
        self._index = {f: i for i, f in enumerate(self.frames)}
        self._ahead: tuple[int, Future] | None = None
        self._last: int | None = None

    def read(self, frame: int) -> PlateFrame:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == frame:
            plate = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            plate = self.source.read(frame)
        i, last = self._index.get(frame), self._index.get(self._last)
        step = 1 if last is None or i is None or i >= last else -1
        self._last = frame
        if i is not None and 0 <= i + step < len(self.frames):
            nxt = self.frames[i + step]
            self._ahead = (nxt, self._pool.submit(self.source.read, nxt))
        return plate

    def identity(self, frame: int) -> str:
        return plate_identity(self.source, frame)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None


class BackgroundSink:
    """Writes on a helper thread, one frame in flight: frame k is written while frame k+1 is computed.
    A write error surfaces at the next call or at ``flush``."""

    def __init__(self, sink: FrameSink, pool: ThreadPoolExecutor):
        self.sink = sink
        self.pixel_dtype = sink.pixel_dtype
        self._pool = pool
        self._pending: Future | None = None
        self._pending_frame: int | None = None

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def exists(self, frame: int) -> bool:
        self.flush()
        return self.sink.exists(frame)

    def read_back(self, frame: int) -> np.ndarray:
        self.flush()
        return self.sink.read_back(frame)

    def held(self, frame: int) -> str | None:
        if self._pending_frame == frame:  # its own write may still go on (another frame's is another file)
            self.flush()
        held = getattr(self.sink, "held", None)
        return None if held is None else held(frame)

    def write(self, frame: int, result: FrameResult) -> None:
        self.flush()
        self._pending, self._pending_frame = self._pool.submit(self.sink.write, frame, result), frame


@contextlib.contextmanager
def overlapped_io(source: FrameSource, sink: FrameSink) -> Iterator[tuple[PrefetchingSource, BackgroundSink]]:
    """``source`` and ``sink`` with reading ahead and writing behind on helper threads, for sources and
    sinks whose reads and writes are independent files (EXR sequences). Every write is finished (or
    its error raised) when the block ends."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="colorprop-io") as pool:
        reader, writer = PrefetchingSource(source, pool), BackgroundSink(sink, pool)
        try:
            yield reader, writer
        except BaseException:
            reader.close()
            with contextlib.suppress(Exception):  # the first error is the one to report
                writer.flush()
            raise
        reader.close()
        writer.flush()
