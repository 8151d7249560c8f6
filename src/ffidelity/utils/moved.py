"""Module paths of an earlier layout that still import, with a ``DeprecationWarning`` naming the new path.

Both packages were flat before they were split into subpackages (``ffidelity.engine`` became
``ffidelity.metrics.engine``, ...). :func:`install` registers a package's old paths: ``import ffidelity.engine``
or ``from ffidelity.engine import Fidelity`` then returns the module at its new path (the same module object, so
classes and functions are identical), after one warning. No file is kept at the old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Mapping
from types import CodeType, ModuleType


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of one package and loads them as the modules at their new paths."""

    def __init__(self, package: str, moved: Mapping[str, str]) -> None:
        self.package = package
        self.moved = dict(moved)
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = self.moved[spec.name]
        warnings.warn(f"{spec.name} has moved to {new}; import it from there (the old path will be removed in a "
                      "later release)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import system overwrites it with the old path's spec
        return module

    def get_code(self, fullname: str) -> CodeType:
        """What ``python -m <old path>`` runs: the module at its new path, as ``__main__``, after a note."""
        new = self.moved[fullname]
        source = (f"import runpy, sys\nprint('note: {fullname} has moved to {new}; run python -m {new}', "
                  f"file=sys.stderr)\nrunpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n")
        return compile(source, f"<{fullname}, moved to {new}>", "exec")

    def exec_module(self, module: ModuleType) -> None:
        spec = self._specs.pop(module.__spec__.name, None)  # the old path's spec, set by the import system
        if spec is not None:
            module.__spec__ = spec


def install(package: str, moved: Mapping[str, str]) -> None:
    """Makes every old path in ``moved`` (old dotted name -> new dotted name) import as its new module.

    Args:
        package: the package the paths belong to; installing it again replaces its earlier table.
        moved: old module path -> new module path, both absolute.
    """
    for finder in list(sys.meta_path):
        if isinstance(finder, _MovedFinder) and finder.package == package:
            sys.meta_path.remove(finder)
    sys.meta_path.append(_MovedFinder(package, moved))
