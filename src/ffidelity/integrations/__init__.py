"""Adapters that run the fidelity engine inside other explainability toolkits.

``ffidelity.integrations.quantus`` exposes Fidelity, R-Fidelity and F-Fidelity as Quantus metrics
(``FidelityMetric``, ``RFidelityMetric``, ``FFidelityMetric``). It needs the optional ``quantus`` extra
(``pip install 'ffidelity-multimae[quantus]'``); neither ``import ffidelity`` nor ``import ffidelity.integrations``
imports Quantus. The metric classes are also reachable here, imported on first access::

    from ffidelity.integrations import FFidelityMetric  # imports Quantus now, not before
"""

from __future__ import annotations

import importlib
from typing import Any

#: names served lazily from ``ffidelity.integrations.quantus``
_QUANTUS_NAMES = ("FidelityMetric", "RFidelityMetric", "FFidelityMetric", "quantus_explain_func")

__all__ = list(_QUANTUS_NAMES)


def __getattr__(name: str) -> Any:
    if name in _QUANTUS_NAMES:
        return getattr(importlib.import_module("ffidelity.integrations.quantus"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
