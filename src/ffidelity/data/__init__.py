"""Data sets: real images (scikit-learn's digits, CIFAR from a user's folder), time series and text, each with
synthetic generators whose ground truth is known."""

from ffidelity.data.images import ImageSplit, cifar, digits, safe_unpickle

__all__ = ["ImageSplit", "cifar", "digits", "safe_unpickle"]
