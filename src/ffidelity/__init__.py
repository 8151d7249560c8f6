"""F-Fidelity: faithfulness evaluation of explanations, robust to out-of-distribution removal.

Public API::

    from ffidelity import FFidelity, ImageUnits, explain
    metric = FFidelity(beta=0.1, n_samples=50, units=ImageUnits())
    evaluator = metric.finetune(model, (x_train, y_train), epochs=10)
    attributions = explain("saliency", evaluator, x_test, y_test)
    result = metric.evaluate(evaluator, x_test, y_test, attributions)
    result.fid_plus, result.fid_minus
"""

from ffidelity import text_explainers as _text_explainers  # noqa: F401  (registers the layer_* explainers)
from ffidelity.allocator import tune_allocator
from ffidelity.engine import DEFAULT_SPARSITIES, FFidelity, Fidelity, RFidelity
from ffidelity.explainers import EXPLAINERS, degrade, explain
from ffidelity.result import FidelityResult
from ffidelity.road import ROAD, NoisyLinearImputer
from ffidelity.token_drop import TokenDrop
from ffidelity.units import GridUnits, ImageUnits, SequenceUnits, TokenUnits, Units
from ffidelity.video_units import GroupUnits, VideoUnits

__version__ = "0.1.0"
"""The package version."""

__all__ = [
    "DEFAULT_SPARSITIES",
    "EXPLAINERS",
    "ROAD",
    "FFidelity",
    "Fidelity",
    "FidelityResult",
    "GridUnits",
    "GroupUnits",
    "ImageUnits",
    "NoisyLinearImputer",
    "RFidelity",
    "SequenceUnits",
    "TokenDrop",
    "TokenUnits",
    "Units",
    "VideoUnits",
    "__version__",
    "degrade",
    "explain",
    "tune_allocator",
]
