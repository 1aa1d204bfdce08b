"""Every package the code or the tests import is declared, so `pip install -r requirements-dev.txt` (or the
`[dev]` extra) on a fresh virtual environment is enough to run the whole suite: the top-level modules imported
anywhere in the project (read with ast, not imported) are mapped to their installed distributions, and each
distribution must be named by the requirements files and by pyproject."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "experiments", "storage", "engine", "webapp", "cli", "bench", "tests")
RUNTIME = ("core", "experiments", "storage", "engine", "webapp", "cli")  # bench/ is dev tooling
OWN = set(PACKAGES) | {"app"}


def _imported(folders: tuple[str, ...]) -> dict[str, str]:
    """Top-level module -> the first file importing it, over every .py file under the folders."""
    found: dict[str, str] = {}
    files = [ROOT / "app.py"] if "core" in folders else []
    for folder in folders:
        files += sorted((ROOT / folder).rglob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _third_party(modules: dict[str, str]) -> dict[str, str]:
    return {
        m: where
        for m, where in modules.items()
        if m not in OWN and m not in sys.stdlib_module_names and m != "__future__"
    }


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        names.add(_norm(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def _file_requirements(name: str) -> set[str]:
    path = ROOT / name
    lines = path.read_text(encoding="utf-8").splitlines()
    out = _requirement_names(lines)
    for line in lines:  # follow `-r other.txt`
        if line.strip().startswith("-r "):
            out |= _file_requirements(line.strip()[3:].strip())
    return out


def _pyproject() -> tuple[set[str], set[str]]:
    """(runtime dependencies, the [dev] extra with every extra it names expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]

    def expand(reqs: list[str]) -> set[str]:
        out = set()
        for req in reqs:
            match = re.fullmatch(r"probeseg\[(.+)\]", req.strip())
            if match:
                for extra in match.group(1).split(","):
                    out |= expand(extras[extra.strip()])
            else:
                out |= _requirement_names([req])
        return out

    return _requirement_names(project["dependencies"]), expand(extras["dev"])


def _distributions(modules: dict[str, str]) -> dict[str, str]:
    """Distribution (normalised) -> a file that needs it; a module no installed distribution provides is
    reported as such (it could not be imported on this machine either)."""
    mapping = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    missing = []
    for module, where in sorted(modules.items()):
        dists = mapping.get(module)
        if not dists:
            missing.append(f"{module} (imported by {where})")
            continue
        out.setdefault(_norm(dists[0]), f"{module} in {where}")
    assert not missing, "imported but no installed distribution provides it: " + ", ".join(missing)
    return out


def test_the_runtime_imports_are_runtime_requirements():
    needed = _distributions(_third_party(_imported(RUNTIME)))
    runtime, _ = _pyproject()
    requirements = _file_requirements("requirements.txt")
    # optional features (zero-shot labels, PostgreSQL, ONNX) import their package lazily and are extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set()
    for name, reqs in project["optional-dependencies"].items():
        if name != "dev":
            extras |= _requirement_names([r for r in reqs if not r.startswith("probeseg")])
    undeclared = {d: w for d, w in needed.items() if d not in runtime and d not in extras}
    assert not undeclared, f"add to pyproject's dependencies (or an extra): {undeclared}"
    missing = {d: w for d, w in needed.items() if d not in requirements and d not in extras}
    assert not missing, f"add to requirements.txt: {missing}"


def test_every_import_of_the_tests_is_a_dev_requirement():
    needed = _distributions(_third_party(_imported(PACKAGES)))
    runtime, dev = _pyproject()
    dev_file = _file_requirements("requirements-dev.txt")
    missing_file = {d: w for d, w in needed.items() if d not in dev_file}
    assert not missing_file, f"add to requirements-dev.txt: {missing_file}"
    missing_extra = {d: w for d, w in needed.items() if d not in dev | runtime}
    assert not missing_extra, f"add to pyproject's [dev] extra: {missing_extra}"


def test_the_tools_the_tests_run_are_dev_requirements():
    """Tools the suite runs as programs, not imports (ruff, mypy in test_lint; setuptools builds a wheel)."""
    _, dev = _pyproject()
    dev_file = _file_requirements("requirements-dev.txt")
    for tool in ("ruff", "mypy", "pytest", "pytest-timeout", "setuptools"):
        assert tool in dev, f"add {tool} to pyproject's [dev] extra"
        assert tool in dev_file, f"add {tool} to requirements-dev.txt"
