"""The paper's controlled experiment: tasks, the resumable run, the correlation scores, the report, and
sharding over processes.

Importing the package registers every task: images (:mod:`ffidelity.benchmark.tasks`), time series and text
(:mod:`ffidelity.benchmark.sequence_tasks`).
"""

from ffidelity.benchmark import sequence_tasks as _sequence_tasks  # noqa: F401  (registers its tasks)
from ffidelity.benchmark.config import (
    METHOD_NAMES,
    METHODS,
    NOISES,
    SCORE_NAMES,
    SCORES,
    BenchmarkConfig,
    StaleRunError,
)
from ffidelity.benchmark.result import BenchmarkResult
from ffidelity.benchmark.runner import default_methods, run

__all__ = ["METHODS", "METHOD_NAMES", "NOISES", "SCORES", "SCORE_NAMES", "BenchmarkConfig", "BenchmarkResult",
           "StaleRunError", "default_methods", "run"]
