"""``multimae-der explain | faithfulness``: explanations of a trained run, and their F-Fidelity.

Datasets are built through the model CLI's seam (:func:`multimae_der.cli.model.build_dataset`), with the
run's own preprocessing settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ffidelity.cli._common import console, friendly_errors

RunOpt = Annotated[Path, typer.Option(help="A finished run folder.")]
DatasetOpt = Annotated[str | None, typer.Option(help="Dataset name (ravdess, cremad, iemocap).")]
RootOpt = Annotated[Path | None, typer.Option(help="Dataset root folder.")]
CacheOpt = Annotated[Path | None, typer.Option(help="Preprocessing cache folder.")]
OutOpt = Annotated[Path, typer.Option(help="Output folder.")]
FoldOpt = Annotated[int | None, typer.Option(help="Use this subject-independent fold's test clips.")]


def _dataset(run: Path, dataset: str | None, root: Path | None, cache: Path | None) -> Any:
    from multimae_der.cli import model as cli_model
    from multimae_der.run import read_run_config

    if dataset is None or root is None:
        raise ValueError("give a VIDEO file, or --dataset and --root")
    prep = read_run_config(run).get("preprocessing") or {}
    return cli_model.build_dataset(dataset, root, cache, prep), prep


def _fold(dataset: str, data: Any, prep: dict, fold: int) -> tuple[list[int], list[int]]:
    from multimae_der.cli import model as cli_model

    folds = cli_model.build_folds(dataset, data, prep)
    if not 0 <= fold < len(folds):
        raise ValueError(f"--fold must be in 0..{len(folds) - 1}")
    train, test = folds[fold]
    return list(train), list(test)


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--indices must be comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    from multimae_der.explain import resolve_explainer

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("--explainers is empty")
    for n in names:
        resolve_explainer(n)  # unknown names fail before any work
    return names


def register(app: typer.Typer) -> None:
    @app.command("explain")
    @friendly_errors
    def explain_cmd(video: Annotated[Path | None, typer.Argument(help="A video file with audio (or use "
                                                                      "--dataset/--root).")] = None,
                    run: RunOpt = Path("run"), dataset: DatasetOpt = None, root: RootOpt = None,
                    cache: CacheOpt = None, fold: FoldOpt = None,
                    indices: Annotated[str | None, typer.Option(help="Comma-separated clip indices.")] = None,
                    limit: Annotated[int, typer.Option(help="Clips to explain when --indices is not given.")] = 4,
                    explainers: Annotated[str, typer.Option(help="Comma-separated: ig, saliency, sg_sq, occlusion, "
                                                                 "gradcam (ViT Grad-CAM), smoothgrad, random.")]
                    = "ig,saliency,sg_sq,occlusion",
                    target: Annotated[str, typer.Option(help="Explain the 'predicted' or the true ('label') "
                                                             "class.")] = "predicted",
                    gif: Annotated[bool, typer.Option("--gif/--no-gif", help="Write animated GIFs.")] = True,
                    out: OutOpt = Path("explanations"),
                    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True) -> None:
        """Explain clips: overlays on frames and spectrograms (PNG, GIF), timelines, modality shares, HTML."""
        from multimae_der.explain import explain_clips, load_video_item
        from multimae_der.run import load_run

        names = _names(explainers)
        loaded = load_run(run)
        if video is not None:
            data: Any = [load_video_item(loaded, video)]
            idx: list[int] | None = [0]
        else:
            data, prep = _dataset(run, dataset, root, cache)
            idx = _ints(indices)
            if idx is None:
                pool = _fold(dataset or "", data, prep, fold)[1] if fold is not None else list(range(len(data)))
                idx = pool[: max(1, limit)]
        summary = explain_clips(loaded, data, idx, out, names, target=target, gif=gif, progress=progress)
        for k, clip in enumerate(summary["clips"]):
            shares = ", ".join(f"{n} V{e['share'].get('video', 0):.0%}/A{e['share'].get('audio', 0):.0%}"
                               for n, e in clip["explanations"].items())
            console.print(f"clip {k} ({Path(clip['path']).name}): predicted [bold]{clip['predicted']}[/] "
                          f"({clip['probability']:.0%}); {shares}")
        console.print(f"report: {summary['report']}  ({summary['seconds']:.1f} s)")

    @app.command("faithfulness")
    @friendly_errors
    def faithfulness_cmd(run: RunOpt = Path("run"), dataset: DatasetOpt = None, root: RootOpt = None,
                         cache: CacheOpt = None, out: OutOpt = Path("faithfulness"),
                         quick: Annotated[bool, typer.Option("--quick/--full", help="Small settings (minutes on a "
                                                                                   "CPU) or the paper's.")] = False,
                         fold: Annotated[int, typer.Option(help="Test fold (the others fine-tune).")] = 0,
                         n_test: Annotated[int | None, typer.Option(help="Test clips (default: preset).")] = None,
                         n_train: Annotated[int | None, typer.Option(help="Fine-tuning clips (default: preset).")]
                         = None,
                         explainers: Annotated[str | None, typer.Option(help="Comma-separated base explainers "
                                                                             "(default: preset).")] = None,
                         n_samples: Annotated[int | None, typer.Option(help="Monte-Carlo samples N.")] = None,
                         seeds: Annotated[int | None, typer.Option(help="Degradation seeds.")] = None,
                         mode: Annotated[str, typer.Option(help="prob or acc.")] = "prob",
                         progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True) -> None:
        """F-Fidelity's controlled experiment on the emotion model, plus the ground-truth and modality checks."""
        from multimae_der.faithfulness import emotion_benchmark

        data, prep = _dataset(run, dataset, root, cache)
        train, test = _fold(dataset or "", data, prep, fold)
        overrides = {k: v for k, v in {"n_samples": n_samples, "seeds": seeds}.items() if v is not None}
        res = emotion_benchmark(run, data, out, quick, test_indices=test, train_indices=train, n_test=n_test,
                                n_train=n_train, explainers=_names(explainers) if explainers else None,
                                progress=progress, mode=mode, **overrides)
        for line in res.verdicts():
            console.print(line)
        if res.ground_truth is not None:
            wins = ", ".join(f"{k} {v:.0%}" for k, v in res.ground_truth["wins"].items())
            console.print(f"true explanation beats the degraded copies on both sides: {wins}")
        console.print(f"reports: {out / 'report.html'}, {out / 'emotion.html'}  "
                      f"({res.timings['emotion_total_s']:.0f} s)")
