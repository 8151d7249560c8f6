"""The local web app: drop in a video, see the predicted emotion, why (attributions on the frames and on the audio
pictures, the modality share), and how faithful that "why" is (F-Fidelity scores of the explainers).

The work is done by plain functions, testable without a browser:

* :func:`check_upload` refuses what the server should not decode (too large, too long, not a video, no audio
  track) with a :class:`UploadError` (a :class:`~multimae_der.media.MediaError`) whose text is shown in the page;
* :func:`analyze` preprocesses the clip exactly as the run's data was, predicts (all class probabilities) and
  explains it with one explainer, and renders one overlay picture per time step (video frame | audio picture);
* :func:`load_faithfulness` / :func:`faithfulness_markdown` read the F-Fidelity results of ``multimae-der
  faithfulness`` for THIS model (checked by the weights' digest) or say that none were computed and how to;
* :func:`find_examples` lists example clips (``--examples DIR``, else clips shipped next to the run).

:func:`build_app` wires them into a Gradio page and :func:`serve` launches it on 127.0.0.1 with analytics off,
no share link and system fonts, so the page works without internet. Gradio is imported only there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimae_der.explain import ClipExplanation, explain_items, resolve_explainer
from multimae_der.fusion import MODALITIES
from multimae_der.media import MediaError
from multimae_der.predict import Prediction, predict_clip
from multimae_der.run import Run, load_run

log = logging.getLogger(__name__)

#: explainers offered for the emotion model (all work on the fused VideoMAE input; ``vit_gradcam`` is the
#: ViT Grad-CAM, ``random`` the reference an explainer should beat).
SERVE_EXPLAINERS: tuple[str, ...] = ("saliency", "integrated_gradients", "sg_sq", "smoothgrad", "occlusion",
                                     "vit_gradcam", "random")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".flv")
_BROWSER_VIDEO = (".mp4", ".webm", ".ogg")
#: FFmpeg demuxers that open pictures and text files as one-stream "videos".
_NOT_VIDEO_FORMATS = ("tty", "image2", "gif", "apng", "webp_pipe")
_METHODS = {"ffid": "F-Fidelity", "rfid": "R-Fidelity", "fid": "Fidelity"}
INSTALL_HINT = "pip install 'multimae-der[serve]'"


class UploadError(MediaError):
    """A clip the app refuses before decoding it: missing, empty, too large, too long, not a video, or silent."""


@dataclass(frozen=True)
class Limits:
    """What one upload may cost the server.

    Attributes:
        max_mb: largest accepted file, in MB (10^6 bytes).
        max_seconds: longest accepted clip, in seconds.
    """

    max_mb: float = 50.0
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.max_mb > 0 or not self.max_seconds > 0:
            raise ValueError(f"limits must be positive, got {self.max_mb} MB and {self.max_seconds} s")


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`check_upload` learnt from the container header: size, duration (``None`` if unknown)."""

    path: Path
    size_mb: float
    duration: float | None


def _container_duration(container: Any) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    spans = [float(s.duration * s.time_base) for s in container.streams
             if s.duration is not None and s.time_base is not None and s.duration > 0]
    return max(spans) if spans else None


def check_upload(path: str | os.PathLike[str] | None, limits: Limits = Limits()) -> ClipInfo:
    """Checks an uploaded file before any decoding: present, within the size limit, a video with an audio
    track, within the duration limit (from the header; clips without one are checked after decoding).

    Raises:
        UploadError: with a message meant for the page.
    """
    import av

    if path is None or not str(path).strip():
        raise UploadError("No clip given: upload a video or pick an example clip.")
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise UploadError(f"{name}: file not found.")
    size = p.stat().st_size
    if size == 0:
        raise UploadError(f"{name} is empty (0 bytes).")
    size_mb = size / 1e6
    if size_mb > limits.max_mb:
        raise UploadError(f"{name} is {size_mb:.1f} MB; this server accepts clips up to {limits.max_mb:g} MB.")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        raise UploadError(f"{name} is not a video file (it cannot be opened as audio/video media).") from None
    try:
        fmt = container.format.name or ""
        if not container.streams.video or any(f in fmt.split(",") for f in _NOT_VIDEO_FORMATS) or \
                fmt.endswith("_pipe"):
            kind = "an audio file" if container.streams.audio and not container.streams.video else "not a video"
            raise UploadError(f"{name} is {kind}: it holds no video stream. The model needs a video with sound.")
        if not container.streams.audio:
            raise UploadError(f"{name} has no audio track: the model needs the voice as well as the face.")
        duration = _container_duration(container)
    finally:
        container.close()
    _check_duration(name, duration, limits)
    return ClipInfo(p, size_mb, duration)


def _check_duration(name: str, duration: float | None, limits: Limits) -> None:
    if duration is not None and duration > limits.max_seconds:
        raise UploadError(f"{name} lasts {duration:.1f} s; this server accepts clips up to {limits.max_seconds:g} s "
                          "(trim it first).")


def user_message(exc: BaseException) -> str:
    """The text the page shows for an error: the message of the errors users cause (bad files, unknown names),
    a short generic line for anything else (the traceback goes to the server log, never to the page)."""
    if isinstance(exc, (MediaError, FileNotFoundError, ValueError)):
        text = str(exc.args[0] if exc.args else exc)
        return text if isinstance(exc, UploadError) else f"This clip cannot be used: {text}"
    return f"The analysis failed ({type(exc).__name__}); see the server log for details."


# -- the prediction and its explanation --------------------------------------------------------------------------
@dataclass
class Analysis:
    """Everything the page shows for one clip.

    Attributes:
        path: the clip.
        prediction: emotion, label and every class probability.
        explanation: the chosen explainer's attributions mapped back to the video frames and audio windows.
        steps: one RGB uint8 picture per time step: the k-th used video frame and the k-th used audio picture,
            attribution overlaid with one colour scale for both (so brightness compares across modalities).
        captions: what each step shows (source indices and times).
        seconds: time taken.
    """

    path: Path
    prediction: Prediction
    explanation: ClipExplanation
    steps: list[np.ndarray]
    captions: list[str]
    seconds: float

    @property
    def share(self) -> dict[str, float]:
        """Fraction of the attribution mass on each modality (both 0 when the explanation is all zeros)."""
        return {m: float(self.explanation.share.get(m, 0.0)) for m in MODALITIES}


def _picture(item: dict[str, Any], modality: str, index: int) -> np.ndarray:
    src = item[modality][index]
    arr = src.numpy() if isinstance(src, torch.Tensor) else np.asarray(src)
    return np.ascontiguousarray(arr.transpose(1, 2, 0)).astype(np.float32) / 255.0


def overlay_steps(item: dict[str, Any], expl: ClipExplanation, *, frame_times: Sequence[float] | None = None,
                  window_bounds: Sequence[Sequence[float]] | None = None, size: int = 224
                  ) -> tuple[list[np.ndarray], list[str]]:
    """Step k = the k-th source frame and the k-th audio window the fusion used, side by side (each scaled to
    ``size`` pixels), with the attribution overlaid; returns the pictures and their captions."""
    from PIL import Image

    from multimae_der.explain_plots import color_scale, overlay

    vmax = color_scale(expl)
    used = {m: list(expl.used.get(m, [])) for m in MODALITIES}
    n = max((len(v) for v in used.values()), default=0)
    gap = np.full((size, max(2, size // 32), 3), 255, np.uint8)
    steps, captions = [], []
    for k in range(n):
        panels, words = [], []
        for m in MODALITIES:
            if not used[m]:
                continue
            if k >= len(used[m]):
                panels.append(np.zeros((size, size, 3), np.uint8))
                continue
            i = used[m][k]
            pic = overlay(_picture(item, m, i), expl.sources[m][i].numpy(), vmax)
            panels.append(np.asarray(Image.fromarray(pic).resize((size, size), Image.NEAREST)))
            if m == "video":
                when = f" at {float(frame_times[i]):.2f} s" if frame_times is not None else ""
                words.append(f"video frame {i}{when}")
            else:
                span = (f" ({float(window_bounds[i][0]):.2f}-{float(window_bounds[i][1]):.2f} s)"
                        if window_bounds is not None else "")
                words.append(f"audio window {i}{span}")
        row: list[np.ndarray] = []
        for p in panels:
            row += [gap, p] if row else [p]
        steps.append(np.concatenate(row, axis=1))
        captions.append(f"step {k + 1}/{n}: " + " | ".join(words))
    return steps, captions


def load_clip(run: Run, path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Preprocesses a video file exactly as the run's data was; returns the contract item (uint8 ``video``,
    ``audio``, SynthAV ground truth when it sits beside the file) and the raw result (times, durations)."""
    from multimae_der.prepare import preprocess_clip

    data = preprocess_clip(path, run.preprocessing)
    item: dict[str, Any] = {k: torch.as_tensor(v) for k, v in data.items()
                            if k in ("video", "audio", "gt_video", "gt_audio")}
    item["path"] = str(path)
    return item, data


def analyze(run: Run | str | os.PathLike[str], path: str | os.PathLike[str] | None, explainer: str = "saliency",
            limits: Limits = Limits(), *, size: int = 224) -> Analysis:
    """Checks, predicts and explains one clip.

    Args:
        run: a loaded run or a run folder.
        path: the video file.
        explainer: a name of :data:`SERVE_EXPLAINERS` (or any registered explainer / alias).
        limits: size and duration limits.
        size: side of each overlay panel in pixels.

    Raises:
        UploadError / MediaError: the file cannot be used (message meant for the user).
        ValueError: unknown explainer.
    """
    t0 = time.perf_counter()
    run = run if isinstance(run, Run) else load_run(run)
    name = resolve_explainer(explainer)
    info = check_upload(path, limits)
    item, data = load_clip(run, info.path)
    if info.duration is None:
        _check_duration(info.path.name, float(data.get("video_duration", 0.0)), limits)
    prediction = predict_clip(run, item)
    expl = explain_items(run, [item], [name])[0][name]
    steps, captions = overlay_steps(item, expl, frame_times=data.get("frame_times"),
                                    window_bounds=data.get("window_bounds"), size=size)
    return Analysis(info.path, prediction, expl, steps, captions, time.perf_counter() - t0)


# -- faithfulness results --------------------------------------------------------------------------------------
@dataclass
class FaithfulnessView:
    """The F-Fidelity results shown beside the explanation.

    Attributes:
        folder: the results folder used (``None``: nothing found for this model).
        rows: per (method, explainer): ``morf_area`` (area under the Fid+ curve: removing the explainer's top
            tubes; higher = more faithful) and ``lerf_area`` (Fid-: keeping only them; lower = more faithful).
        note: where the numbers come from, or why there are none and the command that computes them.
    """

    folder: Path | None
    rows: list[dict[str, Any]]
    note: str

    def explainers(self) -> list[str]:
        return list(dict.fromkeys(r["explainer"] for r in self.rows))


def faithfulness_command(run_dir: Path) -> str:
    """The command that computes F-Fidelity results the app picks up."""
    return f"multimae-der faithfulness --run {run_dir} --out {run_dir / 'faithfulness'} --quick"


def faithfulness_candidates(run_dir: Path) -> list[Path]:
    """Folders searched when none is given: ``RUN/faithfulness``, ``RUN``, and the demo's layout
    (``<out>/emotion/runs/<strategy>`` is evaluated in ``<out>/explain/faithfulness``)."""
    found = [run_dir / "faithfulness", run_dir]
    if run_dir.parent.name == "runs" and len(run_dir.parents) >= 3:
        found.append(run_dir.parents[2] / "explain" / "faithfulness")
    return found


def _canonical(name: str) -> str:
    try:
        return resolve_explainer(name)
    except ValueError:
        return name


def load_faithfulness(run: Run, folder: str | os.PathLike[str] | None = None, *, digest: str | None = None
                      ) -> FaithfulnessView:
    """Reads ``results.json`` of ``multimae-der faithfulness`` from ``folder`` (or the default candidates).

    A folder counts only when it evaluated THIS model: its ``models/original/source.json`` records the SHA-1 of
    the weights (compared with ``digest``, computed when not given). Never invents numbers: without results
    the view is empty and its note says how to compute them.
    """
    import json

    from multimae_der.faithfulness import SOURCE_FILE, model_digest

    folders = [Path(folder)] if folder is not None else faithfulness_candidates(run.path)
    command = faithfulness_command(run.path)
    reasons: list[str] = []
    for f in folders:
        results = f / "results.json"
        if not results.is_file():
            continue
        try:
            saved = json.loads(results.read_text(encoding="utf-8"))
            source = json.loads((f / SOURCE_FILE).read_text(encoding="utf-8")) if (f / SOURCE_FILE).is_file() \
                else None
        except (OSError, json.JSONDecodeError) as exc:
            reasons.append(f"{results} cannot be read ({exc})")
            continue
        if source is None:
            reasons.append(f"{f} does not record which model it evaluated")
            continue
        digest = digest or model_digest(run)
        if source.get("sha1") != digest:
            reasons.append(f"{f} holds results of another model ({source.get('run')})")
            continue
        summary = saved.get("summary") or {}
        rows = []
        for r in saved.get("baseline") or []:
            e, m = str(r.get("explainer")), str(r.get("method"))
            if m not in _METHODS:
                continue
            gt = (summary.get(e) or {}).get(m, {}).get("macro_morf_vs_gt")
            rows.append({"explainer": _canonical(e), "method": m, "morf_area": r.get("morf_area"),
                         "lerf_area": r.get("lerf_area"), "macro_morf_vs_gt": gt,
                         "gap_se": _gap_to_random(saved.get("curves") or [], e, m)})
        cfg = saved.get("config") or {}
        task = saved.get("task") or {}
        removal = {"drop": "tokens dropped from the encoder's sequence",
                   "fill": "tubes filled with the mean colour"}.get(str(task.get("removal", "fill")), "?")
        note = (f"From `{results}`: {task.get('n_test_used', '?')} held-out test clips, removal: {removal}, "
                f"N = {cfg.get('n_samples', '?')} samples, beta = {cfg.get('beta', '?')}, "
                f"{len(saved.get('sparsities') or [])} sparsities, mode {cfg.get('mode', '?')}.")
        return FaithfulnessView(f, rows, note)
    why = ("; ".join(reasons) + ". ") if reasons else ""
    note = (f"No F-Fidelity results were computed for this model. {why}Compute them with "
            f"`{command}` (minutes on a CPU); this page reads them on the next analysis.")
    if folder is not None and not reasons:
        note = f"`{folder}` holds no results.json. " + note
    return FaithfulnessView(None, [], note)


def _gap_to_random(curves: list[dict[str, Any]], explainer: str, method: str) -> float | None:
    """How many standard errors the explainer's MoRF area stands above the random explainer's (paired over the
    test clips and seeds, noise 0); ``None`` when the results hold no per-clip areas."""
    def per_input(name: str) -> dict[int, np.ndarray]:
        return {int(c["seed"]): np.asarray(c["auc_plus_per_input"], float) for c in curves
                if c.get("explainer") == name and c.get("method") == method and float(c.get("noise", 0)) == 0.0
                and c.get("auc_plus_per_input") is not None}

    mine, rand = per_input(explainer), per_input("random")
    seeds = sorted(set(mine) & set(rand))
    if explainer == "random" or not seeds:
        return None
    from multimae_der.faithfulness import paired_signal

    d = np.concatenate([mine[s] - rand[s] for s in seeds])
    _, _, signal = paired_signal(d)
    return signal if np.isfinite(signal) else None


def _num(v: Any) -> str:
    return "-" if v is None or not np.isfinite(float(v)) else f"{float(v):.3g}"


def faithfulness_markdown(view: FaithfulnessView, explainer: str | None = None) -> str:
    """A Markdown table: one row per evaluated explainer (the chosen one marked), Fid+ / Fid- areas per method."""
    if not view.rows:
        return view.note
    chosen = _canonical(explainer) if explainer else None
    methods = [m for m in _METHODS if any(r["method"] == m for r in view.rows)]
    by = {(r["explainer"], r["method"]): r for r in view.rows}
    head = ["explainer"]
    for m in methods:
        head += [f"{_METHODS[m]}+ area (higher = more faithful)", f"{_METHODS[m]}- area (lower = more faithful)",
                 f"{_METHODS[m]}+ above random (standard errors)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in view.explainers():
        cells = [f"**{e}** (shown)" if e == chosen else e]
        for m in methods:
            r = by.get((e, m), {})
            gap = r.get("gap_se")
            cells += [_num(r.get("morf_area")), _num(r.get("lerf_area")), "-" if gap is None else f"{gap:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = ("Faithfulness of each explainer on this model: areas under the Fid+ (remove the explainer's top "
            "tubes) and Fid- (keep only them) curves over the sparsities; F-Fidelity evaluates on the model's "
            "randomly-masked fine-tuned copy. `random` is the chance reference; an explainer a few standard "
            "errors above it is distinguishable from chance, one near 0 is not.\n\n" + "\n".join(lines) + "\n\n"
            + view.note)
    if chosen and chosen not in view.explainers():
        text += (f"\n\n**{chosen}** was not among the evaluated explainers; rerun `multimae-der faithfulness` "
                 f"with `--explainers {','.join([*(e for e in view.explainers() if e != 'random'), chosen])}` to score it.")
    return text


# -- example clips -----------------------------------------------------------------------------------------------
def _videos(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in found if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def find_examples(run: Run | str | os.PathLike[str], examples: str | os.PathLike[str] | None = None, *,
                  limit: int = 12) -> list[Path]:
    """Example clips: the videos under ``examples`` (an error when it has none), else those shipped with the
    run (``RUN/examples/``, ``RUN/*.mp4``) and those of the data folder the run recorded (the demo's SynthAV).

    Raises:
        FileNotFoundError / ValueError: ``examples`` is not a folder, or holds no video.
    """
    if examples is not None:
        folder = Path(examples)
        if not folder.is_dir():
            raise FileNotFoundError(f"--examples {folder} is not a folder")
        clips = _videos(folder, recursive=True)
        if not clips:
            raise ValueError(f"--examples {folder} holds no video ({', '.join(VIDEO_SUFFIXES)})")
        return clips[:limit]
    run_dir = run.path if isinstance(run, Run) else Path(run)
    clips = _videos(run_dir / "examples", True) if (run_dir / "examples").is_dir() else []
    clips += _videos(run_dir, recursive=False)
    data = run.data if isinstance(run, Run) else {}
    root = data.get("root")
    if root and Path(root).is_dir() and len(clips) < limit:
        trained = training_clips(run)  # the run's held-out clips first: those are the ones worth trying
        clips += sorted(_videos(Path(root), recursive=True), key=lambda p: p.stem in trained)
    return list(dict.fromkeys(clips))[:limit]


def training_clips(run: Run | str | os.PathLike[str]) -> set[str]:
    """Ids (file stems) of the clips the run was trained on, as recorded in its ``config.json``."""
    data = run.data if isinstance(run, Run) else {}
    return {str(c) for c in data.get("train_clips") or ()}


# -- the page ------------------------------------------------------------------------------------------------------
def import_gradio() -> Any:
    """Gradio, with analytics (and its version check) off; a clear error when it is not installed."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError:
        raise ModuleNotFoundError(f"the web app needs gradio: {INSTALL_HINT}") from None
    return gradio


def share_html(share: dict[str, float]) -> str:
    """The modality share as a two-colour bar (inline CSS, nothing fetched)."""
    v, a = share.get("video", 0.0), share.get("audio", 0.0)
    if v + a <= 0:
        return "<p>No attribution mass at all (the explanation is all zeros).</p>"
    bar = "".join(f'<div style="width:{100 * x:.1f}%;background:{c};color:#fff;padding:4px 0;text-align:center;'
                  f'white-space:nowrap;overflow:hidden">{m} {x:.0%}</div>'
                  for m, x, c in (("video", v, "#1f77b4"), ("audio", a, "#d95f02")) if x > 0)
    return (f'<div id="share-bar" style="display:flex;width:100%;border-radius:4px;overflow:hidden">{bar}</div>'
            f'<p style="font-size:0.85em">Share of the attribution mass on the video frames vs the audio pictures.</p>')


def _figure_image(fig: Any) -> np.ndarray:
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


_CSS = "#overlay img {image-rendering: pixelated;}"


def build_app(run: Run | str | os.PathLike[str], *, examples: Sequence[str | os.PathLike[str]] = (),
              faithfulness: str | os.PathLike[str] | None = None, limits: Limits = Limits(),
              explainer: str = "saliency", explainers: Sequence[str] = SERVE_EXPLAINERS) -> Any:
    """The Gradio page (``gr.Blocks``) for one run; launch it with :func:`launch`."""
    gr = import_gradio()
    from multimae_der.explain_plots import timeline_figure
    from multimae_der.faithfulness import model_digest

    run = run if isinstance(run, Run) else load_run(run)
    names = [resolve_explainer(e) for e in explainers]
    explainer = resolve_explainer(explainer)
    if explainer not in names:
        names.insert(0, explainer)
    digest = model_digest(run)
    trained = training_clips(run)
    example_choices = [(f"{p.name} (a training clip)" if p.stem in trained else p.name, str(p))
                       for p in map(Path, examples)]
    first_view = load_faithfulness(run, faithfulness, digest=digest)

    def analyze_view(path: str | None, name: str) -> tuple[Any, ...]:
        view = load_faithfulness(run, faithfulness, digest=digest)  # re-read: results may have appeared
        faith = faithfulness_markdown(view, name)
        try:
            res = analyze(run, path, name, limits)
        except Exception as exc:  # every failure becomes a line in the page, never a traceback
            if not isinstance(exc, (MediaError, FileNotFoundError, ValueError)):
                log.exception("analysis of %s failed", path)
            return (f"**Cannot analyse this clip.** {user_message(exc)}", None, "", "", None,
                    gr.Slider(minimum=1, maximum=2, value=1, step=1, interactive=False), "", [], None, faith,
                    path, None)
        pred = res.prediction
        shown = str(res.path) if res.path.suffix.lower() in _BROWSER_VIDEO else None
        n = len(res.steps)
        gt = res.explanation.gt_overlap
        cue = (" Mass on the true SynthAV cue pixels: " + ", ".join(f"{m} {v:.0%}" for m, v in gt.items()) + "."
               if gt else "")
        return (f"Analysed **{res.path.name}** with **{res.explanation.explainer}** in {res.seconds:.1f} s.",
                pred.probabilities,
                f"### Predicted emotion: {pred.emotion} ({pred.probabilities[pred.emotion]:.0%})",
                share_html(res.share) + (f"<p style='font-size:0.85em'>{cue}</p>" if cue else ""),
                res.steps[0] if n else None,
                gr.Slider(minimum=1, maximum=max(n, 2), value=1, step=1, interactive=n > 1),
                res.captions[0] if n else "", list(zip(res.steps, res.captions, strict=True)),
                _figure_image(timeline_figure(res.explanation)), faith, path, shown)

    def show_step(k: float, steps: list[tuple[np.ndarray, str]]) -> tuple[Any, str]:
        if not steps:
            return None, ""
        i = min(max(int(k) - 1, 0), len(steps) - 1)
        return steps[i][0], steps[i][1]

    with gr.Blocks(title=f"MultiMAE-DER: {run.path.name}", analytics_enabled=False) as demo:
        gr.Markdown(f"## Emotion, why, and how faithful the why is\nRun `{run.path}`: fusion "
                    f"**{run.fusion['strategy'].upper()}**, classes {', '.join(run.class_names)}. Clips up to "
                    f"{limits.max_mb:g} MB and {limits.max_seconds:g} s, with a video and an audio track.",
                    latex_delimiters=[])
        current = gr.State(None)
        steps = gr.State([])
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Upload a video (with sound)", file_types=["video"], type="filepath",
                                 elem_id="upload")
                example = gr.Dropdown(choices=example_choices, value=None, label="...or pick an example clip",
                                      elem_id="example", interactive=bool(example_choices),
                                      info=None if example_choices else "no example clips found")
                chosen = gr.Dropdown(choices=names, value=explainer, label="Explainer", elem_id="explainer")
                preview = gr.Video(label="Clip", interactive=False, elem_id="preview")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a clip or pick an example.", elem_id="status", latex_delimiters=[])
                emotion = gr.Markdown("", elem_id="emotion", latex_delimiters=[])
                probs = gr.Label(label="Class probabilities", num_top_classes=len(run.class_names), elem_id="probs")
                share = gr.HTML("", label="Modality share", elem_id="share")
        with gr.Row():
            with gr.Column(scale=2):
                overlay_img = gr.Image(label="Attribution overlay: video frame | audio picture", type="numpy",
                                       interactive=False, elem_id="overlay", height=300)
                step = gr.Slider(minimum=1, maximum=2, value=1, step=1, label="Time step", interactive=False,
                                 elem_id="step")
                caption = gr.Markdown("", elem_id="caption", latex_delimiters=[])
            with gr.Column(scale=1):
                timeline = gr.Image(label="Attribution over time", type="numpy", interactive=False,
                                    elem_id="timeline")
        gr.Markdown("### How faithful is the explanation? (F-Fidelity)")
        faith = gr.Markdown(faithfulness_markdown(first_view, explainer), elem_id="faithfulness",
                            latex_delimiters=[])
        outputs = [status, probs, emotion, share, overlay_img, step, caption, steps, timeline, faith, current,
                   preview]

        upload.upload(analyze_view, [upload, chosen], outputs, show_progress="minimal")
        example.input(analyze_view, [example, chosen], outputs, show_progress="minimal")
        chosen.input(analyze_view, [current, chosen], outputs, show_progress="minimal")
        step.change(show_step, [step, steps], [overlay_img, caption], show_progress="hidden")
    return demo


def launch(demo: Any, *, host: str = "127.0.0.1", port: int = 7860, limits: Limits = Limits(),
           allowed: Sequence[str | os.PathLike[str]] = (), block: bool = True, quiet: bool = False) -> str:
    """Starts the server: local only by default, no share link, no analytics, system fonts (works offline).
    Returns the local URL (with ``block=False`` the server runs in a background thread)."""
    gr = import_gradio()
    theme = gr.themes.Default(font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
                              font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")])
    _, url, _ = demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
        show_error=False, quiet=quiet, allowed_paths=[str(Path(p).resolve()) for p in allowed],
        max_file_size=int(limits.max_mb * 1e6), theme=theme, css=_CSS, footer_links=["settings"],
        run_history=False, mcp_server=False, ssr_mode=False, pwa=False, enable_monitoring=False)
    return str(url)


def serve(run_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 7860,
          examples: str | os.PathLike[str] | None = None, faithfulness: str | os.PathLike[str] | None = None,
          limits: Limits = Limits(), explainer: str = "saliency", block: bool = True, quiet: bool = False
          ) -> tuple[Any, str]:
    """Loads the run, builds the page and launches it; returns ``(blocks, url)``.

    Raises:
        ModuleNotFoundError: gradio is missing (the message names the ``serve`` extra).
        FileNotFoundError / ValueError: not a finished run, bad ``--examples`` / ``--faithfulness`` folder.
    """
    import_gradio()
    run = load_run(run_dir)
    if faithfulness is not None and not Path(faithfulness).is_dir():
        raise FileNotFoundError(f"--faithfulness {faithfulness} is not a folder")
    clips = find_examples(run, examples)
    demo = build_app(run, examples=clips, faithfulness=faithfulness, limits=limits, explainer=explainer)
    url = launch(demo, host=host, port=port, limits=limits, allowed=clips, block=block, quiet=quiet)
    return demo, url
