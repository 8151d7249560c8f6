"""What every layer needs to call a model: its logits, whatever it returns, and the device it lives on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def logits_of(output: Any) -> torch.Tensor:
    """Logits from a model output: a tensor, a Hugging Face ``ModelOutput`` or a (logits, ...) tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
