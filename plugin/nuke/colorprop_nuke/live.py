"""The ColorProp node's "live" knob: the shot stays open on the server (``colorprop_client.dcc_live.LiveNode``),
each coloured frame is written as it comes and the node's Read reloads it; "send keys" (or a change of the
keyframes knob) renders the key input again and sends the difference as an edit; the server re-runs only what the
edit makes stale, the frame under the playhead first.

Threads: rendering and knob changes on the main thread; one worker thread per live node polls the server; every
knob or Read change from it goes through ``nuke.executeInMainThread`` (``node._in_main``).
"""

from __future__ import annotations

import threading

import nuke

from colorprop_client import dcc
from colorprop_client.dcc_live import LiveNode

from . import logic
from . import node as node_ui

_live: dict[str, tuple[LiveNode, threading.Thread, logic.ShotPlan]] = {}  # node name -> its live session


def on_knob_changed(node: "nuke.Node", knob: "nuke.Knob") -> None:
    """The node's knobChanged: the live knob starts or stops the session; new key frames while live are sent."""
    if knob.name() == "live":
        start(node) if knob.value() else stop(node)
    elif knob.name() == "keyframes" and node.name() in _live:
        on_keys(node)


def start(node: "nuke.Node") -> LiveNode | None:
    """Render the plate and keys, open the live session and start its worker; the node's Read shows the results
    as they come. Returns the session (None when it could not start: the status says why)."""
    stop(node)
    try:
        plan = node_ui.plan_from_node(node)
        plan.check()
        plan.caps = dcc.connect(plan.address, curve=plan.curve)
        node_ui._set_status(node, "live: rendering plate and keys...", node_ui.BUSY_COLOR)
        node_ui.render_inputs(node, plan)
        shot = logic.plan_shot(plan)
    except (dcc.ColorizeError, logic.ExrError) as exc:
        node_ui._set_status(node, f"ERROR: {exc}", node_ui.ERROR_COLOR)
        node["live"].setValue(False)
        return None
    except RuntimeError as exc:  # nuke.execute failures
        node_ui._set_status(node, f"ERROR: rendering the inputs failed: {exc}", node_ui.ERROR_COLOR)
        node["live"].setValue(False)
        return None
    show_sequence(node, plan)
    live = LiveNode(
        plan.address,
        plan.frames,
        shot,
        logic.plan_options(plan, plan.caps),
        on_frame=lambda frame, run: node_ui._in_main(reload, node, plan),
        on_status=lambda text, error: node_ui._in_main(status, node, text, error),
        colorspace=plan.colorspace,
        view=nuke.frame() if nuke.frame() in plan.frames else None,
        curve=plan.curve,
        timeout_s=plan.timeout_s,
    )
    worker = threading.Thread(target=live.run, name=f"colorprop-live-{node.name()}", daemon=True)
    _live[node.name()] = (live, worker, plan)
    worker.start()
    return live


def on_keys(node: "nuke.Node") -> None:
    """Render the key input at the node's key frames again and send what changed (an edit), viewing the current
    frame."""
    entry = _live.get(node.name())
    if entry is None:
        node_ui._set_status(node, "not live: switch 'live' on first", node_ui.BUSY_COLOR)
        return
    live, _, plan = entry
    try:
        plan.keyframes = dcc.parse_keyframes(node["keyframes"].value())
        plan.check()
        node_ui.render_inputs(node, plan, plate=False)
        keys = logic.read_keys(plan)
    except (dcc.ColorizeError, logic.ExrError, RuntimeError) as exc:
        node_ui._set_status(node, f"ERROR: {exc}", node_ui.ERROR_COLOR)
        return
    if nuke.frame() in plan.frames:
        live.view(nuke.frame())
    live.edit_keys(keys if plan.mode == "inband" else {k: dcc.frame_path(plan.key_pattern, k) for k in keys})


def stop(node: "nuke.Node", wait_s: float = 10.0) -> None:
    """Close the node's live session (the server frees it) and wait for its worker."""
    entry = _live.pop(node.name(), None)
    if entry is not None:
        entry[0].stop()
        if threading.current_thread() is not entry[1]:
            entry[1].join(wait_s)


def show_sequence(node: "nuke.Node", plan: logic.ShotPlan) -> None:
    """Point the internal Read at the results' sequence and the output at it (missing frames: the nearest)."""
    with node:
        read = nuke.toNode("Result")
        read["file"].setValue(plan.output_pattern)
        for knob, value in (("first", plan.frames[0]), ("origfirst", plan.frames[0])):
            read[knob].setValue(value)
        for knob, value in (("last", plan.frames[-1]), ("origlast", plan.frames[-1])):
            read[knob].setValue(value)
        read["on_error"].setValue("nearest frame")
        nuke.toNode("Output1").setInput(0, nuke.toNode("Show"))


def reload(node: "nuke.Node", plan: logic.ShotPlan) -> None:
    """A new frame is on disk: the Read picks it up (main thread)."""
    with node:
        nuke.toNode("Result")["reload"].execute()


def status(node: "nuke.Node", text: str, error: bool) -> None:
    node_ui._set_status(node, ("ERROR: " if error else "") + text, node_ui.ERROR_COLOR if error else node_ui.OK_COLOR)
    if error:
        node["live"].setValue(False)
        _live.pop(node.name(), None)
