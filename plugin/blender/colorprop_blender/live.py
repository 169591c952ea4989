"""The add-on's Live toggle: the shot stays open on the server (``colorprop_client.dcc_live.LiveNode``), every
coloured frame is saved as it comes and the compositor's Image node reloads it; "Send Keys" reads the key images
again and sends what changed as an edit (the server re-runs only what it makes stale, the current frame first).

Threads: the session polls in a worker thread; bpy work (reading plates and keys, saving results, reloading the
image, the status) stays on the main thread in :meth:`LiveRun.tick`, which a ``bpy.app.timers`` timer calls
(a script or test in background mode calls it itself).
"""

from __future__ import annotations

import os
import queue
import threading

import bpy

from . import blender_io, ops
from ._client import dcc, dcc_live

_runs: dict[str, "LiveRun"] = {}  # scene name -> its live session
TICK_S = 0.1


class LiveRun:
    """One scene's live session. Made on the main thread (``ops.Job`` prepares the shot, connecting first)."""

    def __init__(self, context: "bpy.types.Context"):
        self.scene = context.scene
        self.job = job = ops.Job(context)
        self.cancel = threading.Event()
        self.bridge = ops.MainThreadBridge(job, self.cancel)
        self.writer = blender_io.ExrWriter()
        self.statuses: "queue.Queue[tuple[str, bool]]" = queue.Queue()
        self.node = None  # the compositor's Image node, once the first frame is saved
        self.saved: list[int] = []  # frames saved, in order
        self.error: str | None = None
        frame = self.scene.frame_current
        self.live = dcc_live.LiveNode(
            job.address,
            job.frames,
            dcc.InbandShot(self.bridge.load, job.keys, self.bridge.write, premultiplied=False),
            job.options,
            on_frame=lambda frame, run: None,  # the frame is saved (and the image reloaded) in tick
            on_status=lambda text, error: self.statuses.put((text, error)),
            view=frame if frame in job.frames else None,
            curve=job.curve,
        )
        self.thread = threading.Thread(target=self.live.run, name="colorprop-live", daemon=True)
        self.thread.start()

    def tick(self) -> float | None:
        """Main thread: read the plates the server asks for, save the results that came, reload the image, show
        the status. Returns when to call again (None once the session ended)."""
        waiting = self.bridge.results.qsize()
        self.bridge.serve(self.writer)
        if waiting and self.node is not None:
            self.node.image.reload()
        elif waiting and os.path.exists(dcc.frame_path(self.job.out_pattern, self.job.frames[0])):
            # (the node opens the sequence at its first frame; the viewed frame may come before it)
            self.node = blender_io.add_result_node(self.scene, self.job.out_pattern, self.job.frames)
        while True:
            try:
                text, error = self.statuses.get_nowait()
            except queue.Empty:
                break
            self.error = text if error else self.error
            self.scene.colorprop.status = ("ERROR: " if error else "") + text
        if self.thread.is_alive():
            return TICK_S
        self._close()
        return None

    def send_keys(self, context: "bpy.types.Context") -> None:
        """The scene's keys read again (main thread) and sent: what changed goes out as one edit."""
        st = context.scene.colorprop
        keys = {int(k.frame): blender_io.load_rgb(bpy.path.abspath(k.path), alpha=True) for k in st.keys}
        if context.scene.frame_current in self.job.frames:
            self.live.view(context.scene.frame_current)
        self.live.edit_keys(keys)

    def stop(self, wait_s: float = 10.0) -> None:
        self.live.stop()
        self.cancel.set()
        self.thread.join(wait_s)
        self._close()

    def _close(self) -> None:
        if self.writer.scene is not None:
            self.bridge.serve(self.writer)  # the results that came last
            self.writer.close()
        if _runs.get(self.scene.name) is self:
            del _runs[self.scene.name]
            self.scene.colorprop.live = False


def _timer(scene_name: str):
    def tick() -> float | None:
        run = _runs.get(scene_name)
        return run.tick() if run is not None else None

    return tick


class COLORPROP_OT_live(bpy.types.Operator):
    bl_idname = "colorprop.live"
    bl_label = "Live"
    bl_description = (
        "Keep the shot open on the server: frames appear as they are coloured, and Send Keys re-colours only "
        "what a key edit changes (press again to stop)"
    )

    def execute(self, context):
        name = context.scene.name
        if name in _runs:
            _runs[name].stop()
            context.scene.colorprop.status = "live: stopped"
            return {"FINISHED"}
        try:
            run = LiveRun(context)
        except dcc.ColorizeError as exc:
            context.scene.colorprop.status = f"ERROR: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _runs[name] = run
        context.scene.colorprop.live = True
        context.scene.colorprop.status = f"live: opening {len(run.job.frames)} frames..."
        if not bpy.app.background:
            bpy.app.timers.register(_timer(name), first_interval=TICK_S)
        return {"FINISHED"}


class COLORPROP_OT_live_keys(bpy.types.Operator):
    bl_idname = "colorprop.live_keys"
    bl_label = "Send Keys"
    bl_description = "Read the key images again and send what changed to the live session"

    def execute(self, context):
        run = _runs.get(context.scene.name)
        if run is None:
            self.report({"ERROR"}, "ColorProp: not live (press Live first)")
            return {"CANCELLED"}
        try:
            run.send_keys(context)
        except dcc.ColorizeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


classes = (COLORPROP_OT_live, COLORPROP_OT_live_keys)
