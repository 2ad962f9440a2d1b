"""Dependencies run one way: config → fitting → users → core, and core imports no app.

Read from the source (every import statement, also those inside functions), so a lazy import
cannot hide a dependency that runs the wrong way.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each layer must never import (a package and everything below it).
FORBIDDEN = {
    "core": {"config", "users", "fitting"},
    "users": {"config", "fitting"},
    "fitting": {"config"},
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def wrong_way(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_the_wrong_way(package):
    assert wrong_way(package) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text("def f():\n    from fitting.models import Item\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert wrong_way("core") == ["core/bad.py imports fitting.models"]
