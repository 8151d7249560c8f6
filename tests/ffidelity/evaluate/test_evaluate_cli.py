"""``ffidelity evaluate`` on a user's own model: the CLI's numbers are the Python API's, inputs come from arrays,
image folders or a labels CSV, and every bad input is one line naming the file, with nothing left behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ffidelity import FFidelity, Fidelity, ImageUnits, RFidelity, explain
from ffidelity.cli import app

runner = CliRunner()
SPARSITIES = (0.2, 0.5, 0.8)
FAST = ["--n-samples", "3", "--sparsities", ",".join(map(str, SPARSITIES)), "--mode", "prob", "--seed", "3"]


class TinyCNN(nn.Module):
    def __init__(self, out_shape: tuple[int, ...] = (3,)) -> None:
        super().__init__()
        self.out_shape = out_shape
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, int(np.prod(out_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return h.reshape((x.shape[0], *self.out_shape)) if len(self.out_shape) > 1 else h


class Planted:  # a class of the user's: a .pt holding it must never be unpickled
    pass


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import transformers

    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, num_labels=3)
    transformers.ViTForImageClassification(cfg).save_pretrained(root / "vit")
    torch.jit.script(TinyCNN()).save(str(root / "cnn.pt"))
    torch.jit.script(TinyCNN((3, 2))).save(str(root / "cnn3d.pt"))
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 16, 16), dtype=np.float32)
    y = rng.integers(0, 3, 5)
    np.savez(root / "x.npz", x=x, y=y)
    np.savez(root / "ft.npz", x=rng.random((12, 3, 16, 16), dtype=np.float32), y=rng.integers(0, 3, 12))
    return {"root": root, "vit": root / "vit", "cnn": root / "cnn.pt", "cnn3d": root / "cnn3d.pt",
            "x": root / "x.npz", "ft": root / "ft.npz"}


def _invoke(*args: str | Path) -> object:
    return runner.invoke(app, ["evaluate", *map(str, args)])


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _same(cli: dict, api) -> None:
    assert cli["sparsities"] == list(SPARSITIES)
    np.testing.assert_allclose(cli["fid_plus"], api.fid_plus, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cli["fid_minus"], api.fid_minus, rtol=0, atol=1e-6)
    assert cli["auc_plus"] == pytest.approx(api.auc_plus, abs=1e-6)
    assert cli["auc_minus"] == pytest.approx(api.auc_minus, abs=1e-6)


def _load_raw(kind: str, files: dict[str, Path]) -> nn.Module:
    if kind == "vit":
        import transformers

        return transformers.ViTForImageClassification.from_pretrained(files["vit"]).eval()
    return torch.jit.load(str(files["cnn"]), map_location="cpu").eval()


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_cli_numbers_are_the_python_apis(kind, files, tmp_path):
    out = tmp_path / "out"
    res = _invoke("--model", files[kind], "--inputs", files["x"], "--out", out, "--explainers", "saliency",
                  "--finetune-data", files["ft"], "--finetune-epochs", "1", *FAST)
    assert res.exit_code == 0, res.output
    for name in ("results.json", "table.csv", "curves.csv", "report.html", "config.json", "curves_fid.png",
                 "curves_rfid.png", "curves_ffid.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["n_samples"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the temporary folder was renamed, not copied
    got = _results(out)["metrics"]

    d = np.load(files["x"])
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    model = _load_raw(kind, files)
    common = {"sparsities": SPARSITIES, "mode": "prob", "seed": 3, "units": ImageUnits(), "progress": False}
    attr = explain("saliency", model, x, y)
    _same(got["fid"]["results"]["saliency"], Fidelity(**common).evaluate(model, x, y, attr))
    _same(got["rfid"]["results"]["saliency"], RFidelity(n_samples=3, **common).evaluate(model, x, y, attr))
    ffid = FFidelity(beta=0.1, n_samples=3, **common)
    ft = np.load(files["ft"])
    if kind == "cnn":  # copy.deepcopy of a ScriptModule cannot be trained: the loader's wrapper copies by save/load
        from ffidelity.evaluate.model import load_model

        model = load_model(files["cnn"]).model
    tuned = ffid.finetune(model, (torch.from_numpy(ft["x"]), torch.from_numpy(ft["y"])), epochs=1, lr=1e-4)
    attr_t = explain("saliency", tuned, x, y)
    _same(got["ffid"]["results"]["saliency"], ffid.evaluate(tuned, x, y, attr_t))
    assert got["ffid"]["params"]["beta"] == 0.1 and got["rfid"]["params"]["n_samples"] == 3


def _write_images(folder: Path, n: int, seed: int) -> list[np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(n):
        a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
        arrays.append(a)
    return arrays


def _as_inputs(paths: list[Path]) -> torch.Tensor:
    """What the command should make of PNG files with --image-size 16 --mean 0.5 --std 0.5, built by hand."""
    from PIL import Image

    xs = [np.asarray(Image.open(p).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR), np.float32) / 255
          for p in paths]
    return (torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2) - 0.5) / 0.5


def test_image_folder_with_class_subfolders(files, tmp_path):
    imgs = tmp_path / "imgs"
    for k, cls in enumerate(["cat", "dog", "emu"]):
        _write_images(imgs / cls, 2, k)
    out = tmp_path / "out"
    res = _invoke("--model", files["cnn"], "--inputs", imgs, "--out", out, "--explainers", "saliency",
                  "--metrics", "fid", "--image-size", "16", "--mean", "0.5", "--std", "0.5", *FAST)
    assert res.exit_code == 0, res.output
    got = _results(out)
    assert got["inputs"]["classes"] == ["cat", "dog", "emu"] and got["inputs"]["shape"] == [3, 16, 16]
    x = _as_inputs(sorted(imgs.glob("*/*.png")))
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    model = _load_raw("cnn", files)
    api = Fidelity(sparsities=SPARSITIES, mode="prob", seed=3, progress=False).evaluate(
        model, x, y, explain("saliency", model, x, y))
    _same(got["metrics"]["fid"]["results"]["saliency"], api)


def test_flat_image_folder_with_labels_csv(files, tmp_path):
    imgs = tmp_path / "flat"
    _write_images(imgs, 4, 7)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "label"], ["img2.png", 2], ["img0.png", 0], ["img3.png", 1],
                                  ["img1.png", 2]])
    out = tmp_path / "out"
    res = _invoke("--model", files["cnn"], "--inputs", imgs, "--labels", labels, "--out", out, "--explainers",
                  "saliency", "--metrics", "fid", "--image-size", "16", "--mean", "0.5", "--std", "0.5", *FAST)
    assert res.exit_code == 0, res.output
    got = _results(out)
    assert got["targets"] == "labels" and got["inputs"]["labels"] == str(labels)
    x = _as_inputs([imgs / f"img{i}.png" for i in (2, 0, 3, 1)])
    y = torch.tensor([2, 0, 1, 2])
    model = _load_raw("cnn", files)
    api = Fidelity(sparsities=SPARSITIES, mode="prob", seed=3, progress=False).evaluate(
        model, x, y, explain("saliency", model, x, y))
    _same(got["metrics"]["fid"]["results"]["saliency"], api)


@pytest.mark.parametrize("suffix", ["npz", "pt"])
def test_attributions_file(suffix, files, tmp_path):
    rng = np.random.default_rng(1)
    attr = rng.standard_normal((5, 16, 16)).astype(np.float32)  # the units' shape: one score per pixel
    path = tmp_path / f"my_attr.{suffix}"
    if suffix == "npz":
        np.savez(path, scores=attr)
    else:
        torch.save(torch.from_numpy(attr), path)
    out = tmp_path / "out"
    res = _invoke("--model", files["cnn"], "--inputs", files["x"], "--out", out, "--attributions", path,
                  "--metrics", "fid,rfid", *FAST)
    assert res.exit_code == 0, res.output
    got = _results(out)["metrics"]
    d = np.load(files["x"])
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    model = _load_raw("cnn", files)
    common = {"sparsities": SPARSITIES, "mode": "prob", "seed": 3, "progress": False}
    a = torch.from_numpy(attr)
    _same(got["fid"]["results"][f"file:{path.name}"], Fidelity(**common).evaluate(model, x, y, a))
    _same(got["rfid"]["results"][f"file:{path.name}"], RFidelity(n_samples=3, **common).evaluate(model, x, y, a))


# -- bad inputs: one line naming the file, exit code 1, nothing written ------------------------------------------
def _bad_cases(files: dict[str, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    """name -> (extra arguments, text the message must contain); the model defaults to the CNN, inputs to x."""
    d = np.load(files["x"])
    x, y = d["x"], d["y"]
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "garbage.pt").write_bytes(b"not a model at all")
    torch.save(TinyCNN(), tmp / "pickled_model.pt")
    (tmp / "noconfig").mkdir()
    np.savez(tmp / "grey.npz", x=x[:, :1], y=y)
    np.savez(tmp / "bad_labels.npz", x=x, y=np.array([0, 1, 2, 3, 1]))
    np.savez(tmp / "nan_inputs.npz", x=np.where(np.arange(16) == 3, np.nan, x).astype(np.float32), y=y)
    np.savez(tmp / "shape_attr.npz", a=np.ones((5, 7), np.float32))
    np.savez(tmp / "nan_attr.npz", a=np.full((5, 3, 16, 16), np.nan, np.float32))
    np.savez(tmp / "rows_attr.npz", a=np.ones((4, 3, 16, 16), np.float32))
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    torch.save({"x": torch.from_numpy(x), "extra": Planted()}, tmp / "planted.pt")
    (tmp / "badimgs" / "a").mkdir(parents=True)
    (tmp / "badimgs" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    _write_images(tmp / "flat", 2, 0)
    return {
        "corrupt model": (["--model", tmp / "garbage.pt"], "garbage.pt"),
        "pickled model": (["--model", tmp / "pickled_model.pt"], "pickled_model.pt"),
        "folder without config": (["--model", tmp / "noconfig"], "noconfig"),
        "missing model": (["--model", tmp / "nope.pt"], "nope.pt"),
        "3-d logits": (["--model", files["cnn3d"]], "2-D"),
        "inputs the model rejects": (["--inputs", tmp / "grey.npz"], "grey.npz"),
        "vit rejects inputs": (["--model", files["vit"], "--inputs", tmp / "grey.npz"], "grey.npz"),
        "labels out of range": (["--inputs", tmp / "bad_labels.npz"], "bad_labels.npz"),
        "nan inputs": (["--inputs", tmp / "nan_inputs.npz"], "nan_inputs.npz"),
        "corrupt npz": (["--inputs", tmp / "broken.npz"], "broken.npz"),
        "planted pickle": (["--inputs", tmp / "planted.pt"], "planted.pt"),
        "corrupt image": (["--inputs", tmp / "badimgs"], "broken.png"),
        "attributions shape": (["--attributions", tmp / "shape_attr.npz"], "shape_attr.npz"),
        "attributions rows": (["--attributions", tmp / "rows_attr.npz"], "rows_attr.npz"),
        "nan attributions": (["--attributions", tmp / "nan_attr.npz"], "nan_attr.npz"),
        "unknown explainer": (["--explainers", "saliency,nope"], "unknown explainer 'nope'"),
        "sparsity out of range": (["--sparsities", "0.2,1.5"], "--sparsities"),
        "sparsity not a number": (["--sparsities", "0.2,half"], "--sparsities"),
        "ffid without finetune data": (["--metrics", "fid,ffid"], "--finetune-data"),
        "finetune data without labels": (["--metrics", "ffid", "--finetune-data", tmp / "flat"], "flat"),
        "unknown metric": (["--metrics", "fid,roar"], "--metrics"),
        "nothing to evaluate": (["--explainers", ""], "nothing to evaluate"),
    }


def test_bad_inputs_are_one_line_naming_the_file(files, tmp_path):
    cases = _bad_cases(files, tmp_path / "in")
    for name, (extra, needle) in cases.items():
        out = tmp_path / "o" / name.replace(" ", "_")
        opts = {"--model": files["cnn"], "--inputs": files["x"], "--explainers": "saliency", "--metrics": "fid,rfid",
                "--out": out}
        for k in range(0, len(extra), 2):
            opts[extra[k]] = extra[k + 1]
        res = _invoke(*FAST[:4], *[v for kv in opts.items() for v in kv])  # the case's options come last
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 1, (name, res.output)
        assert "Traceback" not in res.output, (name, res.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (name, res.output)
        assert not out.exists(), name
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir()), (name, list((tmp_path / "o").iterdir()))


def test_a_non_empty_out_is_kept_unless_overwrite(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ["--model", files["cnn"], "--inputs", files["x"], "--out", out, "--explainers", "random",
            "--metrics", "fid", *FAST]
    res = _invoke(*args)
    assert res.exit_code == 1 and "--overwrite" in res.output and (out / "mine.txt").exists()
    res = _invoke(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert not (out / "mine.txt").exists() and (out / "results.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_publish_leaves_nothing_when_writing_fails(tmp_path):
    from ffidelity.evaluate.run import publish

    def half(tmp: Path) -> None:
        (tmp / "results.json").write_text("{")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish(tmp_path / "out", False, half)
    assert list(tmp_path.iterdir()) == []


def test_unlabelled_inputs_with_their_own_attributions(files, tmp_path):
    """No labels: the model's predicted class is the target; an ``attributions`` array beside ``x`` is evaluated."""
    d = np.load(files["x"])
    attr = np.random.default_rng(2).random(d["x"].shape).astype(np.float32)
    path = tmp_path / "xa.npz"
    np.savez(path, x=d["x"], attributions=attr)
    out = tmp_path / "out"
    res = _invoke("--model", files["cnn"], "--inputs", path, "--out", out, "--metrics", "fid", *FAST)
    assert res.exit_code == 0, res.output
    got = _results(out)
    assert got["targets"] == "the model's predicted class" and got["accuracy"]["model"] is None
    model = _load_raw("cnn", files)
    x = torch.from_numpy(d["x"])
    api = Fidelity(sparsities=SPARSITIES, mode="prob", seed=3, progress=False).evaluate(
        model, x, None, torch.from_numpy(attr))
    _same(got["metrics"]["fid"]["results"]["file:xa.npz"], api)
