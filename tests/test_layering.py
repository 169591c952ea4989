"""The layering the design promises, checked on every import statement in the source (module level and
inside functions alike), not only on what happens to be imported at run time.

- Inside core (package ``colorprop``) imports point down the table ``LAYERS``: a module imports its own
  part or a lower layer, never a higher one nor another part of its own layer; and no import circle.
- Between the packages, one table (``PACKAGES``): which of our packages each may import and which
  libraries it never imports. core never imports the server, the client, zmq, nuke or bpy; the server
  imports core and the client; the DCC side (colorprop_client, the Nuke and Blender folders) never imports
  torch, OpenImageIO, cv2, core or the server, and each host's folder only its own host's module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import colorprop

CORE = Path(colorprop.__file__).parent
PLUGIN = Path(__file__).resolve().parents[1] / "plugin"

# The layers of core, bottom first. The key is the part of the module name after ``colorprop.``
# ("" is the package itself, which holds only __version__).
LAYERS: dict[str, int] = {
    "": 0,
    "errors": 0,  # typed errors, the version
    "io": 1,
    "colour": 1,  # EXR and sequences; colour spaces, Lab, chroma upsampling
    "data": 2,  # footage, the example shot, synthetic video
    "engine": 3,  # flow, networks, the propagator, confidence, weights
    "shot": 4,  # one shot end to end: pre-flight, pipeline, contact sheets
    "measure": 5,
    "training": 5,  # evaluation, benchmarks; training
    "cli": 6,  # one module per command (and ``python -m colorprop``)
}
CORE_NEVER = ("colorprop_server", "colorprop_client", "zmq", "nuke", "bpy")
DCC_NEVER = ("torch", "OpenImageIO", "cv2", "colorprop", "colorprop_server")
REPO = Path(__file__).resolve().parents[1]
OURS = ("colorprop", "colorprop_server", "colorprop_client", "colorprop_nuke", "colorprop_blender")

# package: (its folder, our packages it may import, other libraries it never imports)
PACKAGES: dict[str, tuple[str, set[str], set[str]]] = {
    "colorprop": ("core", {"colorprop"}, {"zmq", "nuke", "bpy"}),
    "colorprop_server": ("server", {"colorprop_server", "colorprop", "colorprop_client"}, {"nuke", "bpy"}),
    "colorprop_client": (
        "plugin/colorprop_client",
        {"colorprop_client"},
        {"torch", "OpenImageIO", "cv2", "nuke", "bpy"},
    ),
    "colorprop_nuke": ("plugin/nuke", {"colorprop_nuke", "colorprop_client"}, {"torch", "OpenImageIO", "cv2", "bpy"}),
    "colorprop_blender": (
        "plugin/blender",
        {"colorprop_blender", "colorprop_client"},
        {"torch", "OpenImageIO", "cv2", "nuke"},
    ),
}


def module_name(path: Path, root: Path, package: str) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((package, *parts))


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) for every import in ``source``: ``import a.b`` gives ``a.b``; ``from a import
    b`` gives ``a.b`` (the caller decides whether ``b`` is a module); relative imports are made
    absolute; ``importlib.import_module("x")`` and ``__import__("x")`` with a literal count too."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def core_modules(root: Path = CORE) -> dict[str, Path]:
    return {module_name(p, root, "colorprop"): p for p in sorted(root.rglob("*.py"))}


def resolve(name: str, modules: set[str]) -> str:
    """The longest prefix of ``name`` that is a module of core (``colorprop.colour.convert.luminance`` ->
    ``colorprop.colour.convert``)."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def part(module: str) -> str:
    name = module.split(".")[1] if "." in module else ""
    return "cli" if name == "__main__" else name


def layering_violations(root: Path = CORE) -> list[str]:
    """Every import in core that breaks the table or the never-list, and every import circle."""
    modules = core_modules(root)
    problems, graph = [], {}
    for module, path in modules.items():
        graph[module] = set()
        here = part(module)
        if here not in LAYERS:
            problems.append(f"{module}: part {here!r} is not in the LAYERS table")
            continue
        for line, name in imports_of(path.read_text(), module, path.name == "__init__.py"):
            where = f"{path.relative_to(root.parent)}:{line} imports {name}"
            if name.split(".")[0] in CORE_NEVER:
                problems.append(f"{where} (core never imports {name.split('.')[0]})")
            if name.split(".")[0] != "colorprop":
                continue
            target = resolve(name, set(modules))
            there = part(target)
            if target != module:
                graph[module].add(target)
            if there == here:
                continue
            if there not in LAYERS:
                problems.append(f"{where}: unknown part {there!r}")
            elif LAYERS[there] >= LAYERS[here]:
                problems.append(
                    f"{where}: {here} (layer {LAYERS[here]}) may not import {there} (layer {LAYERS[there]})"
                )
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_in_core_points_down_the_layers():
    modules = core_modules()
    assert "colorprop.shot.pipeline" in modules and "colorprop.cli.main" in modules
    assert {part(m) for m in modules} <= set(LAYERS), "a new folder in core/ needs its row in LAYERS"
    assert layering_violations() == []


def test_the_checker_catches_upward_function_level_and_circular_imports(tmp_path):
    """The checker on a small tree shaped like core's, with the violations the tree once had."""
    root = tmp_path / "colorprop"
    files = {
        "__init__.py": "__version__ = '0'\n",
        "errors.py": "",
        "io/__init__.py": "",
        "io/exr.py": "from colorprop.errors import X\n",
        "shot/__init__.py": "",
        "shot/example.py": "def run():\n    from colorprop.cli.main import Progress\n",  # shot -> cli, in a function
        "cli/__init__.py": "",
        "cli/main.py": "from colorprop.shot import example\nfrom colorprop_server.remote import go\n",
        "engine/__init__.py": "",
        "engine/flow.py": "def f():\n    from ..measure.metrics import psnr\n",  # relative, upward
        "measure/__init__.py": "",
        "measure/metrics.py": "import importlib\nimportlib.import_module('zmq')\n",
        "colour/__init__.py": "",
        "colour/convert.py": "from colorprop.io import exr\n",  # a sibling of the same layer
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    found = "\n".join(layering_violations(root))
    assert "shot (layer 4) may not import cli" in found
    assert "imports colorprop_server.remote.go (core never imports colorprop_server)" in found
    assert "engine (layer 3) may not import measure" in found
    assert "core never imports zmq" in found
    assert "colour (layer 1) may not import io" in found
    assert "import circle: colorprop.cli.main -> colorprop.shot.example -> colorprop.cli.main" in found
    assert "io/exr.py" not in found


def package_violations(repo: Path = REPO) -> list[str]:
    """Every import in a package's folder that the ``PACKAGES`` table does not allow."""
    bad = []
    for package, (folder, may, never) in PACKAGES.items():
        for path in sorted((repo / folder).rglob("*.py")):
            module = package + "." + ".".join(path.relative_to(repo / folder).with_suffix("").parts)
            for line, name in imports_of(path.read_text(), module):
                top = name.split(".")[0]
                if (top in OURS and top not in may) or top in never:
                    bad.append(f"{path.relative_to(repo)}:{line} imports {name} ({package} may not)")
    return bad


def test_every_package_imports_only_what_the_table_allows():
    assert {folder for folder, _, _ in PACKAGES.values()} >= {"core", "server", "plugin/colorprop_client"}
    assert package_violations() == []


def test_the_package_table_catches_an_import_across_it(tmp_path):
    files = {
        "core/shot/run.py": "import zmq\n",
        "server/jobs.py": "from colorprop.shot import run\nimport bpy\n",
        "plugin/colorprop_client/dcc.py": "def f():\n    import torch\n    from colorprop_server import cli\n",
        "plugin/nuke/colorprop_nuke/node.py": "import nuke\nimport bpy\n",
        "plugin/blender/colorprop_blender/ops.py": "import bpy\nfrom ._client import dcc\nimport colorprop_nuke\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(package_violations(tmp_path))
    assert "core/shot/run.py:1 imports zmq (colorprop may not)" in found
    assert "server/jobs.py:2 imports bpy" in found and "server/jobs.py:1" not in found
    assert "dcc.py:2 imports torch" in found and "dcc.py:3 imports colorprop_server.cli" in found
    assert "node.py:2 imports bpy" in found and "node.py:1" not in found
    assert "ops.py:3 imports colorprop_nuke" in found and "ops.py:2" not in found
    assert len(found.splitlines()) == 6


@pytest.mark.parametrize(
    "code, never",
    [
        ("import colorprop_client.client, colorprop_client.protocol, colorprop_client.dcc", DCC_NEVER),
        ("import colorprop.cli.main as m; m.build_parser()", ("zmq", "nuke", "bpy")),
    ],
    ids=["client", "core-cli"],
)
def test_what_is_loaded_at_run_time(code, never):
    """The static check above, confirmed on what a process really loads (the CLI parser included, which
    lists the server's commands through entry points without importing the server)."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not set(never) & set(out.split())
