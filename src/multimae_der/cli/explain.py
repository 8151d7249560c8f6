"""``multimae-der explain | faithfulness``: explanations of a trained run, and their F-Fidelity.

Clips come from the run's own data set (recorded at training: data set, folder, cache, label set, held-out
fold) unless ``--dataset`` / ``--root`` override it, and are loaded through the model CLI's seams
(:func:`multimae_der.cli.model.build_dataset`, :func:`~multimae_der.cli.model.build_folds`) with the run's
preprocessing. Folds are numbered from 1, as ``multimae-der folds`` prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ffidelity.cli._common import console, friendly_errors
from multimae_der.cli.data import CacheOpt
from multimae_der.cli.runs import resolve_run

RunOpt = Annotated[Path, typer.Option(help="A finished run folder, or a folder of runs to choose from.")]
DatasetOpt = Annotated[str | None, typer.Option(help="Override the run's data set (ravdess, cremad, iemocap).")]
RootOpt = Annotated[Path | None, typer.Option(help="Override the run's data folder.")]
LabelsOpt = Annotated[str | None, typer.Option(help="Label set (default: the run's).")]
FoldOpt = Annotated[int | None, typer.Option(help="Use fold K's clips (from 1; default: the run's held-out "
                                                  "fold).")]
NumFoldsOpt = Annotated[int | None, typer.Option(help="Override the number of folds.")]
OutOpt = Annotated[Path, typer.Option(help="Output folder.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress")]
AllowTrainOpt = Annotated[bool, typer.Option("--allow-train-clips", help="Score clips the run was trained on "
                                                                          "(refused by default).")]


def run_data(run: Path, dataset: str | None, root: Path | None, cache: Path | None, labels: str | None,
             fold: int | None, num_folds: int | None, progress: bool = True
             ) -> tuple[Any, list[int] | None, list[int] | None, int | None]:
    """The run's clips: ``(dataset, train indices, test indices, fold)``; indices are ``None`` without a fold."""
    from multimae_der.cli import model as cli_model
    from multimae_der.model.run import read_run_config

    cfg = read_run_config(run)
    recorded = dict(cfg.get("data") or {})
    if dataset is None and root is None:
        cache = cache or (Path(recorded["cache"]) if recorded.get("cache") else None)
    dataset = dataset or recorded.get("dataset")
    root = root or (Path(recorded["root"]) if recorded.get("root") else None)
    if not dataset or root is None:
        raise ValueError(f"{run} does not record its data set: give a VIDEO file, or --dataset and --root")
    explicit_fold = fold is not None
    fold = fold if fold is not None else recorded.get("fold")
    num_folds = num_folds if num_folds is not None else recorded.get("num_folds")
    data = cli_model._load(dataset, root, cache, cfg.get("preprocessing") or None,
                           labels or recorded.get("label_set"), 1, progress)
    names = getattr(data, "class_names", None)
    if names is not None and list(names) != list(cfg.get("class_names", [])):
        raise ValueError(f"the run was trained on classes {cfg.get('class_names')} but {dataset} has {list(names)}; "
                         "pass --labels")
    if fold is None or not explicit_fold:
        from multimae_der.data.heldout import held_out_indices

        held = held_out_indices(cfg, data)  # the clips the run did not train on, when it records them
        if held:
            seen = set(held)
            return data, [i for i in range(len(data)) if i not in seen], held, None
    if fold is None:
        return data, None, None, None
    tr, te = cli_model._split(dataset, data, int(fold), num_folds, int(recorded.get("fold_seed") or 0))
    return data, tr, te, int(fold)


def _ints(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--indices must be comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    from multimae_der.explain.attributions import resolve_explainer

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("--explainers is empty")
    for n in names:
        resolve_explainer(n)  # unknown names fail before any work
    return names


def register(app: typer.Typer) -> None:
    @app.command("explain")
    @friendly_errors
    def explain_cmd(video: Annotated[Path | None, typer.Argument(help="A video file with audio (default: clips "
                                                                      "of the run's data set).")] = None,
                    run: RunOpt = Path("run"), dataset: DatasetOpt = None, root: RootOpt = None,
                    cache: CacheOpt = None, labels: LabelsOpt = None, fold: FoldOpt = None,
                    num_folds: NumFoldsOpt = None,
                    indices: Annotated[str | None, typer.Option(help="Comma-separated clip indices.")] = None,
                    limit: Annotated[int, typer.Option(help="Clips to explain when --indices is not given.")] = 4,
                    explainers: Annotated[str, typer.Option(help="Comma-separated: ig, saliency, sg_sq, occlusion, "
                                                                 "gradcam (ViT Grad-CAM), smoothgrad, random.")]
                    = "ig,saliency,sg_sq,occlusion",
                    target: Annotated[str, typer.Option(help="Explain the 'predicted' or the true ('label') "
                                                             "class.")] = "predicted",
                    gif: Annotated[bool, typer.Option("--gif/--no-gif", help="Write animated GIFs.")] = True,
                    out: OutOpt = Path("explanations"), progress: ProgressOpt = True,
                    allow_train_clips: AllowTrainOpt = False) -> None:
        """Explain clips: overlays on frames and spectrograms (PNG, GIF), timelines, modality shares, HTML."""
        from multimae_der.explain.attributions import explain_clips, load_video_item
        from multimae_der.model.run import load_run

        names = _names(explainers)
        run = resolve_run(run)
        loaded = load_run(run)
        if video is not None:
            data: Any = [load_video_item(loaded, video)]
            idx: list[int] | None = [0]
        else:
            data, _, test, _ = run_data(run, dataset, root, cache, labels, fold, num_folds, progress)
            idx = _ints(indices)
            if idx is None:
                idx = (test if test is not None else list(range(len(data))))[: max(1, limit)]
            from multimae_der.data.heldout import check_held_out

            check_held_out(loaded.config, data, idx, allow=allow_train_clips)
        summary = explain_clips(loaded, data, idx, out, names, target=target, gif=gif, progress=progress)
        for k, clip in enumerate(summary["clips"]):
            shares = ", ".join(f"{n} V{e['share'].get('video', 0):.0%}/A{e['share'].get('audio', 0):.0%}"
                               for n, e in clip["explanations"].items())
            console.print(f"clip {k} ({Path(clip['path']).name}): predicted [bold]{clip['predicted']}[/] "
                          f"({clip['probability']:.0%}); {shares}", soft_wrap=True)
        console.print(f"report: {summary['report']}  ({summary['seconds']:.1f} s)", soft_wrap=True)

    @app.command("faithfulness")
    @friendly_errors
    def faithfulness_cmd(run: RunOpt = Path("run"), dataset: DatasetOpt = None, root: RootOpt = None,
                         cache: CacheOpt = None, labels: LabelsOpt = None, fold: FoldOpt = None,
                         num_folds: NumFoldsOpt = None, out: OutOpt = Path("faithfulness"),
                         quick: Annotated[bool, typer.Option("--quick/--full", help="Small settings (minutes on a "
                                                                                   "CPU) or the paper's.")] = False,
                         n_test: Annotated[int | None, typer.Option(help="Test clips (default: preset).")] = None,
                         n_train: Annotated[int | None, typer.Option(help="Fine-tuning clips (default: preset).")]
                         = None,
                         explainers: Annotated[str | None, typer.Option(help="Comma-separated base explainers "
                                                                             "(default: preset).")] = None,
                         n_samples: Annotated[int | None, typer.Option(help="Monte-Carlo samples N.")] = None,
                         seeds: Annotated[int | None, typer.Option(help="Degradation seeds.")] = None,
                         mode: Annotated[str | None, typer.Option(help="prob or acc (default: the setting's).")]
                         = None,
                         paper: Annotated[bool, typer.Option("--paper", help="The paper's setting (mean-colour "
                                                                             "filling, beta 0.1, alpha 0.5) instead "
                                                                             "of the recommended one.")] = False,
                         removal: Annotated[str | None, typer.Option(help="drop (tokens left out of the encoder) "
                                                                          "or fill (mean colour).")] = None,
                         unit: Annotated[str | None, typer.Option(help="token, frame or modality.")] = None,
                         beta: Annotated[float | None, typer.Option(help="Fine-tuning ratio and MoRF cap.")] = None,
                         beta_minus: Annotated[float | None, typer.Option(help="LeRF (complement) cap.")] = None,
                         alpha_plus: Annotated[float | None, typer.Option(help="MoRF removal rate.")] = None,
                         alpha_minus: Annotated[float | None, typer.Option(help="LeRF removal rate.")] = None,
                         progress: ProgressOpt = True, allow_train_clips: AllowTrainOpt = False) -> None:
        """F-Fidelity's controlled experiment on the emotion model, plus the ground-truth and modality checks.

        Test clips: fold K's (default: the run's held-out fold); the other folds' clips fine-tune the evaluator.
        The metric setting is the recommended one (token dropping; see the README's emotion faithfulness study)
        unless --paper is given; single options override parts of either.
        """
        from multimae_der.explain.faithfulness import emotion_benchmark

        run = resolve_run(run)

        data, train, test, _ = run_data(run, dataset, root, cache, labels, fold, num_folds, progress)
        if test is None:
            console.print("[yellow]the run records no held-out fold: testing on the first fold, which the run may "
                          "have trained on (pass --fold K for held-out clips)[/]", soft_wrap=True)
        overrides = {k: v for k, v in {"n_samples": n_samples, "seeds": seeds, "mode": mode, "beta": beta,
                                       "beta_minus": beta_minus, "alpha_plus": alpha_plus,
                                       "alpha_minus": alpha_minus}.items() if v is not None}
        res = emotion_benchmark(run, data, out, quick, test_indices=test, train_indices=train, n_test=n_test,
                                n_train=n_train, explainers=_names(explainers) if explainers else None,
                                progress=progress, setting="paper" if paper else "recommended", removal=removal,
                                unit=unit, allow_train_clips=allow_train_clips, **overrides)
        for line in res.verdicts():
            console.print(line, soft_wrap=True)
        if res.ground_truth is not None:
            wins = ", ".join(f"{k} {v:.0%}" for k, v in res.ground_truth["wins"].items())
            console.print(f"true explanation beats the degraded copies on both sides: {wins}", soft_wrap=True)
        console.print(f"reports: {out / 'report.html'}, {out / 'emotion.html'}  "
                      f"({res.timings['emotion_total_s']:.0f} s)", soft_wrap=True)
