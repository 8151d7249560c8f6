"""Time-series and text tasks for the benchmark, registered in ``ffidelity.benchmark.tasks.TASKS``.

Time series (units: time steps, removed to 0 = the mean of standardised data; model: the paper's LSTM, or a
small transformer with the ``-transformer`` suffix):

* ``seqcomb``, ``freqshapes``: synthetic, with ground truth (no root needed);
* ``pam``, ``boiler``: TimeX's files at ``root``.

Text (units: tokens, removed to ``[MASK]``; model: the paper's LSTM over MiniLM token ids, or the pretrained
MiniLM fine-tuned, with the ``-minilm`` suffix):

* ``synthetic-sentiment``: planted polarity words, with ground truth (no root needed);
* ``sst2``, ``boolq``: GLUE / BoolQ files at ``root``.

``quick=True`` shrinks data, models and epochs so that a task trains in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffidelity.benchmark.tasks import Task, register
from ffidelity.units.sequence import SequenceUnits

TS_EXPLAINERS = ("sg_sq", "integrated_gradients", "saliency")
TEXT_EXPLAINERS = ("layer_ig", "layer_gradient_x_input", "layer_saliency")


def _ts_model(kind: str, in_features: int, num_classes: int, length: int, quick: bool, layers: int = 1) -> Any:
    from ffidelity.models.sequence import LSTMClassifier, TransformerClassifier

    if kind == "lstm":
        hidden = 32 if quick else 64
        return lambda: LSTMClassifier(in_features, num_classes, hidden=hidden, num_layers=layers, bidirectional=True)
    if kind == "transformer":
        d = 32 if quick else 64
        return lambda: TransformerClassifier(in_features, num_classes, d_model=d, nhead=4, num_layers=2,
                                             dim_feedforward=2 * d, dropout=0.1, max_len=max(length, 16))
    raise ValueError(f"unknown time-series model {kind!r}; use 'lstm' or 'transformer'")


def _ts_task(name: str, split: Any, kind: str, quick: bool, epochs: tuple[int, int], ft_epochs: tuple[int, int],
             lr: float = 3e-3, layers: int = 1) -> Task:
    """A time-series task: batch 32 and gradient clipping at 1 (small LSTMs converged in fewer epochs and
    across seeds with them)."""
    xtr, xte = split.x_train, split.x_test
    return Task(
        name=name if kind == "lstm" else f"{name}-{kind}",
        x_train=xtr, y_train=split.y_train, x_test=xte, y_test=split.y_test,
        num_classes=split.num_classes, units=SequenceUnits(reference="zero"),
        make_model=_ts_model(kind, split.in_features, split.num_classes, split.length, quick, layers),
        fit={"epochs": epochs[0] if quick else epochs[1], "lr": lr, "weight_decay": 1e-4, "batch_size": 32,
             "trainer_kwargs": {"gradient_clip_val": 1.0}},
        finetune={"epochs": ft_epochs[0] if quick else ft_epochs[1], "lr": 1e-3, "batch_size": 32,
                  "trainer_kwargs": {"gradient_clip_val": 1.0}},
        explainers=TS_EXPLAINERS,
        explainer_kwargs={
            "sg_sq": {"n_steps": 8 if quick else 20, "nt_samples": 10},
            "integrated_gradients": {"n_steps": 16 if quick else 50},
            "occlusion": {"channel_dim": 2, "window": 3 if quick else 5},
        },
        ground_truth=split.gt_test,
        info={**split.info, "model": kind, "shape": list(xtr.shape[1:])},
    )


def seqcomb_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm") -> Task:
    """SeqComb-UV-like synthetic set (4 classes, planted ramps, ground truth)."""
    from ffidelity.data.timeseries import seqcomb

    split = seqcomb(n_train=600 if quick else 2000, n_test=100 if quick else 400, length=60 if quick else 100,
                    seed=seed)
    return _ts_task("seqcomb", split, model, quick, epochs=(8, 40), ft_epochs=(3, 10))


def freqshapes_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm"
                    ) -> Task:
    """FreqShapes-like synthetic set (4 classes, periodic spikes, ground truth)."""
    from ffidelity.data.timeseries import freqshapes

    split = freqshapes(n_train=600 if quick else 2000, n_test=100 if quick else 400, length=50, seed=seed)
    # two stacked layers: one-layer LSTMs learned the spike period for some seeds only
    return _ts_task("freqshapes", split, model, quick, epochs=(20, 50), ft_epochs=(3, 10), lr=5e-3, layers=2)


def pam_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm",
             split: int = 1) -> Task:
    """PAM (PAMAP2, 8 activities) from TimeX's files at ``root``; quick mode keeps 400/100 rows, every 10th step."""
    from ffidelity.data.timeseries import pam

    if root is None:
        raise ValueError("pam needs --root: the PAMAP2data folder prepared for TimeX/Raindrop")
    data = pam(root, split=split, limit=400 if quick else None, stride=10 if quick else 1)
    if quick:
        data.x_test, data.y_test = data.x_test[:100], data.y_test[:100]
    return _ts_task("pam", data, model, quick, epochs=(8, 30), ft_epochs=(3, 10))


def boiler_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm",
                split: int = 1) -> Task:
    """Boiler fault detection from TimeX's torch tensors at ``root``; quick mode keeps 500/100 rows."""
    from ffidelity.data.timeseries import boiler

    if root is None:
        raise ValueError("boiler needs --root: the folder with TimeX's xfull.pt, yfull.pt and split=<k>.pt")
    data = boiler(root, split=split, limit=500 if quick else None)
    if quick:
        data.x_test, data.y_test = data.x_test[:100], data.y_test[:100]
    return _ts_task("boiler", data, model, quick, epochs=(8, 30), ft_epochs=(3, 10))


def _text_model(kind: str, split: Any, quick: bool) -> Any:
    from ffidelity.models.sequence import MiniLMClassifier, TokenLSTMClassifier

    ids = {"pad_token_id": split.pad_token_id, "mask_token_id": split.mask_token_id,
           "special_token_ids": split.special_token_ids}
    if kind == "lstm":
        size = 32 if quick else 128
        return lambda: TokenLSTMClassifier(split.vocab_size, split.num_classes, embed_dim=size, hidden=size,
                                           bidirectional=True, **ids)
    if kind == "minilm":
        return lambda: MiniLMClassifier(split.num_classes, pooling="mean", **ids)
    raise ValueError(f"unknown text model {kind!r}; use 'lstm' or 'minilm'")


def _text_task(name: str, split: Any, kind: str, quick: bool, lstm_epochs: tuple[int, int],
               minilm_epochs: tuple[int, int]) -> Task:
    if kind == "lstm":
        clip = {"trainer_kwargs": {"gradient_clip_val": 1.0}}
        fit = {"epochs": lstm_epochs[0] if quick else lstm_epochs[1], "lr": 3e-3, "weight_decay": 0.0,
               "batch_size": 64, **clip}
        finetune = {"epochs": 3 if quick else 10, "lr": 1e-3, "batch_size": 64, **clip}
    else:
        fit = {"epochs": minilm_epochs[0] if quick else minilm_epochs[1], "lr": 5e-5, "weight_decay": 0.01,
               "optimizer": "adamw", "batch_size": 32}
        finetune = {"epochs": 1 if quick else 3, "lr": 2e-5, "weight_decay": 0.01, "batch_size": 32}
    return Task(
        name=name if kind == "lstm" else f"{name}-{kind}",
        x_train=split.x_train, y_train=split.y_train, x_test=split.x_test, y_test=split.y_test,
        num_classes=split.num_classes, units=split.units("mask"),
        make_model=_text_model(kind, split, quick),
        fit=fit, finetune=finetune, explainers=TEXT_EXPLAINERS,
        explainer_kwargs={"layer_ig": {"n_steps": 16 if quick else 50, "internal_batch_size": 256}},
        ground_truth=split.gt_test,
        info={**split.info, "model": kind, "vocab_size": split.vocab_size},
    )


def synthetic_sentiment_task(root: str | Path | None = None, seed: int = 0, quick: bool = False,
                             model: str = "lstm") -> Task:
    """Synthetic sentiment with planted polarity words (2 classes, ground truth)."""
    from ffidelity.data.text import synthetic_sentiment

    if model == "minilm" and quick:
        split = synthetic_sentiment(n_train=256, n_test=64, max_length=16, seed=seed)
    else:
        split = synthetic_sentiment(n_train=600 if quick else 2000, n_test=100 if quick else 400,
                                    max_length=16 if quick else 32, seed=seed)
    return _text_task("synthetic-sentiment", split, model, quick, lstm_epochs=(6, 15), minilm_epochs=(1, 3))


def sst2_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm") -> Task:
    """GLUE SST-2 at ``root`` (train.tsv, dev.tsv); quick: 1000/200 rows (MiniLM 300/100) of 32 tokens."""
    from ffidelity.data.text import sst2

    if root is None:
        raise ValueError("sst2 needs --root: the folder with GLUE's SST-2 train.tsv and dev.tsv")
    n_train, n_test = (300, 100) if model == "minilm" else (1000, 200)
    data = sst2(root, max_length=32 if quick else 64, limit=n_train if quick else None)
    if quick:
        data.x_test, data.y_test = data.x_test[:n_test], data.y_test[:n_test]
    return _text_task("sst2", data, model, quick, lstm_epochs=(4, 10), minilm_epochs=(1, 3))


def boolq_task(root: str | Path | None = None, seed: int = 0, quick: bool = False, model: str = "lstm") -> Task:
    """BoolQ at ``root`` (train.jsonl, dev.jsonl); quick: 500/100 rows (MiniLM 200/50) of 64 tokens."""
    from ffidelity.data.text import boolq

    if root is None:
        raise ValueError("boolq needs --root: the folder with BoolQ's train.jsonl and dev.jsonl")
    n_train, n_test = (200, 50) if model == "minilm" else (500, 100)
    data = boolq(root, max_length=64 if quick else 256, limit=n_train if quick else None)
    if quick:
        data.x_test, data.y_test = data.x_test[:n_test], data.y_test[:n_test]
    return _text_task("boolq", data, model, quick, lstm_epochs=(4, 10), minilm_epochs=(1, 3))


def _variant(builder: Any, model: str) -> Any:
    def build(root: str | Path | None = None, seed: int = 0, quick: bool = False) -> Task:
        return builder(root=root, seed=seed, quick=quick, model=model)

    build.__doc__ = f"{(builder.__doc__ or '').splitlines()[0]} Model: {model}."
    return build


for _name, _builder in (("seqcomb", seqcomb_task), ("freqshapes", freqshapes_task), ("pam", pam_task),
                        ("boiler", boiler_task)):
    register(_name)(_variant(_builder, "lstm"))
    register(f"{_name}-transformer")(_variant(_builder, "transformer"))
for _name, _builder in (("synthetic-sentiment", synthetic_sentiment_task), ("sst2", sst2_task),
                        ("boolq", boolq_task)):
    register(_name)(_variant(_builder, "lstm"))
    register(f"{_name}-minilm")(_variant(_builder, "minilm"))
