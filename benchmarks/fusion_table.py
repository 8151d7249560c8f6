"""The paper's fusion table on SynthAV: a ``multimae-der cv`` output beside the paper's RAVDESS numbers.

Run the cross-validation first (it resumes after a kill and skips finished (strategy, fold) cells)::

    multimae-der synth --out data/synth --format ravdess
    multimae-der prepare --dataset ravdess --root data/synth --image-size 64
    multimae-der cv --dataset ravdess --root data/synth --fusion all --folds 1,2,3 --model tiny --out runs/cv

then collect it (tables, plot, per-fold rows, timings and an HTML report)::

    python -m benchmarks.fusion_table --cv runs/cv --out docs/results/fusion-table
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from ffidelity.utils import atomic
from ffidelity.utils.report import HtmlReport
from multimae_der.model.fusion import display_name

#: MultiMAE-DER's RAVDESS (7 classes) numbers, UAR / WAR in %, one run on one split (paper, Table 1)
PAPER_RAVDESS: dict[str, tuple[float | None, float]] = {
    "cfas": (80.65, 81.39), "sfas": (75.79, 76.94), "ffls": (82.27, 83.56), "fslf": (83.23, 83.61),
    "ofos": (77.78, 78.61), "rfas": (75.97, 75.44), "video": (None, 74.13), "audio": (None, 80.55)}

#: what each strategy does to the frames the encoder sees, and so to SynthAV's cues (tubelet 2, 64x64, 16 frames)
WHAT_IT_DOES: dict[str, str] = {
    "cfas": "every frame is the face on top of the audio picture, each squashed to half height: both cues in "
            "every frame, at half the vertical resolution",
    "sfas": "every frame is the pixel mean of the face and the audio picture: both cues superimposed, each at "
            "half contrast and mixed in the same patches",
    "ffls": "8 face frames, then 8 audio pictures: tubes of pure video then pure audio, full resolution",
    "fslf": "8 audio pictures, then 8 face frames: the same as FFLS in the other order",
    "ofos": "face and audio picture alternate, so every tubelet (2 frames) averages a face frame with an audio "
            "picture in its patch embedding: both cues in every token, entangled from the first layer",
    "rfas": "the OFOS frames in a random order per clip: a tubelet pairs two faces, two audio pictures or one "
            "of each, and the position of each modality changes from clip to clip",
    "video": "16 face frames: the visual group only (the design caps it at 50%)",
    "audio": "16 audio pictures: the audio group only (capped at 50%)",
}


def collect(cv: Path, out: Path) -> pd.DataFrame:
    """Copies the cv tables and plot to ``out`` and writes ``comparison.csv``/``.md``, ``timing.json``, report."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "results.md", "results.png", "folds.csv"):
        shutil.copyfile(cv / name, out / name)
    table = pd.read_csv(cv / "results.csv")
    rows, seconds = [], {}
    for run_config in sorted(cv.glob("*/fold_*/config.json")):  # config first, weights last: the cell's time
        weights = run_config.parent / "model.safetensors"
        if weights.is_file():
            seconds[f"{run_config.parent.parent.name}/{run_config.parent.name}"] = round(
                weights.stat().st_mtime - run_config.stat().st_mtime, 1)
    for r in table.itertuples():
        paper_uar, paper_war = PAPER_RAVDESS.get(r.strategy, (None, None))
        rows.append({"strategy": r.strategy, "ours_uar": r.uar_mean, "ours_uar_std": r.uar_std,
                     "ours_war": r.war_mean, "ours_war_std": r.war_std, "folds": r.folds,
                     "paper_ravdess_uar": paper_uar, "paper_ravdess_war": paper_war,
                     "what_it_does": WHAT_IT_DOES.get(r.strategy, "")})
    comp = pd.DataFrame(rows)
    atomic.write_text(out / "comparison.csv", comp.to_csv(index=False, float_format="%.2f"))

    def cell(m: float | None, s: float | None = None) -> str:
        if m is None or pd.isna(m):
            return "-"
        return f"{m:.2f} ± {s:.2f}" if s is not None and pd.notna(s) else f"{m:.2f}"

    lines = ["| strategy | SynthAV UAR (%) | SynthAV WAR (%) | paper RAVDESS UAR / WAR (%) |", "|---|---|---|---|"]
    for c in rows:
        paper = f"{cell(c['paper_ravdess_uar'])} / {cell(c['paper_ravdess_war'])}"
        lines.append(f"| {display_name(c['strategy'])} | {cell(c['ours_uar'], c['ours_uar_std'])} | "
                     f"{cell(c['ours_war'], c['ours_war_std'])} | {paper} |")
    md = "\n".join(lines) + "\n"
    atomic.write_text(out / "comparison.md", md)
    total = sum(seconds.values())
    atomic.write_json(out / "timing.json", {"train_seconds_per_cell": seconds, "train_seconds_total": total})
    rep = HtmlReport("Fusion strategies on SynthAV (subject-independent cross-validation)", out)
    cmd = (cv / "results.md").read_text(encoding="utf-8").split("Reproduce with:")[-1].strip()
    rep.paragraph("SynthAV's 8 classes are pairs (visual group, audio group) arranged so that video alone can reach "
                  "at most 50% and audio alone at most 50%: only a model that combines both modalities can score "
                  "above that. Mean ± sample std over the folds; the paper's numbers are one run on real RAVDESS "
                  "(7 classes) and are shown for the ordering, not as a like-for-like comparison.")
    rep.table(comp.drop(columns=["what_it_does"]), index=False, float_format="{:.2f}")
    rep.image(out / "results.png", "UAR and WAR per strategy, mean ± std over folds")
    rep.bullets([f"{display_name(c['strategy'])}: {c['what_it_does']}" for c in rows])
    rep.code(cmd)
    rep.save("report.html")
    return comp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, required=True, help="a multimae-der cv output folder")
    parser.add_argument("--out", type=Path, default=Path("docs/results/fusion-table"))
    args = parser.parse_args()
    print(collect(args.cv, args.out).drop(columns=["what_it_does"]).to_string(index=False))


if __name__ == "__main__":
    main()
