"""F-Fidelity: faithfulness evaluation of explanations, robust to out-of-distribution removal.

Public API::

    from ffidelity import FFidelity, ImageUnits, explain
    metric = FFidelity(beta=0.1, n_samples=50, units=ImageUnits())
    evaluator = metric.finetune(model, (x_train, y_train), epochs=10)
    attributions = explain("saliency", evaluator, x_test, y_test)
    result = metric.evaluate(evaluator, x_test, y_test, attributions)
    result.fid_plus, result.fid_minus

The package is layered, each folder importing only the ones above it in this list: ``utils`` (shared helpers),
``units`` (what is removed and how), ``models`` and ``data``, ``explainers``, ``metrics`` (the fidelity engine,
fine-tuning, ROAR, ROAD), ``benchmark`` (the controlled experiment), ``evaluate`` and ``integrations``, ``cli``.
"""

from ffidelity._version import __version__
from ffidelity.explainers import EXPLAINERS, degrade, explain
from ffidelity.metrics.engine import DEFAULT_SPARSITIES, FFidelity, Fidelity, RFidelity
from ffidelity.metrics.result import FidelityResult
from ffidelity.metrics.road import ROAD, NoisyLinearImputer
from ffidelity.units import (
    GridUnits,
    GroupUnits,
    ImageUnits,
    SequenceUnits,
    TokenDrop,
    TokenFill,
    TokenUnits,
    Units,
    VideoUnits,
)
from ffidelity.utils.allocator import tune_allocator
from ffidelity.utils.moved import install as _install_moved

#: module paths of the flat layout before subpackages -> where each module lives now (old paths still import,
#: with a DeprecationWarning)
_MOVED_MODULES: dict[str, str] = {f"ffidelity.{old}": f"ffidelity.{new}" for old, new in {
    "allocator": "utils.allocator", "atomic": "utils.atomic", "progress": "utils.progress",
    "registry": "utils.registry", "report": "utils.report", "safe_pickle": "utils.safe_pickle",
    "video_units": "units.video", "token_drop": "units.token_drop",
    "engine": "metrics.engine", "result": "metrics.result", "finetune": "metrics.finetune", "road": "metrics.road",
    "roar": "metrics.roar", "size": "metrics.size",
    "text_explainers": "explainers.text", "timeseries": "data.timeseries", "text": "data.text",
    "seq_models": "models.sequence", "training": "models.training", "samplers": "models.samplers",
    "tasks": "benchmark.tasks", "seq_tasks": "benchmark.sequence_tasks", "benchmark_report": "benchmark.report",
    "correlation": "benchmark.correlation", "distributed": "benchmark.distributed",
    "user_model": "evaluate.model", "user_data": "evaluate.data", "user_eval": "evaluate.run",
    "user_report": "evaluate.report",
}.items()}
_install_moved("ffidelity", _MOVED_MODULES)

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
    "TokenFill",
    "TokenUnits",
    "Units",
    "VideoUnits",
    "__version__",
    "degrade",
    "explain",
    "tune_allocator",
]
