"""The documentation site covers the code.

* every name in ``ffidelity.__all__`` and every public function and class of the documented ``multimae_der``
  modules has a docstring and is rendered on the API pages (found in the built site's ``objects.inv``);
* every public module of both packages has an API entry;
* every command of both CLIs is in the generated CLI reference, with each of its options.

The site is built once with ``mkdocs build --strict`` (any warning fails). ``make test`` builds it before
pytest and passes the folder in ``DOCS_SITE_DIR``, so it is not built twice.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import subprocess
import sys
import zlib
from pathlib import Path

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
# modules without an API page: the command lines (documented by the CLI reference) and ``python -m`` entries
NOT_API = {"cli", "__main__"}


def _public_modules(package: str) -> list[str]:
    """Public modules of ``package`` in this checkout, in every subpackage (dotted, relative to the package),
    minus :data:`NOT_API` and the subpackages' ``__init__`` facades (their names live in their modules)."""
    found = pkgutil.walk_packages([str(SRC / package)], prefix=f"{package}.")  # imports the subpackages
    names = (m.name.removeprefix(f"{package}.") for m in found if not m.ispkg)
    return sorted(n for n in names if not any(part.startswith("_") or part in NOT_API for part in n.split(".")))


def _gen_cli():
    spec = importlib.util.spec_from_file_location("_docs_gen_cli", ROOT / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site: ``DOCS_SITE_DIR`` when ``make test`` built it already, else a strict build here."""
    given = os.environ.get("DOCS_SITE_DIR")
    if given and (Path(given) / "objects.inv").is_file():
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def inventory(site: Path) -> set[str]:
    """Every object identifier mkdocstrings rendered (the Sphinx inventory ``objects.inv``)."""
    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def packages() -> dict[str, griffe.Module]:
    """Both packages as griffe (what mkdocstrings renders) reads them from this checkout's sources."""
    loader = griffe.GriffeLoader(search_paths=[str(SRC)], docstring_parser=griffe.Parser.google)
    return {name: loader.load(name) for name in ("ffidelity", "multimae_der")}


def _has_docstring(obj: griffe.Object | griffe.Alias) -> bool:
    target = obj.final_target if obj.is_alias else obj
    return bool(target.docstring and target.docstring.value.strip())


def test_every_name_of_ffidelity_all_is_documented(packages, inventory) -> None:
    import ffidelity

    pkg = packages["ffidelity"]
    assert sorted(pkg.exports or ()) == sorted(ffidelity.__all__), "griffe and Python disagree on __all__"
    no_doc = [n for n in ffidelity.__all__ if not _has_docstring(pkg[n])]
    assert not no_doc, f"names in ffidelity.__all__ without a docstring: {no_doc}"
    missing = [n for n in ffidelity.__all__ if f"ffidelity.{n}" not in inventory]
    assert not missing, f"names in ffidelity.__all__ missing from docs/reference/ffidelity.md: {missing}"


@pytest.mark.parametrize("package", ["ffidelity", "multimae_der"])
def test_every_public_module_has_an_api_entry(package, inventory) -> None:
    missing = [m for m in _public_modules(package) if f"{package}.{m}" not in inventory]
    assert not missing, (f"{package} modules without an API entry: {missing}; add a '::: {package}.<module>' "
                         f"block to a page under docs/reference/")


def _public_definitions(module: griffe.Module) -> list[griffe.Object]:
    """Functions and classes defined in ``module`` that are public (``__all__`` when it has one)."""
    return [obj for obj in module.members.values()
            if not obj.is_alias and obj.kind in (griffe.Kind.FUNCTION, griffe.Kind.CLASS) and obj.is_public]


def test_every_public_function_and_class_of_multimae_der_is_documented(packages, inventory) -> None:
    pkg = packages["multimae_der"]
    no_doc, missing = [], []
    for name in _public_modules("multimae_der"):
        for obj in _public_definitions(pkg[name]):
            if not _has_docstring(obj):
                no_doc.append(obj.path)
            elif obj.path not in inventory:
                missing.append(obj.path)
    assert not no_doc, f"public functions / classes without a docstring: {no_doc}"
    assert not missing, f"documented but not on the API pages: {missing}"


@pytest.mark.parametrize(("prog", "module"), [("ffidelity", "ffidelity.cli"), ("multimae-der", "multimae_der.cli")])
def test_every_cli_command_is_in_the_cli_reference(prog, module, site) -> None:
    gen = _gen_cli()
    _, commands = gen.commands(module)
    assert commands, f"no commands found in {module}"
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    markdown = gen.cli_markdown()
    for name, cmd in commands:
        anchor = f"{prog}-{name}".replace(" ", "-")
        assert f'id="{anchor}"' in page, f"`{prog} {name}` is missing from the CLI reference"
        section = gen.command_markdown(prog, name, cmd)
        assert section.split("\n", 1)[0] in markdown
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            shown = param.opts[0] if gen._is_option(param) else param.name.upper()
            assert f"`{shown}`" in section, f"`{prog} {name}`: {shown} is missing from its table"
