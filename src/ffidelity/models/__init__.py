"""Classifiers the experiments train (image CNNs, sequence and text models) and the Lightning training loop."""

from ffidelity.models.image import Residual, ResNet9, SmallCNN, conv_bn

__all__ = ["ResNet9", "Residual", "SmallCNN", "conv_bn"]
