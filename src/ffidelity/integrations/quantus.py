"""Fidelity, R-Fidelity and F-Fidelity as Quantus metrics, computed by this package's batched engine.

Three classes mirror the three engine classes, so each takes exactly the engine's hyper-parameters:

* :class:`FidelityMetric` -> :class:`ffidelity.Fidelity` (the whole explanation, or its complement, removed);
* :class:`RFidelityMetric` -> :class:`ffidelity.RFidelity` (random removal, ``n_samples`` draws);
* :class:`FFidelityMetric` -> :class:`ffidelity.FFidelity` (random removal capped at ``beta * D`` on a
  random-mask fine-tuned evaluator).

They subclass ``quantus.Metric`` and follow its calling convention: hyper-parameters go into ``__init__``, data
into ``__call__(model, x_batch, y_batch, a_batch=None, ..., explain_func=None, ..., batch_size=64)``, which
returns one score per input as a list of floats. Quantus does the bookkeeping (channel-last inputs made
channel-first, ``explain_func`` called batch by batch when ``a_batch`` is None, attributions given a channel
axis, optional ``abs`` / ``normalise``, ``return_aggregate``, ``all_evaluation_scores``); each Quantus batch
goes through one call of the engine's ``evaluate``, which draws its random numbers from ``(seed, input
index)``: the scores do not depend on Quantus's ``batch_size`` and equal those of ``evaluate`` on the whole
batch. The last call's full :class:`ffidelity.FidelityResult` (curves, per-input arrays) is kept as
``result_``.

Example::

    import quantus
    from ffidelity.integrations.quantus import FFidelityMetric

    metric = FFidelityMetric(beta=0.1, n_samples=50, finetune_data=(x_train, y_train),
                             finetune_kwargs={"epochs": 10})
    scores = metric(model=model, x_batch=x, y_batch=y, a_batch=a, channel_first=True)  # per-input AUC of Fid+
    metric.result_.to_frame()                                                         # the mean curves

Quantus is imported by this module; ``import ffidelity`` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

try:
    import quantus
    from quantus.helpers import utils as _qutils
    from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection
    from quantus.helpers.model.model_interface import ModelInterface
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("ffidelity.integrations.quantus needs Quantus >= 0.6: "
                      "pip install 'ffidelity-multimae[quantus]' (or pip install quantus)") from exc

from ffidelity.explainers.core import explain
from ffidelity.metrics.engine import FFidelity, Fidelity, RFidelity
from ffidelity.metrics.result import FidelityResult
from ffidelity.units.base import Units
from ffidelity.units.grid import ImageUnits
from ffidelity.utils.modelio import model_device

__all__ = ["FFidelityMetric", "FidelityMetric", "RFidelityMetric", "quantus_explain_func"]

Score = Literal["fid_plus", "fid_minus", "both"]
SCORES: tuple[str, ...] = ("fid_plus", "fid_minus", "both")


class FidelityMetric(quantus.Metric):
    """Plain Fidelity as a Quantus metric: per-input Fid+ / Fid- over a sparsity grid.

    Each input's units (pixels with all channels, by default) are ranked by attribution; at every sparsity
    ``s`` the top ``s * D`` units are removed (Fid+, MoRF) or all the others are (Fid-, LeRF), and the drop of
    the model's score for ``y`` is recorded. The returned score of an input is the area under its Fid+ curve
    (or Fid- curve) over the sparsity grid, as :meth:`ffidelity.FidelityResult.per_sample_auc` computes it.

    Args:
        sparsities: explanation sizes as fractions of the units, each in (0, 1); default 0.05, ..., 0.95.
        mode: ``"acc"`` scores 1(argmax f(x') = y); ``"prob"`` the softmax probability of y (the model must
            return logits; Quantus's ``softmax=False`` is refused in this mode).
        score: what each input's score is: ``"fid_plus"`` (higher = more faithful), ``"fid_minus"`` (lower =
            more faithful) or ``"both"`` (a ``[fid_plus, fid_minus]`` pair per input).
        curve: return each input's curve over the sparsity grid (a list of floats; for ``"both"`` a pair of
            lists) instead of its area.
        units: what a unit is and how it is removed (default ``ImageUnits()``: pixels, reference 0).
        seed: seeds tie-breaking among equal attributions and every Monte-Carlo draw.
        forward_batch_size: masked copies per forward pass (the engine's ``batch_size``, ``"auto"`` by default
            as in the engine); Quantus's ``batch_size`` in ``__call__`` is the number of inputs per engine call.
        abs: take the absolute value of the attributions first (Quantus's option; off by default).
        normalise: normalise the attributions first (Quantus's option; off by default: ranks do not change).
        normalise_func: Quantus's normalisation function when ``normalise`` is True.
        normalise_func_kwargs: its keyword arguments.
        return_aggregate: return ``[aggregate_func(scores)]`` instead of the per-input scores.
        aggregate_func: the aggregation (default ``np.mean``).
        default_plot_func: Quantus's plotting hook.
        disable_warnings: silence Quantus's warnings.
        display_progressbar: show Quantus's progress bar over batches.

    Attributes:
        engine: the :class:`ffidelity.Fidelity` (or subclass) instance that computes every score.
        result_: the :class:`ffidelity.FidelityResult` of the last ``__call__`` (all its batches) or
            ``evaluate_batch``.
    """

    name = "Fidelity"
    data_applicability: ClassVar[set[DataType]] = {DataType.IMAGE}
    model_applicability: ClassVar[set[ModelType]] = {ModelType.TORCH}
    score_direction = ScoreDirection.HIGHER
    evaluation_category = EvaluationCategory.FAITHFULNESS

    def __init__(
        self,
        sparsities: Sequence[float] | None = None,
        mode: str = "acc",
        score: Score = "fid_plus",
        curve: bool = False,
        units: Units | None = None,
        seed: int = 0,
        forward_batch_size: int | str = "auto",
        abs: bool = False,
        normalise: bool = False,
        normalise_func: Callable[[np.ndarray], np.ndarray] | None = None,
        normalise_func_kwargs: dict[str, Any] | None = None,
        return_aggregate: bool = False,
        aggregate_func: Callable | None = None,
        default_plot_func: Callable | None = None,
        disable_warnings: bool = False,
        display_progressbar: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        super().__init__(abs=abs, normalise=normalise, normalise_func=normalise_func,
                         normalise_func_kwargs=normalise_func_kwargs, return_aggregate=return_aggregate,
                         aggregate_func=aggregate_func, default_plot_func=default_plot_func,
                         disable_warnings=disable_warnings, display_progressbar=display_progressbar)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.score = score
        self.curve = bool(curve)
        # Fid+ is better when higher, Fid- when lower; "both" is described by its first element, Fid+
        self.score_direction = ScoreDirection.LOWER if score == "fid_minus" else ScoreDirection.HIGHER
        self.units = units if units is not None else ImageUnits()
        self.engine = self._make_engine(sparsities=sparsities, mode=mode, units=self.units, seed=seed,
                                        batch_size=forward_batch_size, progress=False, **engine_kwargs)
        self.result_: FidelityResult | None = None
        self._in_call = False
        self._offset = 0
        self._parts: list[FidelityResult] = []

    def _make_engine(self, **kwargs: Any) -> Fidelity:
        return Fidelity(**kwargs)

    # -- Quantus API ------------------------------------------------------------------------------------------
    def __call__(
        self,
        model: nn.Module,
        x_batch: np.ndarray,
        y_batch: np.ndarray | None,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        channel_first: bool | None = None,
        explain_func: Callable | None = None,
        explain_func_kwargs: dict[str, Any] | None = None,
        model_predict_kwargs: dict[str, Any] | None = None,
        softmax: bool | None = None,
        device: str | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[Any]:
        """Scores the explanations of ``x_batch``, one score per input (Quantus's calling convention).

        Args:
            model: a torch classifier returning (batch, classes) logits; explanations (``explain_func``) are
                computed on it, and so are the scores, except for F-Fidelity (its fine-tuned evaluator).
            x_batch: inputs, (N, C, H, W) or channel-last (N, H, W, C); numpy (a torch tensor is accepted).
            y_batch: the class whose score is tracked per input, (N,); ``None`` tracks the predicted class.
            a_batch: attributions, channel-first: the input's shape, (N, 1, H, W) or (N, H, W); ``None``
                computes them with ``explain_func``.
            s_batch: unused (Quantus's segmentation masks).
            channel_first: whether ``x_batch`` is channel-first; inferred from its shape when None.
            explain_func: ``f(model, inputs, targets, **explain_func_kwargs) -> np.ndarray`` (e.g.
                ``quantus.explain`` or :func:`quantus_explain_func`), used when ``a_batch`` is None.
            explain_func_kwargs: keyword arguments of ``explain_func``.
            model_predict_kwargs: keyword arguments of every forward pass of the model.
            softmax: Quantus's flag. ``"acc"`` mode ignores it (argmax is the same); ``"prob"`` mode applies the
                softmax itself and refuses ``False``.
            device: where the model runs; must match the device of the model's parameters when given (the
                model is never moved). Also handed to ``explain_func``.
            batch_size: inputs per engine call (and per ``explain_func`` call).
            **kwargs: refused, as Quantus does.

        Returns:
            One score per input (see ``score`` and ``curve``), or ``[aggregate]`` with ``return_aggregate``.

        Raises:
            ValueError: attributions whose shape does not fit the inputs, NaN or inf attributions, a device
                mismatch, ``softmax=False`` in ``"prob"`` mode.
        """
        x_batch = _to_numpy(x_batch, "x_batch")
        if x_batch.ndim < 2 or x_batch.shape[0] == 0:
            raise ValueError(f"x_batch must be a non-empty batch (N, ...), got shape {x_batch.shape}")
        if y_batch is not None:
            y_batch = _to_numpy(y_batch, "y_batch")
        if a_batch is not None:
            a_batch = _to_numpy(a_batch, "a_batch")
            cf = channel_first if isinstance(channel_first, bool) else _qutils.infer_channel_first(x_batch)
            self._attributions(_qutils.make_channel_first(x_batch, cf), a_batch)  # clear errors before Quantus's
        self._in_call, self._offset, self._parts = True, 0, []
        try:
            scores = super().__call__(
                model=model, x_batch=x_batch, y_batch=y_batch, a_batch=a_batch, s_batch=s_batch,
                custom_batch=None, channel_first=channel_first, explain_func=explain_func,
                explain_func_kwargs=explain_func_kwargs, model_predict_kwargs=model_predict_kwargs,
                softmax=softmax, device=device, batch_size=batch_size, **kwargs)
            self.result_ = _concat(self._parts)
        finally:
            self._in_call, self._parts = False, []
        return scores

    def evaluate_batch(
        self,
        model: ModelInterface | nn.Module,
        x_batch: np.ndarray,
        y_batch: np.ndarray | None,
        a_batch: np.ndarray,
        s_batch: np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Scores one batch of channel-first inputs with its attributions (Quantus's per-batch hook).

        ``__call__`` calls this once per batch of ``batch_size`` inputs; it may also be called directly, with a
        torch model or a Quantus ``ModelInterface``, channel-first numpy inputs and attributions.

        Args:
            model: the classifier (a ``ModelInterface`` is unwrapped; its ``softmax``, ``device`` and
                ``model_predict_kwargs`` are honoured).
            x_batch: channel-first inputs (N, C, ...).
            y_batch: target classes (N,), or None for the predicted class.
            a_batch: attributions in the input's shape, with a channel axis of 1, or without channel axis.
            s_batch: unused.
            **kwargs: unused (Quantus passes its bookkeeping here).

        Returns:
            One score per input.
        """
        softmax = device = None
        predict_kwargs: dict[str, Any] = {}
        if isinstance(model, ModelInterface):
            softmax = model.softmax
            device = getattr(model, "device", None)
            predict_kwargs = dict(model.model_predict_kwargs or {})
            model = model.get_model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
        if self.engine.mode == "prob" and softmax is False:
            raise ValueError("mode='prob' scores softmax probabilities of the model's logits; softmax=False "
                             "(raw logits) is not supported: pass softmax=True or None, or use mode='acc'")
        evaluator = self._evaluator(model)
        _check_device(evaluator, device)
        if predict_kwargs:
            evaluator = _WithKwargs(evaluator, predict_kwargs)
        x_np = _to_numpy(x_batch, "x_batch")
        a = self._attributions(x_np, _to_numpy(a_batch, "a_batch"))
        x = torch.from_numpy(np.ascontiguousarray(x_np))
        dtype = _float_dtype(evaluator)
        if x.is_floating_point() and dtype is not None:
            x = x.to(dtype)
        targets = None if y_batch is None else torch.as_tensor(np.asarray(y_batch)).long()
        offset = self._offset if self._in_call else 0
        result = self.engine.evaluate(evaluator, x, targets, a, index_offset=offset)
        if self._in_call:
            self._offset += x.shape[0]
            self._parts.append(result)
        else:
            self.result_ = result
        return self.scores_of(result)

    # -- helpers ----------------------------------------------------------------------------------------------
    def scores_of(self, result: FidelityResult) -> list[Any]:
        """The per-input scores this metric returns, read from a :class:`ffidelity.FidelityResult`."""
        if self.curve:
            plus, minus = result.per_sample_plus, result.per_sample_minus
        else:
            plus, minus = result.per_sample_auc()
        if self.score == "fid_plus":
            return plus.tolist()
        if self.score == "fid_minus":
            return minus.tolist()
        return [[p, m] for p, m in zip(plus.tolist(), minus.tolist(), strict=True)]

    def _evaluator(self, model: nn.Module) -> nn.Module:
        """The model the scores are computed on (F-Fidelity: its fine-tuned evaluator)."""
        return model

    def _attributions(self, x: np.ndarray, a: np.ndarray) -> torch.Tensor:
        """Checks channel-first attributions against channel-first inputs; returns them as the units take them.

        A channel axis of 1 (Quantus's ``expand_attribution_channel``) is dropped when the input has more than
        one channel; the units then sum input-shaped attributions over channels.
        """
        if a.shape[:1] != x.shape[:1]:
            raise ValueError(f"a_batch holds {a.shape[0] if a.ndim else 0} explanations for {x.shape[0]} inputs "
                             f"(a_batch {a.shape}, x_batch {x.shape})")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"a_batch must hold real numbers, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a.reshape(a.shape[0], -1)).all(1))
            raise ValueError(f"a_batch contains NaN or inf values (inputs {bad[:10].tolist()}"
                             f"{' ...' if bad.size > 10 else ''}); fix the explainer or replace them")
        if a.ndim == x.ndim and x.ndim >= 3 and a.shape[1] == 1 != x.shape[1] and a.shape[2:] == x.shape[2:]:
            a = a[:, 0]
        a_t = torch.from_numpy(np.ascontiguousarray(a))
        try:
            self.units.scores(a_t, torch.from_numpy(np.ascontiguousarray(x)))
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"a_batch of shape {a.shape} does not fit x_batch of shape {x.shape} (channel-first): "
                             f"give attributions in the input's shape, with a channel axis of 1, or without "
                             f"channel axis ({exc})") from exc
        return a_t


class RFidelityMetric(FidelityMetric):
    """R-Fidelity as a Quantus metric: each candidate unit removed with probability alpha, ``n_samples`` draws.

    Args:
        alpha_plus: removal probability of each explanation unit (Fid+).
        alpha_minus: removal probability of each non-explanation unit (Fid-).
        n_samples: Monte-Carlo draws per input and sparsity.
        **kwargs: as :class:`FidelityMetric` (``sparsities``, ``mode``, ``score``, ``seed``, ...).
    """

    name = "R-Fidelity"

    def __init__(self, alpha_plus: float = 0.5, alpha_minus: float = 0.5, n_samples: int = 50,
                 **kwargs: Any) -> None:
        super().__init__(alpha_plus=alpha_plus, alpha_minus=alpha_minus, n_samples=n_samples, **kwargs)

    def _make_engine(self, **kwargs: Any) -> Fidelity:
        return RFidelity(**kwargs)


class FFidelityMetric(FidelityMetric):
    """F-Fidelity as a Quantus metric: R-Fidelity capped at ``beta * D`` removals, on a fine-tuned evaluator.

    F-Fidelity scores explanations of the model on a copy fine-tuned on inputs with random units removed.
    Give that evaluator in exactly one of three ways:

    * ``evaluator=tuned``: an already fine-tuned copy (e.g. from ``FFidelity(beta).finetune(...)``); the model
      passed to ``__call__`` is then only used by ``explain_func``;
    * ``evaluator="model"``: the model passed to ``__call__`` is itself the fine-tuned evaluator;
    * ``finetune_data=(x_train, y_train)`` (anything ``FFidelity.finetune`` takes): the first call fine-tunes a
      copy of its model with ``finetune_kwargs`` (``epochs``, ``lr``, ``val_data``, ...), keeps it as
      ``evaluator_`` and reuses it while called with the same model.

    Args:
        beta: fine-tuning mask ratio and cap on the expected fraction of units removed at evaluation.
        alpha_plus: removal probability of each explanation unit (Fid+), before the cap.
        alpha_minus: removal probability of each non-explanation unit (Fid-), before the cap.
        n_samples: Monte-Carlo draws per input and sparsity.
        beta_minus: cap on the Fid- side; ``None`` uses ``beta`` (the paper).
        evaluator: the fine-tuned evaluator, or ``"model"`` (see above).
        finetune_data: training data to fine-tune the evaluator from the called model (see above).
        finetune_kwargs: keyword arguments of ``FFidelity.finetune`` (``epochs``, ``lr``, ``val_data``, ...).
        **kwargs: as :class:`FidelityMetric` (``sparsities``, ``mode``, ``score``, ``seed``, ...).
    """

    name = "F-Fidelity"

    def __init__(self, beta: float = 0.1, alpha_plus: float = 0.5, alpha_minus: float = 0.5, n_samples: int = 50,
                 beta_minus: float | None = None, evaluator: nn.Module | Literal["model"] | None = None,
                 finetune_data: Any = None, finetune_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if (evaluator is None) == (finetune_data is None):
            raise ValueError("F-Fidelity needs a fine-tuned evaluator: pass exactly one of evaluator= (a fine-tuned "
                             "model, or 'model' when the called model is already fine-tuned) and finetune_data= "
                             "(training data to fine-tune a copy of the called model)")
        if isinstance(evaluator, str) and evaluator != "model":
            raise ValueError(f"evaluator must be a torch model or 'model', got {evaluator!r}")
        if evaluator is not None and not isinstance(evaluator, (str, nn.Module)):
            raise TypeError(f"evaluator must be a torch.nn.Module or 'model', got {type(evaluator).__name__}")
        if finetune_kwargs is not None and finetune_data is None:
            raise ValueError("finetune_kwargs needs finetune_data")
        super().__init__(beta=beta, alpha_plus=alpha_plus, alpha_minus=alpha_minus, n_samples=n_samples,
                         beta_minus=beta_minus, **kwargs)
        self.evaluator = evaluator
        self.finetune_data = finetune_data
        self.finetune_kwargs = dict(finetune_kwargs or {})
        self.evaluator_: nn.Module | None = evaluator if isinstance(evaluator, nn.Module) else None
        self._tuned_from: nn.Module | None = None

    def _make_engine(self, **kwargs: Any) -> Fidelity:
        return FFidelity(**kwargs)

    def _evaluator(self, model: nn.Module) -> nn.Module:
        if isinstance(self.evaluator, nn.Module):
            return self.evaluator
        if self.evaluator == "model":
            return model
        if self.evaluator_ is None or self._tuned_from is not model:
            assert isinstance(self.engine, FFidelity)
            self.evaluator_ = self.engine.finetune(model, self.finetune_data, **self.finetune_kwargs).eval()
            self._tuned_from = model
        return self.evaluator_


def quantus_explain_func(method: str, **explain_kwargs: Any) -> Callable[..., np.ndarray]:
    """One of this package's explainers (``ffidelity.explain``) as a Quantus ``explain_func``.

    Args:
        method: a registered explainer name (``ffidelity.EXPLAINERS.names()``, e.g. ``"saliency"``).
        **explain_kwargs: fixed options of the explainer (``n_steps``, ``seed``, ...).

    Returns:
        ``f(model, inputs, targets, **kwargs) -> np.ndarray``: attributions in the input's shape. Quantus's
        ``device`` keyword is accepted and ignored (the explainer runs where the model's parameters are); other
        keywords go to the explainer.
    """

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray | None, **kwargs: Any) -> np.ndarray:
        kwargs.pop("device", None)
        x = torch.from_numpy(np.ascontiguousarray(_to_numpy(inputs, "inputs")))
        dtype = _float_dtype(model)
        if x.is_floating_point() and dtype is not None:
            x = x.to(dtype)
        target = None if targets is None else torch.as_tensor(np.asarray(targets)).long()
        return explain(method, model, x, target, **{**explain_kwargs, **kwargs}).numpy()

    explain_func.__name__ = f"ffidelity_{method}"
    return explain_func


# -- module helpers ---------------------------------------------------------------------------------------------
class _WithKwargs(nn.Module):
    """``model(x, **kwargs)`` as a module (Quantus's ``model_predict_kwargs``); shares the model's parameters."""

    def __init__(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, **self.kwargs)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise TypeError(f"{name} must be a numpy array (or a torch tensor), got {type(x).__name__}")


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (inputs are cast to it, as Quantus casts)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _check_device(model: nn.Module, device: Any) -> None:
    if device is None:
        return
    want, have = torch.device(device), model_device(model)
    if want.type != have.type or (want.index is not None and have.index is not None and want.index != have.index):
        raise ValueError(f"device={str(device)!r} but the evaluated model's parameters are on {have}: move the model "
                         "there first (the metric never moves it) or pass device=None")


def _concat(parts: list[FidelityResult]) -> FidelityResult | None:
    """One result from the results of consecutive batches."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return FidelityResult(
        method=first.method,
        sparsities=first.sparsities,
        base_scores=np.concatenate([p.base_scores for p in parts]),
        per_sample_plus=np.concatenate([p.per_sample_plus for p in parts]),
        per_sample_minus=np.concatenate([p.per_sample_minus for p in parts]),
        params=first.params,
    )
