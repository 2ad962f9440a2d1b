"""One settings reference: the variables the code reads, the table in docs/operations.md and
.env.example name the same set.

The variables read are collected from the source with ``ast`` (not by importing the settings,
which would read only the branch the current environment takes): calls of django-environ's
``env`` (``env("X")``, ``env.bool("X")``, ``env.int``, ``env.json``, …), ``config.env.required("X")``
and ``os.environ`` / ``os.getenv`` reads, in every module of the project outside the tests and
the benchmarks.

The same file keeps the docs whole: links only to files and headings of the repository, and a
README of at most 200 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
ENV_EXAMPLE = ROOT / ".env.example"
# Not the service's settings: the suite's and the benchmarks' own switches, CI scripts.
SKIPPED_DIRS = {"tests", "bench", "migrations", "node_modules", "media", "staticfiles", "locale"}
TABLE_HEADING = "## Settings reference"


def _source_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in parts[:-1]):
            continue
        files.append(path)
    return files


def _is_env(node: ast.expr) -> bool:
    """``env`` or ``env.<cast>``: django-environ's reader."""
    if isinstance(node, ast.Name):
        return node.id == "env"
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "env"


def _is_os_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _first_string(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def variables_read(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            reads = (
                _is_env(func)
                or (isinstance(func, ast.Name) and func.id == "required")
                # os.environ.get / .setdefault / os.getenv
                or (
                    isinstance(func, ast.Attribute)
                    and _is_os_environ(func.value)
                    and func.attr in {"get", "setdefault"}
                )
                or (
                    isinstance(func, ast.Attribute)
                    and func.attr == "getenv"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "os"
                )
            )
            name = _first_string(node) if reads else None
            if name:
                names.add(name)
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
    return names


def read_by_the_code() -> set[str]:
    names = set()
    for path in _source_files():
        names |= variables_read(ast.parse(path.read_text(), filename=str(path)))
    return names


def in_the_settings_table() -> list[str]:
    """The first cell of each row of the table under TABLE_HEADING, in order."""
    text = OPERATIONS.read_text()
    assert TABLE_HEADING in text, f"{OPERATIONS.relative_to(ROOT)} has no '{TABLE_HEADING}' section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cell = re.match(r"\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", line)
        if cell:
            rows.append(cell.group(1))
    return rows


def in_env_example() -> list[str]:
    """Each ``NAME=`` line of .env.example, commented out (``# NAME=``) or not."""
    return re.findall(r"^#?\s?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def test_the_scan_finds_every_kind_of_read():
    tree = ast.parse(
        'env("A", default=""); env.bool("B"); env.json("C", default={}); required("D")\n'
        'os.environ["E"]; os.environ.get("F"); os.environ.setdefault("G", "x"); os.getenv("H")\n'
        'other("I"); settings.env("J")'
    )
    assert variables_read(tree) == set("ABCDEFGH")


def test_the_code_reads_the_variables_the_reference_is_checked_against():
    read = read_by_the_code()
    # A scan that found nothing (a moved settings package) would make the tests below vacuous.
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "FITTING_ENGINE", "DJANGO_SETTINGS_MODULE"} <= read


def test_every_variable_read_has_one_row_in_the_settings_table_and_no_row_is_stale():
    read = read_by_the_code()
    rows = in_the_settings_table()
    duplicated = sorted({name for name in rows if rows.count(name) > 1})
    assert not duplicated, f"docs/operations.md lists these twice: {duplicated}"
    missing, stale = sorted(read - set(rows)), sorted(set(rows) - read)
    assert not missing, f"read by the code, missing from docs/operations.md: {missing}"
    assert not stale, f"in docs/operations.md, read by nothing: {stale}"


def test_env_example_lists_every_variable_read_and_nothing_else():
    read = read_by_the_code()
    listed = in_env_example()
    duplicated = sorted({name for name in listed if listed.count(name) > 1})
    assert not duplicated, f".env.example lists these twice: {duplicated}"
    missing, stale = sorted(read - set(listed)), sorted(set(listed) - read)
    assert not missing, f"read by the code, missing from .env.example: {missing}"
    assert not stale, f"in .env.example, read by nothing: {stale}"


# --- the docs link only inside the repository, and every link resolves --------------------------
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", path.read_text(), flags=re.MULTILINE)}


def test_the_docs_link_only_to_files_and_headings_of_the_repository():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (outside the repository)")
                continue
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
