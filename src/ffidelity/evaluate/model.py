"""A user's own classifier: a TorchScript file or a Hugging Face ``save_pretrained`` folder, loaded safely.

Nothing here unpickles a user's file: TorchScript archives are read by ``torch.jit.load`` (TorchScript's own
format), Hugging Face folders by ``from_pretrained`` offline. Every problem is raised as a ``ValueError`` (or
``FileNotFoundError``) whose one-line message names the file, so a command line can print it as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ffidelity.utils.modelio import logits_of, model_device


def short_error(exc: BaseException, limit: int = 200) -> str:
    """``"Type: message"`` in one line for any exception, cut to its first sentence when long.

    TorchScript errors say what failed on their last line, pickle refusals name the refused class further down:
    those lines are taken instead of the first.
    """
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    refused = next((m.group(1) for line in lines if (m := _REFUSED.search(line))), None)
    if refused:
        return f"{type(exc).__name__}: it holds a pickled {refused}, which is refused"
    first = lines[-1] if lines and "TorchScript interpreter" in lines[0] else (lines[0] if lines else "")
    if len(first) > limit and ". " in first[20:]:
        first = first[: first.index(". ", 20) + 1]
    if re.match(r"\w+(Error|Exception): ", first):  # the line names its own exception type
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REFUSED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class LogitsOnly(nn.Module):
    """Wraps a model whose output is a ``ModelOutput`` or a tuple so that ``forward`` returns the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def token_model(self) -> nn.Module:
        """The wrapped model, for removal in token space (:class:`ffidelity.TokenDrop`, :class:`ffidelity.TokenFill`)."""
        return self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


class TorchScriptLogits(LogitsOnly):
    """``LogitsOnly`` over a TorchScript module; a deep copy (fine-tuning trains one) is a save/load round trip,
    since ``copy.deepcopy`` of a ``ScriptModule`` gives parameters that are not leaves and cannot be optimised."""

    def __deepcopy__(self, memo: dict[int, Any]) -> TorchScriptLogits:
        from ffidelity.models.training import trainable_copy

        return TorchScriptLogits(trainable_copy(self.model)).train(self.training)


@dataclass
class LoadedModel:
    """A user's classifier ready for evaluation.

    Attributes:
        model: the module, in eval mode, on the CPU; ``forward(x)`` returns a logits tensor.
        path: where it was loaded from.
        kind: ``"torchscript"`` or ``"huggingface"``.
    """

    model: nn.Module
    path: Path
    kind: str

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind,
                "parameters": sum(p.numel() for p in self.model.parameters())}


def load_model(path: str | Path) -> LoadedModel:
    """Loads a TorchScript file or a Hugging Face image-classification folder (one with ``config.json``).

    Args:
        path: a file saved with ``torch.jit.save`` / ``ScriptModule.save``, or a folder written by
            ``save_pretrained`` of an ``AutoModelForImageClassification`` model.

    Returns:
        The model wrapped to return logits, in eval mode on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file or folder cannot be loaded as a model (the message names it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if path.is_dir():
        return LoadedModel(_load_huggingface(path), path, "huggingface")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError, ValueError, ... depending on what is wrong
        why = short_error(exc)
        if "constants.pkl" in why:  # a zip archive of torch.save: pickled Python objects, never loaded here
            why = "it is a torch.save file of pickled objects, not a TorchScript archive"
        raise ValueError(f"{path}: cannot load it as a TorchScript model ({why}); save the model with "
                         "torch.jit.script(model).save(path), or pass a Hugging Face save_pretrained folder"
                         ) from None
    return LoadedModel(TorchScriptLogits(module).eval(), path, "torchscript")


def _load_huggingface(folder: Path) -> nn.Module:
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: a model folder must hold a Hugging Face config.json (written by "
                         "save_pretrained); for a TorchScript model pass the file itself")
    try:
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "some weights were not initialised" chatter
        hf_logging.disable_progress_bar()  # "Loading weights" bars
        try:
            model = AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    except Exception as exc:  # bad config, missing or damaged weights, unknown architecture
        raise ValueError(f"{folder}: cannot load it as a Hugging Face image classifier ({short_error(exc)})"
                         ) from None
    return LogitsOnly(model.float()).eval()


def probe_model(loaded: LoadedModel, x: torch.Tensor, inputs_path: str | Path, batch: int = 2) -> int:
    """Runs the model on the first inputs and returns its number of classes.

    Args:
        loaded: the model.
        x: the inputs (N, ...); the first ``batch`` of them are fed.
        inputs_path: named in the error when the model rejects the inputs.
        batch: inputs fed (two, so that a model that squeezes the batch axis is caught too).

    Raises:
        ValueError: the model fails on the inputs, or does not return finite 2-D ``(batch, classes)`` logits.
    """
    model, path = loaded.model, loaded.path
    xb = x[: max(1, batch)]
    try:
        with torch.inference_mode():
            out = model(xb.to(model_device(model)))
    except Exception as exc:
        raise ValueError(f"{path}: the model rejects the inputs of {inputs_path} (shape "
                         f"{tuple(x.shape[1:])} per input): {short_error(exc)}") from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{path}: the model must return a logits tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != xb.shape[0]:
        raise ValueError(f"{path}: the model must return 2-D (batch, classes) logits; on a batch of "
                         f"{xb.shape[0]} inputs it returned shape {tuple(out.shape)}")
    if out.shape[1] < 2:
        raise ValueError(f"{path}: the model returns {out.shape[1]} logit per input; a classifier needs at "
                         "least 2 classes")
    if not torch.isfinite(out).all():
        raise ValueError(f"{path}: the model returns NaN or inf logits on the inputs of {inputs_path}")
    return int(out.shape[1])


__all__ = ["LoadedModel", "LogitsOnly", "TorchScriptLogits", "load_model", "probe_model", "short_error"]
