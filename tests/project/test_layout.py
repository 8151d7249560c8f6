"""The code's layout stays as the layering promises: no import cycles, layers importing downward only, short
modules and small folders.

Imports are read from the sources (imports inside functions count): a module depends on every module of the
two packages it imports. ``from package import module`` depends on the module, not on the package's
``__init__``; a package's ``__init__`` depends on what it re-exports.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("ffidelity", "multimae_der")
MAX_LINES = 500
MAX_MODULES_PER_FOLDER = 15
#: each package's subpackages from the bottom layer up; a module may import its own layer and the ones below.
#: ``__init__`` facades and ``__main__`` sit on top of their package.
LAYERS = {
    "ffidelity": [{"_version", "utils"}, {"units"}, {"models"}, {"data"}, {"explainers"}, {"metrics"},
                  {"benchmark"}, {"evaluate", "integrations"}, {"cli"}],
    "multimae_der": [{"_version", "data"}, {"model"}, {"explain"}, {"app"}, {"cli"}],
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (SRC / package).rglob("*.py"):
            parts = path.relative_to(SRC).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in MODULES] or [base]
            if any(t not in MODULES for t in subs):
                targets.append(base)
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES and (dep := _resolve(target)) and dep != name:
                deps.add(dep)
    return deps


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> tuple[str, int]:
    package, _, rest = module.partition(".")
    top = rest.split(".")[0] if rest else ""
    for rank, names in enumerate(LAYERS[package]):
        if top in names:
            return package, rank
    return package, len(LAYERS[package])  # the package facade and __main__


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_import_downward_only() -> None:
    upward = []
    for module, deps in GRAPH.items():
        package, rank = _layer(module)
        for dep in deps:
            dep_package, dep_rank = _layer(dep)
            if dep_package != package:
                if package == "ffidelity":
                    upward.append(f"{module} -> {dep} (ffidelity never imports multimae_der)")
                continue
            if dep_rank > rank:
                upward.append(f"{module} -> {dep}")
    assert not upward, "imports of a higher layer:\n" + "\n".join(sorted(upward))


def test_every_subpackage_has_a_layer() -> None:
    for package, layers in LAYERS.items():
        known = set().union(*layers)
        subpackages = {p.name for p in (SRC / package).iterdir() if (p / "__init__.py").is_file()}
        modules = {p.stem for p in (SRC / package).glob("*.py")} - {"__init__", "__main__"}
        assert subpackages | modules <= known, f"{package}: no layer for {sorted((subpackages | modules) - known)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_short(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(SRC)} has {lines} lines (at most {MAX_LINES})"


def test_folders_stay_small() -> None:
    per_folder = Counter(path.parent for path in MODULES.values())
    crowded = {str(f.relative_to(SRC)): n for f, n in per_folder.items() if n > MAX_MODULES_PER_FOLDER}
    assert not crowded, f"folders with more than {MAX_MODULES_PER_FOLDER} modules: {crowded}"


def test_the_checks_see_imports_inside_functions() -> None:
    """The graph is built from every import statement, so a deferred import cannot hide a cycle."""
    assert "ffidelity.metrics.finetune" in GRAPH["ffidelity.metrics.engine"]  # imported inside FFidelity.finetune
    assert "ffidelity.metrics.engine" not in GRAPH["ffidelity.metrics.finetune"]
