"""WAR / UAR known answers, including a class absent from the targets."""

import json

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from multimae_der.model.metrics import classification_metrics, metrics_from_confusion, plot_confusion_matrix


def test_known_answer():
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2, 1, 1])
    m = classification_metrics(preds, targets, 3, ["a", "b", "c"])
    assert m["war"] == pytest.approx(6 / 10)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)
    assert m["per_class_recall"] == pytest.approx({"a": 0.75, "b": 0.5, "c": 0.5})
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 2, 2]]
    assert m["support"] == {"a": 4, "b": 2, "c": 4}


def test_absent_class_is_not_in_the_uar_divisor():
    targets = torch.tensor([0, 0, 1, 1, 1])
    preds = torch.tensor([0, 1, 1, 1, 2])  # class 2 never occurs in the targets but is predicted once
    m = classification_metrics(preds, targets, 3)
    assert m["war"] == pytest.approx(0.6)
    assert m["uar"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["per_class_recall"]["2"] is None and m["classes_present"] == 2
    # torchmetrics' macro average counts the absent-but-predicted class as recall 0: the trap we avoid
    assert MulticlassAccuracy(3, average="macro")(preds, targets).item() == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert metrics_from_confusion(torch.tensor(m["confusion_matrix"]))["uar"] == pytest.approx(m["uar"])
    json.dumps(m)  # JSON-able


def test_scores_accepted_and_errors():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    m = classification_metrics(logits, torch.tensor([0, 1, 1]), 2)
    assert m["war"] == pytest.approx(2 / 3) and m["uar"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(torch.tensor([0, 5]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics(torch.tensor([0]), torch.tensor([0, 1]), 2)


def test_confusion_png(tmp_path):
    plot_confusion_matrix([[3, 1], [0, 2]], ["x", "y"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
