"""Finding the clips of a data set on disk (names only, no decoding).

``scan_dataset(name, root)`` walks a RAVDESS, CREMA-D or IEMOCAP folder and returns one :class:`ClipSource` per
usable clip. A media file whose name breaks the convention, or whose paired file is missing (CREMA-D's WAV,
IEMOCAP's dialog video or sentence WAV) is skipped with ONE :class:`SkippedClipWarning` naming it and counted;
valid files that are simply not part of the task (RAVDESS video-only / audio-only modalities, IEMOCAP labels
outside the 4-class set) are counted without a warning. Decoding problems are found later by ``prepare``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multimae_der.data.labels import IEMOCAP_CODES, default_label_set
from multimae_der.data.naming import parse_cremad_name, parse_iemocap_evaluation, parse_ravdess_name

__all__ = ["DATASETS", "ClipSource", "ScanResult", "SkippedClipWarning", "canonical_dataset", "scan_dataset",
           "warn_skip"]

DATASETS: tuple[str, ...] = ("ravdess", "cremad", "iemocap")


def canonical_dataset(name: str) -> str:
    """The data set's canonical name: case, ``-`` and ``_`` are ignored (``CREMA-D`` -> ``cremad``).

    Raises:
        ValueError: not one of :data:`DATASETS`.
    """
    key = str(name).lower().replace("-", "").replace("_", "").strip()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


class SkippedClipWarning(UserWarning):
    """A clip was left out (bad name, missing pair, undecodable, no audio); the message names the file."""


def warn_skip(path: str | Path, reason: str) -> None:
    """Emits the one warning line for a skipped file."""
    warnings.warn(f"skipped {path}: {reason}", SkippedClipWarning, stacklevel=3)


@dataclass(frozen=True)
class ClipSource:
    """One clip to prepare: where its video and audio are, and what it shows.

    Attributes:
        dataset: ``ravdess``, ``cremad`` or ``iemocap``.
        clip_id: unique name inside the data set (file stem or IEMOCAP utterance name).
        path: the video file.
        emotion: raw emotion name (``"calm"``, ``"excited"``, ...), mapped to a class by a label set.
        actor: speaker id for subject-independent folds.
        audio_path: separate audio file (CREMA-D, IEMOCAP), else ``None`` (the video's own track).
        start, end: seconds into ``path`` (IEMOCAP dialogs), else ``None``.
        info: extra name fields (intensity, sentence, ...).
    """

    dataset: str
    clip_id: str
    path: str
    emotion: str
    actor: str
    audio_path: str | None = None
    start: float | None = None
    end: float | None = None
    info: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ClipSource:
        return cls(**d)  # type: ignore[arg-type]


@dataclass
class ScanResult:
    """The usable clips, the skipped files with reasons, and counts of files left out on purpose."""

    dataset: str
    root: str
    sources: list[ClipSource]
    skipped: list[tuple[str, str]]
    left_out: Counter = field(default_factory=Counter)


def _media_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Media files under ``folder``; hidden files and hidden folders (such as the default cache
    ``.multimae-cache``) are not walked."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [Path(dirpath) / f for f in filenames
                if not f.startswith(".") and Path(f).suffix.lower() in extensions]
    return sorted(out)


def scan_dataset(dataset: str, root: str | Path, *, warn: bool = True) -> ScanResult:
    """Lists the usable clips of ``dataset`` under ``root`` (see module doc).

    Raises:
        FileNotFoundError: ``root`` (or a required sub-folder) does not exist.
        ValueError: unknown data set, or no usable clip in the folder.
    """
    root = Path(root)
    dataset = canonical_dataset(dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    result = ScanResult(dataset, str(root), [], [])

    def skip(path: Path, reason: str) -> None:
        result.skipped.append((str(path), reason))
        if warn:
            warn_skip(path, reason)

    if dataset == "ravdess":
        _scan_ravdess(root, result, skip)
    elif dataset == "cremad":
        _scan_cremad(root, result, skip)
    else:
        _scan_iemocap(root, result, skip)
    if not result.sources:
        raise ValueError(f"no usable {dataset} clip found in {root} "
                         f"({len(result.skipped)} skipped, {sum(result.left_out.values())} left out)")
    return result


def _scan_ravdess(root: Path, result: ScanResult, skip) -> None:
    for p in _media_files(root, (".mp4",)):
        try:
            name = parse_ravdess_name(p.name)
        except ValueError as exc:
            skip(p, str(exc))
            continue
        if not name.is_audio_video:
            result.left_out["not audio-video (modality 02/03)"] += 1
            continue
        result.sources.append(ClipSource(
            "ravdess", name.stem, str(p), name.emotion_name, f"{name.actor:02d}",
            info={"intensity": name.intensity, "vocal_channel": name.vocal_channel, "statement": name.statement,
                  "repetition": name.repetition}))


def _scan_cremad(root: Path, result: ScanResult, skip) -> None:
    video_dir = root / "VideoFlash"
    audio_dir = root / "AudioWAV"
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{root} has no VideoFlash/ folder (expected CREMA-D's VideoFlash/*.flv)")
    for p in _media_files(video_dir, (".flv",)):
        try:
            name = parse_cremad_name(p.name)
        except ValueError as exc:
            skip(p, str(exc))
            continue
        wav = audio_dir / f"{name.stem}.wav"
        if not wav.is_file():
            skip(p, f"no audio: {wav} is missing")
            continue
        result.sources.append(ClipSource("cremad", name.stem, str(p), name.emotion_name, str(name.actor),
                                         audio_path=str(wav),
                                         info={"sentence": name.sentence, "level": name.level}))


def _scan_iemocap(root: Path, result: ScanResult, skip) -> None:
    labels = default_label_set("iemocap")
    sessions = [root / f"Session{s}" for s in range(1, 6) if (root / f"Session{s}").is_dir()]
    if not sessions:
        raise FileNotFoundError(f"{root} has no Session1..Session5 folders (expected IEMOCAP's layout)")
    for session in sessions:
        eval_dir = session / "dialog" / "EmoEvaluation"
        for video in _media_files(session / "dialog" / "avi" / "DivX", (".avi",)):
            if not (eval_dir / f"{video.stem}.txt").is_file():
                skip(video, f"label file {eval_dir / (video.stem + '.txt')} is missing: dialog left out")
        for txt in sorted(eval_dir.glob("*.txt")) if eval_dir.is_dir() else []:
            if txt.name.startswith("."):
                continue
            dialog = txt.stem
            video = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            try:
                text = txt.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                skip(txt, f"cannot be read ({exc})")
                continue
            lines, problems = parse_iemocap_evaluation(text, str(txt))
            for problem in problems:
                skip(txt, problem)
            if not video.is_file():
                if lines:
                    skip(video, f"dialog video missing: {len(lines)} utterances of {txt.name} left out")
                continue
            for line in lines:
                utt = line.utterance
                if utt.dialog != dialog:
                    skip(txt, f"utterance {utt.name} does not belong to dialog {dialog}")
                    continue
                emotion = IEMOCAP_CODES[line.label]
                if emotion not in labels:
                    result.left_out[f"label {line.label} (not in the 4-class set)"] += 1
                    continue
                wav = session / "sentences" / "wav" / dialog / f"{utt.name}.wav"
                if not wav.is_file():
                    skip(wav, "sentence audio missing")
                    continue
                result.sources.append(ClipSource("iemocap", utt.name, str(video), emotion, utt.speaker,
                                                 audio_path=str(wav), start=line.start, end=line.end,
                                                 info={"label_code": line.label, "vad": list(line.vad)}))
