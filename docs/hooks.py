"""MkDocs hooks: the documented code is this checkout's ``src/``, and the CLI reference is generated at build time."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
# Sphinx roles in docstrings (:class:`x`, :func:`~a.b`) render as a stray ":class:" before the code span
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|obj|exc|const):(<code>)~?")


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("_docs_gen_cli", Path(__file__).with_name("gen_cli.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_config(config: Any) -> Any:
    """Imports resolve to this checkout's ``src/`` (not another editable install of the package)."""
    src = str(Path(config.config_file_path).parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    os.environ.setdefault("MPLBACKEND", "Agg")
    return config


def on_files(files: Files, config: Any) -> Files:
    """Adds the generated CLI reference page."""
    files.append(File.generated(config, CLI_PAGE, content=_gen_cli().cli_markdown()))
    return files


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Drops the Sphinx markup docstrings use: role prefixes of code spans, and the "::" before a code block."""
    return SPHINX_ROLE.sub(r"\1", html).replace("::</p>", ":</p>")
