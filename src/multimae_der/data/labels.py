"""Label sets: which emotions each data set's classifier sees, in which order, and what is merged or dropped.

A cache entry stores the clip's raw emotion name (``"calm"``, ``"excited"``, ...); a :class:`LabelSet` turns it
into a class index at load time, so one prepared cache serves both RAVDESS label sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ffidelity.utils.registry import Registry

__all__ = ["LABEL_SETS", "LabelSet", "default_label_set", "get_label_set"]


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of class names plus a merge map (raw emotion -> class name).

    Raw emotions that are neither a class nor merged into one are dropped (``index`` returns ``None``).
    """

    name: str
    classes: tuple[str, ...]
    merge: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, emotion: str) -> int | None:
        """Class index of a raw emotion name, or ``None`` if this label set drops it."""
        target = self.merge.get(emotion, emotion)
        try:
            return self.classes.index(target)
        except ValueError:
            return None

    def __contains__(self, emotion: object) -> bool:
        return isinstance(emotion, str) and self.index(emotion) is not None


LABEL_SETS: Registry = Registry("label set")

_SETS = {
    "ravdess8": LabelSet("ravdess8", ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                                      "surprised")),
    # the paper's 7 classes: calm merged into neutral
    "ravdess7": LabelSet("ravdess7", ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
                         {"calm": "neutral"}),
    "cremad6": LabelSet("cremad6", ("angry", "disgust", "fearful", "happy", "neutral", "sad")),
    # the usual 4-class IEMOCAP set: excited merged into happy, everything else dropped
    "iemocap4": LabelSet("iemocap4", ("neutral", "happy", "angry", "sad"), {"excited": "happy"}),
}
for _key, _value in _SETS.items():
    LABEL_SETS.register(_key)(lambda v=_value: v)

_DEFAULTS = {"ravdess": "ravdess8", "cremad": "cremad6", "iemocap": "iemocap4"}

#: IEMOCAP's three-letter codes -> raw emotion names.
IEMOCAP_CODES: dict[str, str] = {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad",
                                 "fru": "frustrated", "fea": "fearful", "sur": "surprised", "dis": "disgust",
                                 "oth": "other", "xxx": "undecided"}


def get_label_set(name: str) -> LabelSet:
    """The label set registered under ``name`` (``ravdess8``, ``ravdess7``, ``cremad6``, ``iemocap4``)."""
    return LABEL_SETS.get(name)()


def default_label_set(dataset: str) -> LabelSet:
    """The label set a data set uses unless told otherwise (RAVDESS: 8 classes)."""
    if dataset not in _DEFAULTS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(_DEFAULTS)}")
    return get_label_set(_DEFAULTS[dataset])
