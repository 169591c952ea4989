"""The docs say what the code and its measurements say.

- A table generated from a JSON is marked in the Markdown by a comment line just above it,
  ``<!-- table: KIND path/to/file.json -->``; the test renders the JSON with the command's own formatter and
  the table must be the same, figure for figure (KIND: ``eval``, ``eval-per-range``, ``bench``,
  ``bench-live``).
- No link leaves the repository: a reader of the repository has nothing outside it; every relative link
  resolves to a file that is there.
- docs/README.md is the index of the docs: it names every page in docs/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- table: (?P<kind>[\w-]+) (?P<json>\S+\.json) -->\s*$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def render(kind: str, results: dict) -> str:
    """The table the command that wrote ``results`` prints, by KIND."""
    if kind == "eval":
        from colorprop.measure.eval_report import format_table

        return format_table(results, results["methods"])
    if kind == "eval-per-range":
        from colorprop.measure.eval_report import format_per_range

        return format_per_range(results, results["methods"])
    if kind == "bench":
        from colorprop.measure.bench import format_table

        return format_table(results)
    if kind == "bench-live":
        from colorprop_server.bench_live import format_table

        return format_table(results)
    raise ValueError(f"unknown table kind {kind!r}")


def marked_tables(page: Path) -> list[tuple[int, str, Path, str]]:
    """(line, kind, json path, the table's text) for every marked table of ``page``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m:
            continue
        table = []
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            table.append(row)
        found.append((i + 1, m["kind"], REPO / m["json"], "\n".join(table)))
    return found


def all_marked_tables():
    return [(page, *t) for page in PAGES for t in marked_tables(page)]


def test_the_readme_quality_table_is_marked():
    kinds = {(page.name, kind) for page, _, kind, _, _ in all_marked_tables()}
    assert ("README.md", "eval") in kinds


@pytest.mark.parametrize(
    "page, line, kind, source, table", all_marked_tables(), ids=lambda v: v.name if isinstance(v, Path) else str(v)
)
def test_a_marked_table_is_what_its_json_renders(page, line, kind, source, table):
    assert source.is_file(), f"{page.name}:{line}: {source} does not exist"
    expected = render(kind, json.loads(source.read_text()))
    assert table == expected, f"{page.name}:{line}: the table differs from {source.relative_to(REPO)}"


def test_a_table_that_disagrees_with_its_json_is_caught(tmp_path):
    results = json.loads((REPO / "docs" / "eval.json").read_text())
    good = render("eval", results)
    page = tmp_path / "page.md"
    page.write_text(f"text\n<!-- table: eval docs/eval.json -->\n{good.replace('36.83', '36.84')}\n\nmore\n")
    [(line, kind, source, table)] = marked_tables(page)
    assert (line, kind, source) == (2, "eval", REPO / "docs" / "eval.json")
    assert table != render(kind, results) and table.count("\n") == good.count("\n")


def test_no_link_leaves_the_repository_and_every_relative_link_resolves():
    bad = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), start=1):
            if re.search(r"(^|[\s`(])(\.\./)+shared/|(^|[\s`(])shared/\w+\.md", line):
                bad.append(f"{page.relative_to(REPO)}:{n}: points outside the repository ({line.strip()[:80]})")
            for m in LINK.finditer(line):
                target = m["target"].split("#")[0]
                if not target or re.match(r"^[a-z]+:", target):
                    continue
                if not (page.parent / target).resolve().is_relative_to(REPO):
                    bad.append(f"{page.relative_to(REPO)}:{n}: {target} leaves the repository")
                elif not (page.parent / target).exists():
                    bad.append(f"{page.relative_to(REPO)}:{n}: {target} does not exist")
    assert bad == []


def test_the_docs_index_names_every_page():
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md" and f"]({p.name})" not in index]
    assert missing == []


def test_the_farm_exit_code_table_lists_the_codes_the_readme_documents():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("**Exit codes**") :].split("\n\n")[0]
    documented = {int(c) for c in re.findall(r"(?:^|[:;]\s*)(\d+) ", paragraph.replace("\n", " "))}
    farm = (REPO / "docs" / "FARM.md").read_text(encoding="utf-8")
    table = {int(m) for m in re.findall(r"^\| (\d+) \|", farm, re.M)}
    assert {0, 1, 2, 3, 4, 5, 6, 7, 130} <= documented
    assert table == documented
