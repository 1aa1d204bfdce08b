"""The engine is the web app's only door (issue 31): webapp/ imports nothing from storage/ but record types,
errors and constants, and never reaches the repository; only server.py, which builds the engine, opens one."""

from __future__ import annotations

import ast
from pathlib import Path

import storage
from storage import records

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
# what a caller may name from storage: the frozen records, their constants, the errors it turns into messages
PLAIN = {
    n for n, v in vars(records).items() if getattr(v, "__module__", "") == records.__name__ or n.isupper()
} | {
    "ConflictError",
    "DatabaseBusyError",
    "NotFoundError",
    "ValidationError",
}
COMPOSITION_ROOT = {"server.py": {"Repository"}}  # opens the database and builds the engine on it


def storage_names(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "storage":
            found += [
                (node.lineno, f"{node.module}.{a.name}" if node.module != "storage" else a.name)
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "storage"]
    return found


def test_the_web_app_imports_only_record_types_from_storage():
    wrong = []
    for path in sorted(WEBAPP.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = PLAIN | COMPOSITION_ROOT.get(path.name, set())
        wrong += [f"{path.name}:{line} {name}" for line, name in storage_names(tree) if name not in allowed]
        # and no way around it through the engine's repository attribute
        wrong += [
            f"{path.name}:{node.lineno} .repo"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "repo" and path.name not in COMPOSITION_ROOT
        ]
    assert not wrong, "webapp/ goes around the engine: " + ", ".join(wrong)


def test_the_check_sees_what_it_forbids():
    tree = ast.parse("from storage import Repository, ClassInfo\nimport storage.imports\nx = ctx.engine.repo")
    names = [name for _, name in storage_names(tree)]
    assert names == ["Repository", "ClassInfo", "storage.imports"]
    assert "Repository" not in PLAIN and "ClassInfo" in PLAIN and hasattr(storage, "ClassInfo")
