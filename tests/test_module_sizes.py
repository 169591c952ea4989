"""Modules stay small enough to read in one sitting: every source module of core/, server/ and plugin/ is at
most ``MAX_LINES`` lines. A module that grows past it is split along its seams (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("core", "server", "plugin")
MAX_LINES = 400


def module_sizes(repo: Path = REPO) -> dict[str, int]:
    """Lines of every .py file under the source folders, by path relative to the repository."""
    return {
        str(p.relative_to(repo)): len(p.read_text(encoding="utf-8").splitlines())
        for folder in SOURCE_FOLDERS
        for p in sorted((repo / folder).rglob("*.py"))
    }


def test_no_source_module_is_over_the_limit():
    sizes = module_sizes()
    assert len(sizes) > 100 and "core/engine/step.py" in sizes
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:10]
    print("largest modules:", ", ".join(f"{path} {n}" for path, n in largest))
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}, f"split these modules (limit {MAX_LINES} lines): {too_long}"


def test_the_size_check_sees_a_long_module(tmp_path):
    (tmp_path / "core" / "shot").mkdir(parents=True)
    (tmp_path / "core" / "shot" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "short.py").write_text("x = 1\n")
    assert module_sizes(tmp_path) == {"core/shot/long.py": MAX_LINES + 1, "server/short.py": 1}
