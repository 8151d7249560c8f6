"""The local web app: drop in a video, see the predicted emotion, why (attributions on the frames and on the audio
pictures, the modality share), and how faithful that "why" is (F-Fidelity scores of the explainers).

The work is done by plain functions, testable without a browser:

* :mod:`multimae_der.app.analysis`: ``check_upload`` refuses what the server should not decode (too large, too
  long, not a video, no audio track) with an ``UploadError`` (a :class:`~multimae_der.data.media.MediaError`)
  whose text is shown in the page; ``analyze`` preprocesses the clip exactly as the run's data was, predicts (all
  class probabilities) and explains it with one explainer, and renders one overlay picture per time step (video
  frame | audio picture);
* :mod:`multimae_der.app.faithfulness_view`: ``load_faithfulness`` / ``faithfulness_markdown`` read the F-Fidelity
  results of ``multimae-der faithfulness`` for THIS model (checked by the weights' digest) or say that none were
  computed and how to;
* :func:`find_examples` lists example clips (``--examples DIR``, else clips shipped next to the run).

:func:`build_app` wires them into a Gradio page and :func:`serve` launches it on 127.0.0.1 with analytics off,
no share link and system fonts, so the page works without internet. Gradio is imported only there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# defined in analysis and faithfulness_view; kept importable from here, where they lived before the split
from multimae_der.app.analysis import (  # noqa: F401
    SERVE_EXPLAINERS,
    VIDEO_SUFFIXES,
    Analysis,
    ClipInfo,
    Limits,
    UploadError,
    analyze,
    check_upload,
    load_clip,
    overlay_steps,
    user_message,
)
from multimae_der.app.faithfulness_view import (  # noqa: F401
    FaithfulnessView,
    faithfulness_candidates,
    faithfulness_command,
    faithfulness_markdown,
    load_faithfulness,
)
from multimae_der.data.media import MediaError
from multimae_der.explain.attributions import resolve_explainer
from multimae_der.model.run import Run, load_run

log = logging.getLogger(__name__)

_BROWSER_VIDEO = (".mp4", ".webm", ".ogg")
INSTALL_HINT = "pip install 'multimae-der[serve]'"


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
    from multimae_der.explain.faithfulness import model_digest
    from multimae_der.explain.plots import timeline_figure

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
