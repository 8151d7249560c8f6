"""Benchmarks: speed, memory and scaling of ffidelity and multimae_der, as ratios measured in one run.

``python -m benchmarks.run --out benchmarks/results`` (``make bench``) runs every benchmark registered in
:data:`benchmarks.common.BENCHMARKS`, writes one JSON file per benchmark, ``SUMMARY.md`` (every target MET or
NOT MET with its number), ``summary.json`` and ``report.html`` with the figures.
"""
