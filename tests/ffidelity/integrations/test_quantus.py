"""F-Fidelity inside Quantus: the metric classes of ``ffidelity.integrations.quantus`` return exactly what the
engine's ``evaluate`` returns, take Quantus's calling convention (beside a real Quantus metric, and through
``quantus.evaluate``) and refuse bad attributions clearly. Skips only when Quantus is missing outside CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ffidelity import FFidelity, Fidelity, RFidelity, explain


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


try:
    import quantus
except ImportError as exc:  # pragma: no cover - depends on the environment
    if _in_ci():
        pytest.fail(f"Quantus must be installed in CI (it is in the dev extra): {exc}", pytrace=False)
    pytest.skip(f"Quantus is not installed: {exc}", allow_module_level=True)

from ffidelity.integrations.quantus import (  # noqa: E402  (after the Quantus check)
    FFidelityMetric,
    FidelityMetric,
    RFidelityMetric,
    quantus_explain_func,
)

SRC = Path(__file__).resolve().parents[3] / "src"
SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9)
N = 7


def tiny_cnn(channels: int, n_classes: int = 4, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(channels)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, n_classes)).to(dtype).eval()


def data(channels: int, dtype: torch.dtype = torch.float64, size: int = 8) -> tuple[nn.Module, torch.Tensor,
                                                                                     torch.Tensor, torch.Tensor]:
    model = tiny_cnn(channels, dtype=dtype)
    gen = torch.Generator().manual_seed(10 + channels)
    x = torch.randn(N, channels, size, size, generator=gen, dtype=dtype)
    a = torch.randn(N, 1, size, size, generator=gen, dtype=dtype)
    with torch.no_grad():
        y = model(x).argmax(-1)
    return model, x, y, a


KINDS = {
    "fid": (lambda **kw: Fidelity(**kw), lambda **kw: FidelityMetric(**kw), {}),
    "rfid": (lambda **kw: RFidelity(alpha_plus=0.6, alpha_minus=0.4, n_samples=5, **kw),
             lambda **kw: RFidelityMetric(alpha_plus=0.6, alpha_minus=0.4, n_samples=5, **kw), {}),
    "ffid": (lambda **kw: FFidelity(beta=0.3, n_samples=5, **kw),
             lambda **kw: FFidelityMetric(beta=0.3, n_samples=5, evaluator="model", **kw), {}),
}


def pair(kind: str, mode: str = "prob", **metric_kw):
    engine_fn, metric_fn, _ = KINDS[kind]
    common = {"sparsities": SPARSITIES, "mode": mode, "seed": 5}
    return engine_fn(progress=False, **common), metric_fn(**common, **metric_kw)


def test_import_ffidelity_does_not_import_quantus() -> None:
    code = ("import sys, ffidelity, ffidelity.integrations; assert 'quantus' not in sys.modules, 'imported'; "
            "from ffidelity.integrations import FFidelityMetric; assert 'quantus' in sys.modules; print('ok')")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["fid", "rfid", "ffid"])
def test_scores_equal_engine_evaluate(kind: str, channels: int) -> None:
    """Quantus style (numpy, channel-first, small Quantus batches) == the engine on the whole batch."""
    model, x, y, a = data(channels)
    engine, metric = pair(kind, score="both")
    ref = engine.evaluate(model, x, y, a[:, 0])
    scores = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), channel_first=True,
                    device="cpu", batch_size=3)  # 3 Quantus batches: the draws must not depend on batching
    assert isinstance(scores, list) and len(scores) == N
    assert all(isinstance(v, float) for row in scores for v in row)
    plus, minus = ref.per_sample_auc()
    np.testing.assert_allclose(np.array(scores), np.stack([plus, minus], 1), rtol=0, atol=1e-12)
    res = metric.result_
    assert res is not None and res.method == ref.method
    np.testing.assert_allclose(res.per_sample_plus, ref.per_sample_plus, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.per_sample_minus, ref.per_sample_minus, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.base_scores, ref.base_scores)
    assert metric.all_evaluation_scores == scores


@pytest.mark.parametrize("channels", [1, 3])
def test_attribution_layouts_and_score_options(channels: int) -> None:
    """(N, 1, H, W), (N, H, W) and input-shaped (summed over channels) attributions; score / curve options."""
    model, x, y, a = data(channels)
    engine, _ = pair("ffid")
    ref = engine.evaluate(model, x, y, a[:, 0])
    plus, minus = ref.per_sample_auc()
    call = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "channel_first": True}
    _, m_plus = pair("ffid")
    _, m_minus = pair("ffid", score="fid_minus")
    _, m_curve = pair("ffid", curve=True)
    for layout in (a.numpy(), a[:, 0].numpy(), np.repeat(a.numpy(), channels, axis=1) / channels):
        np.testing.assert_allclose(m_plus(a_batch=layout, **call), plus, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m_minus(a_batch=a.numpy(), **call), minus, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m_curve(a_batch=a.numpy(), **call), ref.per_sample_plus, rtol=0, atol=1e-12)
    assert m_plus.score_direction == quantus.helpers.enums.ScoreDirection.HIGHER
    assert m_minus.score_direction == quantus.helpers.enums.ScoreDirection.LOWER
    _, m_agg = pair("ffid", return_aggregate=True)
    np.testing.assert_allclose(m_agg(a_batch=a.numpy(), **call), [ref.auc_plus], rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_explain_func_computes_a_batch(channels: int) -> None:
    """``explain_func`` when ``a_batch`` is None == the same attributions given, == the engine."""
    model, x, y, _ = data(channels)
    engine, metric = pair("ffid")
    a = explain("saliency", model, x, y)
    ref = engine.evaluate(model, x, y, a)
    call = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "channel_first": True, "batch_size": 4}
    from_func = metric(explain_func=quantus_explain_func("saliency"), **call)
    given = metric(a_batch=a.numpy(), **call)
    np.testing.assert_allclose(from_func, ref.per_sample_auc()[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(given, from_func, rtol=0, atol=1e-12)


def test_channel_last_and_evaluate_batch() -> None:
    """Channel-last inputs (Quantus moves the channel axis) and a direct ``evaluate_batch`` call."""
    model, x, y, a = data(3)
    engine, metric = pair("rfid")
    ref = engine.evaluate(model, x, y, a[:, 0]).per_sample_auc()[0]
    x_last = np.moveaxis(x.numpy(), 1, -1).copy()
    np.testing.assert_allclose(metric(model=model, x_batch=x_last, y_batch=y.numpy(), a_batch=a.numpy(),
                                      channel_first=False), ref, rtol=0, atol=1e-12)
    direct = metric.evaluate_batch(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy())
    np.testing.assert_allclose(direct, ref, rtol=0, atol=1e-12)
    assert metric.result_ is not None and metric.result_.per_sample_plus.shape == (N, len(SPARSITIES))


def test_beside_quantus_pixelflipping() -> None:
    """The way a Quantus user runs metrics: one kwargs dict for a real Quantus metric and ours, a float32 model,
    ``quantus.explain`` as ``explain_func``, and ``quantus.evaluate`` over both."""
    model, x, y, a = data(3, dtype=torch.float32)
    metrics = {
        "PixelFlipping": quantus.PixelFlipping(features_in_step=16, perturb_baseline="black", disable_warnings=True),
        "F-Fidelity": FFidelityMetric(beta=0.3, n_samples=5, sparsities=SPARSITIES, mode="prob", seed=5,
                                      evaluator="model"),
        "Fidelity": FidelityMetric(sparsities=SPARSITIES, mode="prob", seed=5),
    }
    assert all(isinstance(m, quantus.Metric) for m in metrics.values())
    kwargs = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a.numpy(),
              "channel_first": True, "softmax": True, "device": "cpu", "batch_size": 4}
    out = {name: m(**kwargs) for name, m in metrics.items()}
    assert all(len(v) == N for v in out.values())
    assert np.array(out["PixelFlipping"]).shape == (N, 3 * 8 * 8 // 16)  # it flips single channel values
    ref = FFidelity(beta=0.3, n_samples=5, sparsities=SPARSITIES, mode="prob", seed=5, progress=False)
    np.testing.assert_allclose(out["F-Fidelity"], ref.evaluate(model, x, y, a[:, 0]).per_sample_auc()[0],
                               rtol=0, atol=1e-12)

    # re-explaining with Quantus's own explain function (Captum saliency)
    q_kwargs = {**kwargs, "a_batch": None, "explain_func": quantus.explain,
                "explain_func_kwargs": {"method": "Saliency"}}
    pf = metrics["PixelFlipping"](**q_kwargs)
    ours = metrics["F-Fidelity"](**q_kwargs)
    assert len(pf) == len(ours) == N and np.all(np.isfinite(ours))
    a_q = quantus.explain(model=model, inputs=x.numpy(), targets=y.numpy(), method="Saliency", device="cpu")
    a_q = torch.from_numpy(a_q).reshape(N, 8, 8)  # Quantus's saliency: summed over channels
    np.testing.assert_allclose(ours, ref.evaluate(model, x, y, a_q).per_sample_auc()[0], rtol=0, atol=1e-12)

    # quantus.evaluate drives both with the same call
    table = quantus.evaluate(metrics=metrics, xai_methods={"Saliency": a.numpy()}, model=model, x_batch=x.numpy(),
                             y_batch=y.numpy(), call_kwargs={"cpu": {"channel_first": True, "softmax": True,
                                                                     "device": "cpu"}})
    assert set(table["Saliency"]) == set(metrics)
    np.testing.assert_allclose(table["Saliency"]["F-Fidelity"], out["F-Fidelity"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["Saliency"]["PixelFlipping"], out["PixelFlipping"], rtol=0, atol=1e-12)


def test_ffidelity_finetunes_once_from_data() -> None:
    model, x, y, a = data(1, dtype=torch.float32)
    metric = FFidelityMetric(beta=0.2, n_samples=3, sparsities=SPARSITIES, seed=1,
                             finetune_data=(x, y), finetune_kwargs={"epochs": 1, "batch_size": 4})
    call = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a.numpy(), "channel_first": True}
    first = metric(**call)
    tuned = metric.evaluator_
    assert tuned is not None and tuned is not model
    assert metric(**call) == first and metric.evaluator_ is tuned  # reused for the same model
    ref = FFidelity(beta=0.2, n_samples=3, sparsities=SPARSITIES, seed=1, progress=False)
    np.testing.assert_allclose(first, ref.evaluate(tuned, x, y, a[:, 0]).per_sample_auc()[0], rtol=0, atol=1e-12)
    given = FFidelityMetric(beta=0.2, n_samples=3, sparsities=SPARSITIES, seed=1, evaluator=tuned)
    assert given(**call) == first


def test_errors() -> None:
    model, x, y, a = data(3)
    metric = FFidelityMetric(beta=0.3, n_samples=2, sparsities=SPARSITIES, mode="prob", evaluator="model")
    call = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "channel_first": True}
    with pytest.raises(ValueError, match=r"does not fit x_batch"):
        metric(a_batch=np.ones((N, 1, 9, 8)), **call)
    with pytest.raises(ValueError, match=r"does not fit x_batch"):
        metric(a_batch=np.ones((N, 2, 8, 8)), **call)
    with pytest.raises(ValueError, match=r"6 explanations for 7 inputs"):
        metric(a_batch=a.numpy()[:6], **call)
    bad = a.numpy().copy()
    bad[4, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf values \(inputs \[4\]\)"):
        metric(a_batch=bad, **call)

    def nan_explainer(model, inputs, targets, **kwargs):
        return np.full(inputs.shape, np.nan)

    with pytest.raises(ValueError, match="NaN or inf"):
        metric(explain_func=nan_explainer, **call)
    with pytest.raises(ValueError, match="softmax=False"):
        metric(a_batch=a.numpy(), softmax=False, **call)
    with pytest.raises(ValueError, match="device='cuda'"):
        metric(a_batch=a.numpy(), device="cuda", **call)
    with pytest.raises(ValueError, match="exactly one of evaluator"):
        FFidelityMetric()
    with pytest.raises(ValueError, match="exactly one of evaluator"):
        FFidelityMetric(evaluator=model, finetune_data=(x, y))
    with pytest.raises(ValueError, match="score must be one of"):
        FidelityMetric(score="auc")
    with pytest.raises(ValueError, match="sparsity"):
        RFidelityMetric(sparsities=[0.0, 0.5])
