"""File-name conventions of RAVDESS, CREMA-D and IEMOCAP: pure parsers with one clear error each.

Every parser takes a file name (a bare name, a name with an extension, or a path whose last part is the name),
returns a frozen dataclass with the decoded fields, and raises ``ValueError`` naming the input and the broken
rule for anything outside the convention. Nothing here touches the file system.

Conventions (from each data set's documentation):

* RAVDESS ``MM-VC-EE-II-SS-RR-AA.ext``: modality 01 audio-video / 02 video-only / 03 audio-only; vocal channel
  01 speech / 02 song; emotion 01-08 (song only 01-06); intensity 01 normal / 02 strong (no strong neutral);
  statement 01/02; repetition 01/02; actor 01-24. Extension ``.mp4`` for modalities 01/02, ``.wav`` for 03.
* CREMA-D ``AAAA_SSS_EEE_LL.ext``: actor 1001-1091, one of 12 sentence codes, emotion ANG DIS FEA HAP NEU SAD,
  level LO MD HI XX.
* IEMOCAP utterances ``Ses0S[FM]_<dialog>_[FM]NNN`` with dialog ``improNN[a]`` or ``scriptNN_N[a]`` (e.g.
  ``Ses01F_impro01_F000``, ``Ses05M_script01_1b_M012``, ``Ses03F_impro06_FXX0``), and EmoEvaluation summary lines
  ``[START - END]<TAB>utterance<TAB>label<TAB>[V, A, D]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CREMAD_EMOTIONS",
    "CREMAD_LEVELS",
    "CREMAD_SENTENCES",
    "IEMOCAP_LABELS",
    "RAVDESS_EMOTIONS",
    "CremadName",
    "IemocapLine",
    "IemocapUtterance",
    "RavdessName",
    "parse_cremad_name",
    "parse_iemocap_evaluation",
    "parse_iemocap_line",
    "parse_iemocap_utterance",
    "parse_ravdess_name",
]

#: RAVDESS emotion codes 01..08 in order.
RAVDESS_EMOTIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
_RAVDESS_SONG_EMOTIONS = frozenset(range(1, 7))
_RAVDESS_EXT = {1: ".mp4", 2: ".mp4", 3: ".wav"}

CREMAD_SENTENCES: tuple[str, ...] = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI",
                                     "WSI")
#: CREMA-D emotion code -> emotion name.
CREMAD_EMOTIONS: dict[str, str] = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
                                   "NEU": "neutral", "SAD": "sad"}
CREMAD_LEVELS: tuple[str, ...] = ("LO", "MD", "HI", "XX")
_CREMAD_EXTS = frozenset({"", ".flv", ".mp4", ".wav", ".mp3"})

#: every label code found in IEMOCAP EmoEvaluation files.
IEMOCAP_LABELS: frozenset[str] = frozenset({"neu", "hap", "exc", "ang", "sad", "fru", "fea", "sur", "dis", "oth",
                                            "xxx"})


def _basename(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{what} file name must be a string, got {type(name).__name__}")
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _split_ext(base: str) -> tuple[str, str]:
    if "." in base:
        stem, ext = base.rsplit(".", 1)
        return stem, "." + ext.lower()
    return base, ""


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name (all as integers, 1-based as in the name)."""

    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def emotion_name(self) -> str:
        return RAVDESS_EMOTIONS[self.emotion - 1]

    @property
    def is_audio_video(self) -> bool:
        return self.modality == 1

    @property
    def stem(self) -> str:
        return "-".join(f"{v:02d}" for v in (self.modality, self.vocal_channel, self.emotion, self.intensity,
                                              self.statement, self.repetition, self.actor))


_RAVDESS_RE = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})")


def parse_ravdess_name(name: str) -> RavdessName:
    """Parses ``MM-VC-EE-II-SS-RR-AA[.mp4|.wav]``; raises ``ValueError`` saying which rule fails."""
    base = _basename(name, "RAVDESS")
    stem, ext = _split_ext(base)
    m = _RAVDESS_RE.fullmatch(stem)
    if m is None:
        raise ValueError(f"{base!r} is not a RAVDESS name (expected MM-VC-EE-II-SS-RR-AA, e.g. 01-01-06-01-02-01-12.mp4)")
    mm, vc, ee, ii, ss, rr, aa = (int(g) for g in m.groups())
    problems = []
    if mm not in (1, 2, 3):
        problems.append(f"modality {mm:02d} not in 01-03")
    if vc not in (1, 2):
        problems.append(f"vocal channel {vc:02d} not in 01-02")
    if not 1 <= ee <= 8:
        problems.append(f"emotion {ee:02d} not in 01-08")
    elif vc == 2 and ee not in _RAVDESS_SONG_EMOTIONS:
        problems.append(f"emotion {ee:02d} does not exist for song (01-06)")
    if ii not in (1, 2):
        problems.append(f"intensity {ii:02d} not in 01-02")
    elif ee == 1 and ii == 2:
        problems.append("neutral has no strong intensity")
    if ss not in (1, 2):
        problems.append(f"statement {ss:02d} not in 01-02")
    if rr not in (1, 2):
        problems.append(f"repetition {rr:02d} not in 01-02")
    if not 1 <= aa <= 24:
        problems.append(f"actor {aa:02d} not in 01-24")
    if not problems and ext and ext != _RAVDESS_EXT[mm]:
        problems.append(f"extension {ext} does not fit modality {mm:02d} (expected {_RAVDESS_EXT[mm]})")
    if problems:
        raise ValueError(f"{base!r} is not a valid RAVDESS name: " + "; ".join(problems))
    return RavdessName(mm, vc, ee, ii, ss, rr, aa)


@dataclass(frozen=True)
class CremadName:
    """The four fields of a CREMA-D file name."""

    actor: int
    sentence: str
    emotion: str
    level: str

    @property
    def emotion_name(self) -> str:
        return CREMAD_EMOTIONS[self.emotion]

    @property
    def stem(self) -> str:
        return f"{self.actor}_{self.sentence}_{self.emotion}_{self.level}"


_CREMAD_RE = re.compile(r"([0-9]{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


def parse_cremad_name(name: str) -> CremadName:
    """Parses ``AAAA_SSS_EEE_LL[.flv|.wav|...]`` (e.g. ``1001_DFA_ANG_XX.flv``); ``ValueError`` otherwise."""
    base = _basename(name, "CREMA-D")
    stem, ext = _split_ext(base)
    m = _CREMAD_RE.fullmatch(stem)
    if m is None:
        raise ValueError(f"{base!r} is not a CREMA-D name (expected ActorID_Sentence_Emotion_Level, "
                         f"e.g. 1001_DFA_ANG_XX.flv)")
    actor, sentence, emotion, level = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    problems = []
    if not 1001 <= actor <= 1091:
        problems.append(f"actor {actor} not in 1001-1091")
    if sentence not in CREMAD_SENTENCES:
        problems.append(f"sentence {sentence} not one of {', '.join(CREMAD_SENTENCES)}")
    if emotion not in CREMAD_EMOTIONS:
        problems.append(f"emotion {emotion} not one of {', '.join(CREMAD_EMOTIONS)}")
    if level not in CREMAD_LEVELS:
        problems.append(f"level {level} not one of {', '.join(CREMAD_LEVELS)}")
    if ext not in _CREMAD_EXTS:
        problems.append(f"extension {ext} not one of {', '.join(sorted(e for e in _CREMAD_EXTS if e))}")
    if problems:
        raise ValueError(f"{base!r} is not a valid CREMA-D name: " + "; ".join(problems))
    return CremadName(actor, sentence, emotion, level)


@dataclass(frozen=True)
class IemocapUtterance:
    """An IEMOCAP utterance name, e.g. ``Ses01F_impro01_F000``."""

    session: int
    dialog: str  # e.g. "Ses01F_impro01"
    speaker_gender: str  # "F" or "M": who speaks this utterance
    turn: str  # e.g. "000" or "XX0"

    @property
    def name(self) -> str:
        return f"{self.dialog}_{self.speaker_gender}{self.turn}"

    @property
    def speaker(self) -> str:
        """The speaking actor: session and gender, e.g. ``Ses01F`` (the subject for subject-independent folds)."""
        return f"Ses{self.session:02d}{self.speaker_gender}"


_IEMOCAP_UTT_RE = re.compile(
    r"(Ses0([1-5])[FM]_(?:impro[0-9]{2}[a-z]?|script[0-9]{2}_[0-9][a-z]?))_([FM])([0-9]{3}|XX[0-9])")


def parse_iemocap_utterance(name: str) -> IemocapUtterance:
    """Parses an utterance name (optionally with ``.wav``); ``ValueError`` otherwise."""
    base = _basename(name, "IEMOCAP")
    stem, ext = _split_ext(base)
    if ext not in ("", ".wav"):
        raise ValueError(f"{base!r} is not an IEMOCAP utterance (extension {ext}, expected .wav)")
    m = _IEMOCAP_UTT_RE.fullmatch(stem)
    if m is None:
        raise ValueError(f"{base!r} is not an IEMOCAP utterance name (expected e.g. Ses01F_impro01_F000)")
    return IemocapUtterance(session=int(m.group(2)), dialog=m.group(1), speaker_gender=m.group(3),
                            turn=m.group(4))


@dataclass(frozen=True)
class IemocapLine:
    """One summary line of an EmoEvaluation file."""

    start: float
    end: float
    utterance: IemocapUtterance
    label: str
    vad: tuple[float, float, float]


_NUM = r"([0-9]+(?:\.[0-9]*)?)"
_IEMOCAP_LINE_RE = re.compile(
    rf"\[{_NUM} - {_NUM}\]\t(\S+)\t([a-z]{{3}})\t\[{_NUM}, {_NUM}, {_NUM}\]")


def parse_iemocap_line(line: str) -> IemocapLine:
    """Parses ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``."""
    if not isinstance(line, str):
        raise ValueError(f"IEMOCAP line must be a string, got {type(line).__name__}")
    text = line.strip()
    m = _IEMOCAP_LINE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text[:80]!r} is not an EmoEvaluation line "
                         f"(expected '[START - END]<TAB>utterance<TAB>label<TAB>[V, A, D]')")
    start, end = float(m.group(1)), float(m.group(2))
    utt = parse_iemocap_utterance(m.group(3))
    label = m.group(4)
    if label not in IEMOCAP_LABELS:
        raise ValueError(f"{text[:80]!r}: label {label!r} not one of {', '.join(sorted(IEMOCAP_LABELS))}")
    if not end > start:
        raise ValueError(f"{text[:80]!r}: end time {end} is not after start time {start}")
    vad = (float(m.group(5)), float(m.group(6)), float(m.group(7)))
    return IemocapLine(start, end, utt, label, vad)


def parse_iemocap_evaluation(text: str, source: str = "<text>") -> tuple[list[IemocapLine], list[str]]:
    """Parses an EmoEvaluation file's text.

    Only lines starting with ``[`` are summary lines; the per-evaluator detail lines and headers are ignored.

    Returns:
        ``(lines, problems)``: the parsed summary lines and one message per malformed summary line (with its
        line number), so a caller can skip and report them instead of failing the whole dialog.
    """
    lines: list[IemocapLine] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.startswith("["):
            continue
        try:
            lines.append(parse_iemocap_line(raw))
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
    return lines, problems
