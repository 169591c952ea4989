"""The Nuke-facing layer of the ColorProp node: knobs, renders, threads. Logic lives in ``logic``.

Threads: Colorize renders the plate and keys with ``nuke.execute`` on the main thread (Nuke
requires it), then a worker thread talks to the server under a ``nuke.ProgressTask``; every knob
change from that thread goes through ``nuke.executeInMainThread``. Without a GUI (farm,
``nuke -t``) the same steps run in the calling thread.
"""

from __future__ import annotations

import os
import re
import threading

import nuke

from colorprop_client import dcc

from . import logic

NODE_CLASS = "ColorProp"
OK_COLOR, BUSY_COLOR, ERROR_COLOR = 0x4B7DAAFF, 0xC8A032FF, 0xCC3333FF
_CALL = "import colorprop_nuke.node as _cp; _cp.{}(nuke.thisNode())"
OUTPUTS = ("colour", "confidence matte")  # the output knob; its index drives the internal Switch
_jobs: dict[str, threading.Thread] = {}  # node name -> running worker


# -- building the node ----------------------------------------------------------------------------
def create_node() -> "nuke.Node":
    """A ColorProp Group: inputs plate (0) and key (1); output = the coloured sequence."""
    group = nuke.nodes.Group(name=NODE_CLASS + "1")
    group.begin()
    try:
        plate = nuke.nodes.Input(name="plate")
        key = nuke.nodes.Input(name="key")
        for name, src in (("WritePlate", plate), ("WriteKey", key)):
            w = nuke.nodes.Write(name=name, file_type="exr", channels="rgb", disable=True)
            w.setInput(0, src)
            w["datatype"].setValue("32 bit float")
            w["compression"].setValue("Zip (1 scanline)")
            w["raw"].setValue(True)  # no colour conversion: the server gets the working space
        show = nuke.nodes.Switch(name="Show")  # input 0 the colour, 1 the confidence matte
        for i, name in enumerate(("Result", "Matte")):
            show.setInput(i, nuke.nodes.Read(name=name, raw=True))
        show["which"].setExpression("parent.output")  # the node's output knob: 0 colour, 1 matte
        out = nuke.nodes.Output(name="Output1")
        out.setInput(0, plate)  # pass the plate through until there is a result
    finally:
        group.end()
    _add_knobs(group)
    return group


def _add_knobs(node: "nuke.Node") -> None:
    methods, default_method = dcc.method_choices(None)
    knobs = [
        nuke.Tab_Knob("colorprop", "ColorProp"),
        nuke.String_Knob("server", "server"),
        nuke.PyScript_Knob("connect", "connect", _CALL.format("on_connect")),
        nuke.File_Knob("client_key", dcc.CLIENT_KEY_LABEL),
        nuke.File_Knob("server_key", dcc.SERVER_KEY_LABEL),
        nuke.String_Knob("keyframes", "keyframes"),
        nuke.PyScript_Knob("add_key", "add current frame as key", _CALL.format("on_add_key")),
        nuke.String_Knob("frame_range", "frame range"),
        nuke.Enumeration_Knob("method", "method", methods),
        nuke.Enumeration_Knob("quality", "quality", list(dcc.QUALITY_PRESETS)),
        nuke.Enumeration_Knob("mode", "data", list(dcc.MODE_LABELS.values())),
        nuke.Boolean_Knob("regrade", "regrade"),
        nuke.Boolean_Knob("confidence", "write confidence matte"),
        nuke.Enumeration_Knob("output", "output", list(OUTPUTS)),
        nuke.File_Knob("work_dir", "work folder"),
        nuke.String_Knob("colorspace", "plate colour space"),
        nuke.PyScript_Knob("colorize", "Colorize", _CALL.format("on_colorize")),
        nuke.PyScript_Knob("cancel", "Cancel", _CALL.format("on_cancel")),
        nuke.Boolean_Knob("live", "live"),  # colorprop_nuke.live: the shot stays open, key edits re-run
        nuke.PyScript_Knob("live_keys", "send keys", _CALL.format("on_live_keys")),
        nuke.Text_Knob("status", "status", "not run yet"),
        nuke.PyScript_Knob("suggest", "suggest keys", _CALL.format("on_suggest")),
        nuke.Enumeration_Knob("suggested", "suggested keys", [dcc.NO_SUGGESTIONS]),
        nuke.PyScript_Knob("goto", "go to frame", _CALL.format("on_goto")),
    ]
    for k in knobs:
        node.addKnob(k)
    node["server"].setValue(dcc.DEFAULT_ADDRESS)
    node["keyframes"].setValue(str(int(nuke.frame())))
    node["method"].setValue(default_method)
    node["quality"].setValue("standard")
    node["server"].setTooltip("colorprop server, e.g. tcp://gpu-host:5557 (env COLORPROP_SERVER sets the default)")
    node["client_key"].setTooltip(
        "this artist's CURVE key, NAME.key_secret from `colorprop keys DIR --client NAME` "
        "(a server off this machine requires one); empty: $COLORPROP_CURVE_KEYS/"
        "<$COLORPROP_CURVE_NAME or client>.key_secret, or none"
    )
    node["server_key"].setTooltip(
        "the server's public key, server.key from its keys folder; empty: server.key beside the client key"
    )
    node["keyframes"].setTooltip("frames where the 'key' input holds a coloured frame, e.g. '1, 48'")
    node["frame_range"].setTooltip("frames to colour, e.g. '1001-1100'; empty: the plate's range")
    node["mode"].setTooltip(
        "send pixels: works anywhere. shared paths: the server reads and writes the "
        "work folder itself (must be on storage it sees, under its allowed roots)"
    )
    node["regrade"].setTooltip(
        "the plate is in colour and the key is a regrade of it: carry the key's change "
        "and keep the plate's own colour where the key did not change it"
    )
    node["confidence"].setTooltip(
        "add a colorprop.confidence channel to the results: low where the colour "
        "is likely wrong (see it with a Shuffle or the Viewer's channel menu)"
    )
    node["output"].setTooltip(
        "what the node outputs once coloured: the colour, or the confidence matte "
        "(white: likely right, dark: look here or paint a key); the matte is written "
        "whenever this is set or 'write confidence matte' is on"
    )
    node["work_dir"].setTooltip("renders and results; empty: colorprop/<script>/<node>/ next to the saved script")
    node["colorspace"].setTooltip("colour space of the rendered plate (the working space); empty: linear Rec.709")
    node["suggest"].setTooltip(
        "the frames where a new key would help most (lowest confidence, spread over the "
        "shot): the last run's list while the settings are unchanged, else colorizes first"
    )
    node["suggested"].setTooltip(
        "suggested key frames, weakest first, with the share of pixels likely wrong; "
        "pick one and press 'go to frame', then paint a key there"
    )
    node["goto"].setTooltip("make the picked suggested frame the current frame")

    node["knobChanged"].setValue(
        "import colorprop_nuke.live as _cp; _cp.on_knob_changed(nuke.thisNode(), nuke.thisKnob())"
    )


# -- knob callbacks (main thread) -----------------------------------------------------------------
def on_live_keys(node: "nuke.Node") -> None:
    from . import live

    live.on_keys(node)


def on_add_key(node: "nuke.Node") -> None:
    node["keyframes"].setValue(dcc.add_keyframe(node["keyframes"].value(), int(nuke.frame())))


def on_connect(node: "nuke.Node") -> None:
    """Fill method/mode choices from the server (short, bounded wait: one try of a few seconds)."""
    try:
        curve = node_curve_keys(node)
        caps = dcc.connect(node["server"].value().strip(), curve=curve)
    except dcc.ColorizeError as exc:
        _set_status(node, f"ERROR: {exc}", ERROR_COLOR)
        return
    methods, default = dcc.method_choices(caps)
    current = node["method"].value()
    node["method"].setValues(methods)
    node["method"].setValue(current if current in methods else default)
    node["mode"].setValues([dcc.MODE_LABELS[m] for m in dcc.mode_choices(caps)])
    engine = caps.get("engine") or {}
    _set_status(
        node, f"connected {dcc.identity_text(curve)}: {', '.join(methods)} on {engine.get('device', '?')}", OK_COLOR
    )


def node_curve_keys(node: "nuke.Node") -> "dcc.CurveKeys | None":
    """The CURVE keys of the node's client key / server key knobs, else $COLORPROP_CURVE_KEYS (a node saved by an
    older version has no such knobs)."""
    knobs = node.knobs()
    return dcc.curve_keys(*(node[k].value() if k in knobs else "" for k in ("client_key", "server_key")))


def on_cancel(node: "nuke.Node") -> None:
    flag = _cancel_flags.get(node.name())
    if flag is not None:
        flag.set()
        _set_status(node, "cancelling...", BUSY_COLOR)


_cancel_flags: dict[str, threading.Event] = {}
_suggested: dict[str, tuple[tuple, list[dict]]] = {}  # node name -> (settings of the run, its suggestions)


def run_settings(node: "nuke.Node") -> tuple:
    """The knob values a run's result (and so its suggestions) depends on."""
    return tuple(
        node[k].value()
        for k in (
            "server",
            "keyframes",
            "frame_range",
            "method",
            "quality",
            "mode",
            "regrade",
            "work_dir",
            "colorspace",
        )
    )


def on_suggest(node: "nuke.Node") -> None:
    """List the last run's suggestions if the settings are unchanged since, else colorize (which lists them)."""
    last = _suggested.get(node.name())
    if last is not None and last[0] == run_settings(node):
        show_suggestions(node, last[1])
        _set_status(node, dcc.last_run_suggestions_status(s["frame"] for s in last[1]), OK_COLOR)
        return
    on_colorize(node)


def on_goto(node: "nuke.Node") -> None:
    frame = dcc.suggestion_frame(node["suggested"].value())
    if frame is None:
        _set_status(node, "no suggested frame yet: press 'suggest keys'", BUSY_COLOR)
        return
    nuke.frame(frame)  # sets the current frame (Nuke Python API: nuke.frame(f))


def show_suggestions(node: "nuke.Node", suggestions: list[dict]) -> None:
    labels = dcc.suggestion_labels(suggestions) or [dcc.NO_SUGGESTIONS]
    node["suggested"].setValues(labels)
    node["suggested"].setValue(labels[0])


def on_colorize(node: "nuke.Node") -> None:
    name = node.name()
    if name in _jobs and _jobs[name].is_alive():
        _set_status(node, "already running: press Cancel first", BUSY_COLOR)
        return
    try:
        plan = plan_from_node(node)
        plan.check()
        # a dead server or a refused key is reported before any rendering (bounded wait)
        plan.caps = dcc.connect(plan.address, curve=plan.curve)
        _set_status(node, "rendering plate and keys...", BUSY_COLOR)
        render_inputs(node, plan)
    except dcc.ColorizeError as exc:
        _set_status(node, f"ERROR: {exc}", ERROR_COLOR)
        return
    except RuntimeError as exc:  # nuke.execute failures (missing input, render error)
        _set_status(node, f"ERROR: rendering the inputs failed: {exc}", ERROR_COLOR)
        return
    cancel = threading.Event()
    _cancel_flags[name] = cancel
    args = (node, plan, cancel, run_settings(node))
    if nuke.GUI:
        t = threading.Thread(target=_work, args=args, name=f"colorprop-{name}", daemon=True)
        _jobs[name] = t
        t.start()
    else:
        _work(*args)


def plan_from_node(node: "nuke.Node") -> logic.ShotPlan:
    plate_in = node.input(0)
    if plate_in is None:
        raise dcc.ColorizeError("connect a plate to the 'plate' input")
    if node.input(1) is None:
        raise dcc.ColorizeError("connect the coloured keyframe(s) to the 'key' input")
    work = node["work_dir"].value().strip() or default_work_dir(node)
    extra = {"regrade": True} if node["regrade"].value() else {}  # sent only when on: older servers lack it
    modes = {label: mode for mode, label in dcc.MODE_LABELS.items()}
    return logic.ShotPlan(
        address=node["server"].value().strip(),
        frames=dcc.parse_frame_range(node["frame_range"].value(), plate_in.firstFrame(), plate_in.lastFrame()),
        keyframes=dcc.parse_keyframes(node["keyframes"].value()),
        plate_pattern=os.path.join(work, "plate", "plate.####.exr"),
        key_pattern=os.path.join(work, "key", "key.####.exr"),
        output_pattern=os.path.join(work, "colorized", f"{node.name()}.####.exr"),
        method=node["method"].value(),
        quality=node["quality"].value(),
        mode=modes.get(node["mode"].value(), "inband"),
        colorspace=node["colorspace"].value().strip() or None,
        options=extra,
        confidence=bool(node["confidence"].value()) or node["output"].value() == OUTPUTS[1],
        curve=node_curve_keys(node),
    )


def default_work_dir(node: "nuke.Node") -> str:
    """``<script folder>/colorprop/<script name>/<node name>``: the renders and results live with the
    comp, never in the system temp folder. An unsaved script has no folder: ColorizeError."""
    script = nuke.root().name()
    if not script or not os.path.isabs(script) or not script.lower().endswith((".nk", ".nknc", ".nkind")):
        raise dcc.ColorizeError("save the script first (the results go next to it), or set the work folder")
    stem = re.sub(r"[^\w.-]", "_", os.path.splitext(os.path.basename(script))[0])
    return os.path.join(os.path.dirname(script), "colorprop", stem, node.name())


def render_inputs(node: "nuke.Node", plan: logic.ShotPlan, plate: bool = True) -> None:
    """Render the plate over the frame range (unless ``plate`` is False: a live key edit) and the key input at
    the key frames (main thread)."""
    for pattern in (plan.plate_pattern, plan.key_pattern, plan.output_pattern):
        os.makedirs(os.path.dirname(pattern), exist_ok=True)
    # The key's alpha, when its input has one, makes a partial key (it colours only where alpha > 0). Without one
    # the Write would fill an asked-for alpha with black: a key transparent everywhere.
    key_channels = "rgba" if "rgba.alpha" in node.input(1).channels() else "rgb"
    with node:
        plate_w, key_w = nuke.toNode("WritePlate"), nuke.toNode("WriteKey")
        key_w["channels"].setValue(key_channels)
        for write, pattern, frames in (
            *([(plate_w, plan.plate_pattern, plan.frames)] if plate else []),
            (key_w, plan.key_pattern, plan.keyframes),
        ):
            write["file"].setValue(pattern)
            write["disable"].setValue(False)
            try:
                for a, b in _runs(frames):
                    nuke.execute(write, a, b, 1)
            finally:
                write["disable"].setValue(True)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """[1,2,3,7,8] -> [(1,3),(7,8)]: one nuke.execute per contiguous run."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


# -- the worker (any thread) ----------------------------------------------------------------------
def _work(node: "nuke.Node", plan: logic.ShotPlan, cancel: threading.Event, settings: tuple) -> None:
    task = nuke.ProgressTask(f"ColorProp {node.name()}")

    def progress(fraction: float, message: str) -> None:
        task.setProgress(int(round(fraction * 100)))
        task.setMessage(message)
        _in_main(_set_status, node, message, BUSY_COLOR)

    def is_cancelled() -> bool:
        return cancel.is_set() or task.isCancelled()

    try:
        report = logic.run_plan(plan, progress, is_cancelled)
    except dcc.Cancelled:
        _in_main(_set_status, node, "cancelled", BUSY_COLOR)
    except dcc.ColorizeError as exc:
        _in_main(_set_status, node, f"ERROR: {exc}", ERROR_COLOR)
    except Exception as exc:  # a bug must still reach the artist, not die silently in a thread
        _in_main(_set_status, node, f"ERROR: {dcc.describe_error(exc)}", ERROR_COLOR)
    else:
        _in_main(show_result, node, plan, report, settings)
    finally:
        task = None  # the last reference to Nuke's progress task: dropping it closes the bar


def _in_main(fn, *args) -> None:
    if nuke.GUI and threading.current_thread() is not threading.main_thread():
        nuke.executeInMainThread(fn, args)
    else:
        fn(*args)


def show_result(node: "nuke.Node", plan: logic.ShotPlan, report: dcc.JobReport, settings: tuple) -> None:
    """Point the internal Reads at the colour (and matte) sequences, wire the output, list the key
    suggestions and put the server's notes on the status line (main thread)."""
    with node:
        sequences = [("Result", plan.output_pattern)]
        if plan.confidence:
            sequences.append(("Matte", dcc.matte_pattern(plan.output_pattern)))
        for name, pattern in sequences:
            read = nuke.toNode(name)
            read["file"].setValue(pattern)
            read["first"].setValue(plan.frames[0])
            read["last"].setValue(plan.frames[-1])
            read["origfirst"].setValue(plan.frames[0])
            read["origlast"].setValue(plan.frames[-1])
            read["on_error"].setValue("nearest frame")
            read["reload"].execute()
        nuke.toNode("Output1").setInput(0, nuke.toNode("Show"))
    _suggested[node.name()] = (settings, report.suggestions)
    if "suggested" in node.knobs():  # a node saved by an older version has no suggestion knobs
        show_suggestions(node, report.suggestions)
    status = dcc.done_status(len(plan.frames), plan.output_pattern, report.suggestions, report.notes)
    _set_status(node, status, OK_COLOR)


def _set_status(node: "nuke.Node", text: str, color: int) -> None:
    node["status"].setValue(text)
    node["tile_color"].setValue(color)
