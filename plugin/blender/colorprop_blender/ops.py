"""Operators: connect, keys, Colorize. ``execute`` runs to the end (background/farm); ``invoke``
(the panel button) is modal: the network work runs in a thread, bpy work stays on the main thread
through :class:`MainThreadBridge`, Esc cancels."""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from typing import Any

import bpy
import numpy as np

from . import blender_io, logic
from ._client import dcc

_caps: dict[str, Any] = {}  # last capabilities, for the method enum


class Job:
    """What Colorize needs, prepared on the main thread."""

    def __init__(self, context: "bpy.types.Context"):
        st = context.scene.colorprop
        self.scene = context.scene
        self.settings = run_settings(st)
        self.suggestions: list[dict] = []
        self.notes: list[str] = []  # the server's (dcc.JobReport)
        self.address = st.server.strip()
        self.curve = addon_curve_keys(context)
        self.caps = caps = dcc.connect(self.address, curve=self.curve)
        _caps.clear()
        _caps.update(caps)
        plate = bpy.path.abspath(st.plate)
        if not st.plate.strip():
            raise dcc.ColorizeError("choose the plate: one frame of an image sequence, or a movie")
        if logic.is_movie(plate):
            self.decoded = tempfile.mkdtemp(prefix="colorprop_movie_")
            self.pattern, frames = blender_io.movie_to_exrs(plate, self.decoded)
        else:
            self.pattern, frames = logic.sequence_of(plate)
        if st.use_range:
            frames = [f for f in frames if st.frame_start <= f <= st.frame_end]
        self.frames = frames
        if not st.keys:
            raise dcc.ColorizeError("add a keyframe: a frame number and its coloured image")
        # RGBA: a key image's alpha makes a partial key (dcc.key_and_matte)
        self.keys = {int(k.frame): blender_io.load_rgb(bpy.path.abspath(k.path), alpha=True) for k in st.keys}
        self.options = dcc.build_options(caps, st.method, st.quality)
        self.out_pattern = logic.output_pattern(blender_io.output_folder(st.output_dir), self.pattern)
        self.matte_pattern = dcc.matte_pattern(self.out_pattern) if st.confidence else None
        os.makedirs(os.path.dirname(self.out_pattern), exist_ok=True)

    def load(self, frame: int) -> np.ndarray:
        return blender_io.load_rgb(dcc.frame_path(self.pattern, frame))

    def run(self, load_frame, write_result, progress, is_cancelled=lambda: False) -> None:
        """The job on the server (any thread): ``load_frame(frame)``, ``write_result(frame, rgb, confidence)``."""
        self.suggestions, self.notes = dcc.run_job(
            self.address,
            self.frames,
            dcc.InbandShot(load_frame, self.keys, write_result, premultiplied=False),  # load_rgb made them straight
            self.options,
            progress,
            is_cancelled,
            caps=self.caps,
            curve=self.curve,
        )

    def save(self, writer: "blender_io.ExrWriter", frame: int, rgb: np.ndarray, confidence: np.ndarray) -> None:
        """One result (main thread): the colour and, when asked for, the matte as a gray image."""
        writer.save(dcc.frame_path(self.out_pattern, frame), rgb)
        if self.matte_pattern is not None:
            writer.save(dcc.matte_path(self.out_pattern, frame), dcc.matte_rgb(confidence))

    def finish(self) -> "bpy.types.Node":
        """The result in the compositor, and the server's key suggestions and notes listed in the panel (main
        thread)."""
        st = self.scene.colorprop
        st.notes = "\n".join(self.notes)
        st.suggestions.clear()
        for suggestion, label in zip(self.suggestions, dcc.suggestion_labels(self.suggestions)):
            item = st.suggestions.add()
            item.frame, item.expected_error, item.label = suggestion["frame"], suggestion["expected_error"], label
        st.suggestions_for = self.settings
        node = blender_io.add_result_node(self.scene, self.out_pattern, self.frames)
        if self.matte_pattern is not None:  # a second Image node (and Viewer); the comp output stays the colour
            blender_io.add_result_node(self.scene, self.matte_pattern, self.frames)
        return node


def addon_curve_keys(context: "bpy.types.Context") -> "dcc.CurveKeys | None":
    """The CURVE keys set in the add-on's preferences, else $COLORPROP_CURVE_KEYS (dcc.curve_keys); ColorizeError
    names a missing key file."""
    addon = context.preferences.addons.get(__package__)
    prefs = addon.preferences if addon is not None else None
    if prefs is None:  # (the add-on's modules imported without enabling it, e.g. from a script)
        return dcc.curve_keys()
    return dcc.curve_keys(
        bpy.path.abspath(prefs.client_key) if prefs.client_key else "",
        bpy.path.abspath(prefs.server_key) if prefs.server_key else "",
    )


def run_settings(st) -> str:
    """The panel settings a run's result (and so its suggestions) depends on, as one string."""
    keys = sorted((int(k.frame), k.path) for k in st.keys)
    return json.dumps(
        [
            st.server.strip(),
            st.plate,
            keys,
            st.use_range,
            st.frame_start,
            st.frame_end,
            st.method,
            st.quality,
            st.output_dir,
        ]
    )


def _set_status(context: "bpy.types.Context", text: str, progress: float | None = None) -> None:
    st = context.scene.colorprop
    st.status = text
    if progress is not None:
        st.progress = progress
    for area in getattr(context.screen, "areas", []) or []:
        if area.type == "NODE_EDITOR":
            area.tag_redraw()


class COLORPROP_OT_connect(bpy.types.Operator):
    bl_idname = "colorprop.connect"
    bl_label = "Connect"
    bl_description = "Ask the server for its methods and options"

    def execute(self, context):
        try:
            curve = addon_curve_keys(context)
            caps = dcc.connect(context.scene.colorprop.server.strip(), curve=curve)
        except dcc.ColorizeError as exc:
            _set_status(context, f"ERROR: {exc}")
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _caps.clear()
        _caps.update(caps)
        methods, default = dcc.method_choices(caps)
        context.scene.colorprop.method = default
        device = (caps.get("engine") or {}).get("device", "?")
        _set_status(context, f"connected {dcc.identity_text(curve)}: {', '.join(methods)} on {device}")
        return {"FINISHED"}


class COLORPROP_OT_key_add(bpy.types.Operator):
    bl_idname = "colorprop.key_add"
    bl_label = "Add Current Frame as Key"
    bl_description = "Add a keyframe at the current frame; then choose its coloured image"

    def execute(self, context):
        key = context.scene.colorprop.keys.add()
        key.frame = context.scene.frame_current
        return {"FINISHED"}


class COLORPROP_OT_key_remove(bpy.types.Operator):
    bl_idname = "colorprop.key_remove"
    bl_label = "Remove Key"
    index: bpy.props.IntProperty()

    def execute(self, context):
        context.scene.colorprop.keys.remove(self.index)
        return {"FINISHED"}


class MainThreadBridge:
    """The worker thread asks for frames and hands back results; the modal timer serves both."""

    def __init__(self, job: Job, cancel: threading.Event):
        self.job, self.cancel = job, cancel
        self.requests: "queue.Queue[tuple[int, dict]]" = queue.Queue()
        self.results: "queue.Queue[tuple[int, np.ndarray, np.ndarray]]" = queue.Queue()  # frame, rgb, confidence

    def load(self, frame: int) -> np.ndarray:  # worker thread
        slot: dict[str, Any] = {"done": threading.Event()}
        self.requests.put((frame, slot))
        while not slot["done"].wait(0.1):
            if self.cancel.is_set():
                raise dcc.Cancelled()
        if "error" in slot:
            raise slot["error"]
        return slot["pixels"]

    def write(self, frame: int, rgb: np.ndarray, confidence: np.ndarray) -> None:  # worker thread
        self.results.put((frame, np.array(rgb, dtype=np.float32), np.array(confidence, dtype=np.float32)))

    def serve(self, writer: blender_io.ExrWriter) -> None:  # main thread
        while True:
            try:
                frame, slot = self.requests.get_nowait()
            except queue.Empty:
                break
            try:
                slot["pixels"] = self.job.load(frame)
            except Exception as exc:  # handed to the worker, which reports it
                slot["error"] = exc
            slot["done"].set()
        while True:
            try:
                frame, rgb, confidence = self.results.get_nowait()
            except queue.Empty:
                break
            self.job.save(writer, frame, rgb, confidence)


class ColorizeRun:
    """Colorize's execute/invoke/modal, shared by Colorize and Suggest Keys (Blender cannot register a
    subclass of a registered operator class, so both are made from this one)."""

    _timer = None

    def _prepare(self, context) -> Job | None:
        try:
            _set_status(context, "preparing...", 0.0)
            context.scene.colorprop.notes = ""  # the last run's
            return Job(context)
        except dcc.ColorizeError as exc:
            _set_status(context, f"ERROR: {exc}")
            self.report({"ERROR"}, str(exc))
            return None

    def _done(self, context, job: Job) -> None:
        node = job.finish()
        _set_status(context, dcc.done_status(len(job.frames), job.out_pattern, notes=job.notes), 1.0)
        for note in job.notes:
            self.report({"WARNING"}, f"ColorProp: {dcc.note_text(note)}")
        self.report(
            {"INFO"}, f"ColorProp: {len(job.frames)} frames in {os.path.dirname(job.out_pattern)}; node '{node.name}'"
        )

    # Blocking: background mode, scripts, the farm.
    def execute(self, context):
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        writer = blender_io.ExrWriter()
        try:
            job.run(
                job.load,
                lambda f, rgb, confidence: job.save(writer, f, rgb, confidence),
                progress=lambda frac, msg: _set_status(context, msg, frac),
            )
        except dcc.ColorizeError as exc:
            _set_status(context, f"ERROR: {exc}")
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            writer.close()
        self._done(context, job)
        return {"FINISHED"}

    # Interactive: modal, the UI keeps running.
    def invoke(self, context, event):
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        self.job, self.cancel = job, threading.Event()
        self.bridge = MainThreadBridge(job, self.cancel)
        self.writer = blender_io.ExrWriter()
        self.outcome: dict[str, Any] = {}
        self.progress = [0.0, "sending..."]

        def progress(frac: float, msg: str) -> None:
            self.progress[:] = [frac, msg]

        def work() -> None:
            try:
                job.run(self.bridge.load, self.bridge.write, progress, self.cancel.is_set)
            except dcc.Cancelled:
                self.outcome["cancelled"] = True
            except Exception as exc:
                self.outcome["error"] = str(exc)

        self.thread = threading.Thread(target=work, name="colorprop", daemon=True)
        self.thread.start()
        wm = context.window_manager
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self.cancel.set()
            _set_status(context, "cancelling...")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self.bridge.serve(self.writer)
        frac, msg = self.progress
        context.window_manager.progress_update(int(frac * 100))
        _set_status(context, msg, frac)
        if self.thread.is_alive():
            return {"PASS_THROUGH"}
        self.bridge.serve(self.writer)  # results that arrived last
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        self.writer.close()
        if self.outcome.get("cancelled"):
            _set_status(context, "cancelled")
            self.report({"WARNING"}, "ColorProp: cancelled")
            return {"CANCELLED"}
        if "error" in self.outcome:
            _set_status(context, f"ERROR: {self.outcome['error']}")
            self.report({"ERROR"}, self.outcome["error"])
            return {"CANCELLED"}
        self._done(context, self.job)
        return {"FINISHED"}


class COLORPROP_OT_colorize(ColorizeRun, bpy.types.Operator):
    bl_idname = "colorprop.colorize"
    bl_label = "Colorize"
    bl_description = "Colour the plate from the keyframes on the colorprop server (Esc cancels)"


class COLORPROP_OT_suggest_keys(ColorizeRun, bpy.types.Operator):
    bl_idname = "colorprop.suggest_keys"
    bl_label = "Suggest Keys"
    bl_description = (
        "List the frames where a new key would help most (lowest confidence, spread over the shot): "
        "the last run's list while the settings are unchanged, else Colorize first"
    )

    def _listed(self, context) -> bool:
        st = context.scene.colorprop
        if not st.suggestions_for or st.suggestions_for != run_settings(st):
            return False
        _set_status(context, dcc.last_run_suggestions_status(s.frame for s in st.suggestions), 1.0)
        return True

    def execute(self, context):
        return {"FINISHED"} if self._listed(context) else super().execute(context)

    def invoke(self, context, event):
        return {"FINISHED"} if self._listed(context) else super().invoke(context, event)


class COLORPROP_OT_goto_frame(bpy.types.Operator):
    bl_idname = "colorprop.goto_frame"
    bl_label = "Go to Frame"
    bl_description = "Make this suggested frame the current frame (then paint a key there)"
    frame: bpy.props.IntProperty()

    def execute(self, context):
        context.scene.frame_set(self.frame)
        return {"FINISHED"}


classes = (
    COLORPROP_OT_connect,
    COLORPROP_OT_key_add,
    COLORPROP_OT_key_remove,
    COLORPROP_OT_colorize,
    COLORPROP_OT_suggest_keys,
    COLORPROP_OT_goto_frame,
)
