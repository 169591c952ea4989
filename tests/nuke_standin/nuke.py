"""A small stand-in for Nuke's ``nuke`` module, for tests only: Nuke cannot be installed here.

It implements just the calls the ColorProp node makes, and records every one in ``calls`` so tests
can check what the node asked Nuke to do. Rendering is simulated: ``execute(write, a, b)`` asks the
node upstream of the Write (through the Group's Input) for each frame via ``render_frame`` and writes
it with the plugin's EXR writer. This shows the plugin's logic and its use of the API, not that
real Nuke behaves the same; the Nuke-facing layer is kept thin for that reason.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

GUI = False
calls: list[tuple] = []
main_queue: list[tuple[Callable, tuple]] = []  # executeInMainThread calls, run by run_main_queue()
_main_lock = threading.Lock()
_frame = 1
_all_nodes: list["Node"] = []
_context: list["Node"] = []  # group stack (begin/end, with node:)
_this: list["Node"] = []
SAVED_SCRIPT = "/shows/demo/comp/sh010_comp_v001.nk"
_script = SAVED_SCRIPT  # what root().name() answers; "Root" for a script never saved


def reset(gui: bool = False, frame: int = 1, script: str = SAVED_SCRIPT) -> None:
    global GUI, _frame, _script
    GUI, _frame, _script = gui, frame, script
    calls.clear(), main_queue.clear(), _all_nodes.clear(), _context.clear(), _this.clear()
    ProgressTask.instances.clear()


def _record(*call: Any) -> None:
    calls.append(call)


# -- knobs ----------------------------------------------------------------------------------------
class Knob:
    def __init__(self, name: str, label: str | None = None, value: Any = None):
        self._name, self.label, self._value = name, label, value
        self.tooltip = ""
        self.expression: str | None = None
        self.node: Node | None = None

    def name(self) -> str:
        return self._name

    def value(self) -> Any:
        if self.expression is not None:
            owner, _, knob = self.expression.partition(".")
            assert owner == "parent", f"the stand-in reads only parent.KNOB expressions, not {self.expression!r}"
            linked = self.node.parent[knob]
            return linked.values().index(linked.value()) if isinstance(linked, Enumeration_Knob) else linked.value()
        return self._value

    def getValue(self) -> Any:
        return self.value()

    def setValue(self, value: Any) -> bool:
        _record("setValue", self.node.name() if self.node else None, self._name, value)
        self._value = value
        return True

    def setTooltip(self, text: str) -> None:
        self.tooltip = text

    def setExpression(self, expression: str) -> bool:
        """Only ``parent.KNOB`` is understood: value() then follows the enclosing Group's knob (an
        Enumeration by its index, as Nuke's expressions read one)."""
        _record("setExpression", self.node.name() if self.node else None, self._name, expression)
        self.expression = expression
        return True

    def execute(self) -> None:
        _record("knob.execute", self.node.name() if self.node else None, self._name)


class Tab_Knob(Knob):
    pass


class String_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, value: str = ""):
        super().__init__(name, label, value)


class File_Knob(String_Knob):
    pass


class Text_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, value: str = ""):
        super().__init__(name, label, value)


class PyScript_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, command: str = ""):
        super().__init__(name, label, None)
        self.command = command

    def execute(self) -> None:
        _record("knob.execute", self.node.name() if self.node else None, self._name)
        _this.append(self.node)
        try:
            exec(self.command, {"nuke": __import__(__name__)})
        finally:
            _this.pop()


class Enumeration_Knob(Knob):
    def __init__(self, name: str, label: str | None, values: list[str]):
        super().__init__(name, label, values[0] if values else "")
        self._values = list(values)

    def values(self) -> list[str]:
        return list(self._values)

    def setValues(self, values: list[str]) -> None:
        _record("setValues", self.node.name() if self.node else None, self._name, list(values))
        self._values = list(values)

    def setValue(self, value: Any) -> bool:
        if isinstance(value, int):
            value = self._values[value]
        if value not in self._values:
            raise ValueError(f"{value!r} is not one of {self._values}")
        return super().setValue(value)


class Boolean_Knob(Knob):
    def __init__(self, name: str, label: str | None = None, value: bool = False):
        super().__init__(name, label, value)


class Int_Knob(Knob):
    pass


# -- nodes ----------------------------------------------------------------------------------------
_DEFAULT_KNOBS: dict[str, dict[str, Any]] = {
    "Write": {
        "file": "",
        "file_type": "",
        "channels": "rgba",
        "datatype": "16 bit half",
        "compression": "Zip (16 scanline)",
        "raw": False,
        "disable": False,
    },
    "Read": {
        "file": "",
        "first": 1,
        "last": 1,
        "origfirst": 1,
        "origlast": 1,
        "raw": False,
        "on_error": "error",
        "reload": None,
    },
    "Switch": {"which": 0},
}


class Node:
    def __init__(self, cls: str, parent: "Node | None", **kw: Any):
        self._class = cls
        self.parent = parent
        self.children: list[Node] = []
        self.inputs: dict[int, Node | None] = {}
        self._knobs: dict[str, Knob] = {}
        for name, value in {
            "name": cls + "1",
            "tile_color": 0,
            "label": "",
            "knobChanged": "",  # (hidden in Nuke) the script Nuke runs after the artist changes a knob
            **_DEFAULT_KNOBS.get(cls, {}),
            **kw,
        }.items():
            self._add(Knob(name, None if name == "knobChanged" else name, value))  # (knobChanged: hidden)
        self.render_frame: Callable[[int], Any] | None = None  # stand-in source pixels (tests)
        self.frame_range = (1, 1)

    def _add(self, knob: Knob) -> None:
        knob.node = self
        self._knobs[knob.name()] = knob

    # API used by the plugin
    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return self._knobs["name"].value()

    def __getitem__(self, name: str) -> Knob:
        return self._knobs[name]

    def knobs(self) -> dict[str, Knob]:
        return dict(self._knobs)

    def addKnob(self, knob: Knob) -> None:
        _record("addKnob", self.name(), knob.name(), type(knob).__name__)
        self._add(knob)

    def setInput(self, i: int, node: "Node | None") -> bool:
        _record("setInput", self.name(), i, node.name() if node else None)
        self.inputs[i] = node
        return True

    def input(self, i: int) -> "Node | None":
        if self._class == "Input":  # inside a group: the group's i-th input
            return None
        return self.inputs.get(i)

    def firstFrame(self) -> int:
        return self.frame_range[0]

    def lastFrame(self) -> int:
        return self.frame_range[1]

    def begin(self) -> None:
        _context.append(self)

    def end(self) -> None:
        _context.pop()

    def __enter__(self) -> "Node":
        self.begin()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end()

    def channels(self) -> list[str]:
        """The channels this node outputs (Nuke's ``layer.channel`` names): rgb, and rgba.alpha when the stand-in
        pixels it renders (at its first frame) have a fourth channel."""
        names = ["rgba.red", "rgba.green", "rgba.blue"]
        return names + ["rgba.alpha"] if self.upstream_pixels(self.frame_range[0]).shape[2] == 4 else names

    def upstream_pixels(self, frame: int):
        """Stand-in renderer: what this node outputs at ``frame`` (HxWx3)."""
        if self._class == "Input":
            index = [c for c in self.parent.children if c._class == "Input"].index(self)
            return self.parent.upstream_pixels_input(index, frame)
        if self.render_frame is not None:
            return self.render_frame(frame)
        src = self.inputs.get(int(self["which"].value()) if self._class == "Switch" else 0)
        if src is None:
            raise RuntimeError(f"{self.name()}: input 0 is not connected")
        return src.upstream_pixels(frame)

    def upstream_pixels_input(self, index: int, frame: int):
        src = self.inputs.get(index)
        if src is None:
            raise RuntimeError(f"{self.name()}: input {index} is not connected")
        return src.upstream_pixels(frame)


class _Nodes:
    def __getattr__(self, cls: str) -> Callable[..., Node]:
        def make(**kw: Any) -> Node:
            parent = _context[-1] if _context else None
            node = Node(cls, parent, **kw)
            (parent.children if parent else _all_nodes).append(node)
            _record("create", cls, node.name(), parent.name() if parent else None)
            return node

        return make


nodes = _Nodes()


def toNode(name: str) -> Node | None:
    pool = _context[-1].children if _context else _all_nodes
    return next((n for n in pool if n.name() == name), None)


def thisNode() -> Node:
    return _this[-1]


_knob: list[Knob] = []


def thisKnob() -> Knob:
    return _knob[-1]


def artist_sets(node: Node, knob: str, value: Any) -> None:
    """Stand-in for the artist changing a knob in the panel: the value is set, then the node's ``knobChanged``
    script runs with ``nuke.thisNode()`` / ``nuke.thisKnob()`` (what Nuke does)."""
    node[knob].setValue(value)
    script = node["knobChanged"].value()
    if script:
        _this.append(node), _knob.append(node[knob])
        try:
            exec(script, {"nuke": __import__(__name__)})
        finally:
            _this.pop(), _knob.pop()


def frame(f: int | None = None) -> int:
    """The current frame; ``frame(f)`` sets it (as Nuke's ``nuke.frame(f)`` is documented to)."""
    global _frame
    if f is not None:
        _record("frame", int(f))
        _frame = int(f)
    return _frame


def selectedNodes() -> list[Node]:
    return []


class _Root:
    def name(self) -> str:
        return _script


def root() -> _Root:
    return _Root()


def execute(node: Node, start: int, end: int, incr: int = 1) -> None:
    """Stand-in render of a Write: pixels from upstream, written as float EXR to its file knob."""
    from colorprop_client import dcc
    from colorprop_nuke import exr_io

    _record("execute", node.name(), start, end, incr)
    if node._class != "Write":
        raise RuntimeError(f"{node.name()} is not a Write node")
    if node["disable"].value():
        raise RuntimeError(f"{node.name()} is disabled")
    for f in range(start, end + 1, incr):
        pixels = node.upstream_pixels(f)
        if node["channels"].value() == "rgb":
            pixels, names = pixels[..., :3], ("R", "G", "B")
        else:  # rgba: a stream without alpha gets a black one, as Nuke writes a channel its input lacks
            if pixels.shape[2] == 3:
                pixels = np.dstack([pixels, np.zeros(pixels.shape[:2], np.float32)])
            names = ("R", "G", "B", "A")
        exr_io.write_exr(dcc.frame_path(node["file"].value(), f), pixels, names)


def executeInMainThread(fn: Callable, args: tuple = ()) -> None:
    _record("executeInMainThread", getattr(fn, "__name__", str(fn)))
    with _main_lock:
        main_queue.append((fn, tuple(args)))


def run_main_queue() -> int:
    """Run the queued main-thread calls (what Nuke's event loop would do); returns how many ran."""
    with _main_lock:
        todo, main_queue[:] = list(main_queue), []
    for fn, args in todo:
        fn(*args)
    return len(todo)


class ProgressTask:
    instances: list["ProgressTask"] = []

    def __init__(self, title: str):
        self.title, self.progress, self.messages, self.cancelled = title, 0, [], False
        ProgressTask.instances.append(self)
        _record("ProgressTask", title)

    def setProgress(self, percent: int) -> None:
        self.progress = int(percent)

    def setMessage(self, message: str) -> None:
        self.messages.append(message)

    def isCancelled(self) -> bool:
        return self.cancelled


class Menu:
    def __init__(self, name: str):
        self.name, self.items = name, []

    def addMenu(self, name: str, **kw: Any) -> "Menu":
        sub = Menu(name)
        self.items.append(sub)
        _record("addMenu", self.name, name)
        return sub

    def addCommand(self, name: str, command: Any = None, shortcut: str = "", **kw: Any) -> None:
        self.items.append((name, command))
        _record("addCommand", self.name, name, command)


_menus: dict[str, Menu] = {}


def menu(name: str) -> Menu:
    return _menus.setdefault(name, Menu(name))


def message(text: str) -> None:
    _record("message", text)


def pluginAddPath(path: str) -> None:
    _record("pluginAddPath", path)
