"""The multimae_der tests: their shared helper modules (``_mm_fakes``, ``_mm_cue_fakes``, ``_mm_serve_helpers``)
live in this folder and import by name (pytest's importlib mode puts no test folder on ``sys.path``)."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
