"""Text data (synthetic sentiment, SST-2 TSV, BoolQ JSONL), the token LSTM and the embedding-layer explainers."""

import json

import pytest
import torch

from ffidelity import TokenUnits, explain
from ffidelity.benchmark.tasks import TASKS, get_task
from ffidelity.data.text import (
    POSITIVE,
    boolq,
    load_tokenizer,
    read_boolq_jsonl,
    read_sst2_tsv,
    sst2,
    synthetic_sentiment,
)
from ffidelity.explainers.text import baseline_ids, embedding_layer
from ffidelity.models.sequence import TokenLSTMClassifier


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_synthetic_sentiment_ground_truth_is_the_polarity_words(tok):
    s = synthetic_sentiment(60, 20, max_length=12, seed=3, tokenizer=tok)
    again = synthetic_sentiment(60, 20, max_length=12, seed=3, tokenizer=tok)
    assert torch.equal(s.x_train, again.x_train) and torch.equal(s.gt_test, again.gt_test)
    assert s.x_train.shape == (60, 12) and s.vocab_size == 30522
    positive = {tok.convert_tokens_to_ids(w) for w in POSITIVE}
    for i in range(60):
        words = tok.convert_ids_to_tokens(s.x_train[i].tolist())
        assert words[0] == "[CLS]" and "[SEP]" in words
        planted = s.x_train[i][s.gt_train[i]].tolist()
        assert 1 <= len(planted) <= 3
        assert all((t in positive) == bool(s.y_train[i]) for t in planted)
        others = set(s.x_train[i][~s.gt_train[i]].tolist())
        assert not others & positive
    assert set(s.y_train.tolist()) == {0, 1} and (s.x_train == 0).any()  # balanced labels, padded rows
    u = s.units()
    assert torch.equal(u.valid(s.x_test) & s.gt_test, s.gt_test)  # ground truth only on real tokens


def test_sst2_loader_and_clear_errors(tmp_path, tok):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "train.tsv").write_text('sentence\tlabel\nit \'s a charming , "funny" film \t1\na dull mess\t0\n')
    (folder / "dev.tsv").write_text("sentence\tlabel\nwonderful\t1\n")
    s = sst2(tmp_path, max_length=10, tokenizer=tok)
    assert s.x_train.shape == (2, 10) and s.y_train.tolist() == [1, 0] and s.y_test.tolist() == [1]
    assert tok.decode(s.x_train[1], skip_special_tokens=True) == "a dull mess"
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(ValueError, match=r"bad.tsv: missing column\(s\) \['sentence'\]"):
        read_sst2_tsv(bad)
    bad.write_text("sentence\tlabel\nhello\tpositive\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: line 2: label must be 0 or 1"):
        read_sst2_tsv(bad)
    (folder / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"no SST-2 dev\.tsv file"):
        sst2(tmp_path, tokenizer=tok)


def test_boolq_loader_and_clear_errors(tmp_path, tok):
    rows = [{"question": "is the sky blue", "passage": "the sky is blue on a clear day . " * 20, "answer": True},
            {"question": "do cats bark", "passage": "cats meow .", "answer": False, "title": "cat"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "val.jsonl").write_text(json.dumps({"question": "q", "passage": "p", "label": "true"}) + "\n")
    s = boolq(tmp_path, max_length=24, tokenizer=tok)
    assert s.x_train.shape == (2, 24) and s.y_train.tolist() == [1, 0] and s.y_test.tolist() == [1]
    first = tok.convert_ids_to_tokens(s.x_train[0].tolist())
    assert first[:6] == ["[CLS]", "is", "the", "sky", "blue", "[SEP]"] and first[-1] == "[SEP]"  # passage cut
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"question": "q", "answer": True}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: missing field\(s\) \['passage'\]"):
        read_boolq_jsonl(bad)
    bad.write_text(json.dumps({"question": "q", "passage": "p"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: missing field\(s\) \['answer'\]"):
        read_boolq_jsonl(bad)
    bad.write_text('{"question": "q", \n')
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        read_boolq_jsonl(bad)
    bad.write_text(json.dumps({"question": "q", "passage": "p", "answer": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="must be true/false"):
        read_boolq_jsonl(bad)


def test_token_lstm_rejects_out_of_vocabulary_ids():
    model = TokenLSTMClassifier(vocab_size=50, num_classes=2, embed_dim=4, hidden=4)
    with pytest.raises(ValueError, match=r"out of the vocabulary: ids must be \[0, 50\)"):
        model(torch.tensor([[1, 2, 77]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.rand(1, 3))


def test_token_lstm_skips_padding():
    torch.manual_seed(0)
    model = TokenLSTMClassifier(vocab_size=200, num_classes=2, embed_dim=8, hidden=8, special_token_ids=(1, 2),
                                mask_token_id=3).eval()
    with torch.no_grad():
        padded = model(torch.tensor([[1, 50, 60, 2, 0, 0, 0]]))
        short = model(torch.tensor([[1, 50, 60, 2]]))
    assert torch.allclose(padded, short, atol=1e-6)


@pytest.mark.parametrize("name,shape", [("layer_ig", (3, 6, 8)), ("layer_gradient_x_input", (3, 6, 8)),
                                        ("layer_saliency", (3, 6)), ("random", (3, 6))])
def test_text_explainers_on_token_ids(name, shape):
    torch.manual_seed(0)
    model = TokenLSTMClassifier(vocab_size=200, num_classes=2, embed_dim=8, hidden=8, special_token_ids=(1, 2),
                                mask_token_id=3)
    ids = torch.tensor([[1, 50, 60, 70, 2, 0], [1, 80, 2, 0, 0, 0], [1, 90, 91, 92, 93, 2]])
    kwargs = {"layer_ig": {"n_steps": 8}}.get(name, {})
    attr = explain(name, model, ids, torch.tensor([0, 1, 1]), **kwargs)
    assert attr.shape == shape and torch.isfinite(attr).all()
    units = TokenUnits(mask_token_id=3, special_token_ids=(1, 2), vocab_size=200)
    assert units.scores(attr, ids).shape == (3, 6)
    if name == "layer_ig":  # completeness: attributions sum to f(x) - f(all-[MASK] baseline)
        model.eval()
        with torch.no_grad():
            p = model(ids).gather(1, torch.tensor([[0], [1], [1]])).squeeze(1)
            b = model(baseline_ids(model, ids)).gather(1, torch.tensor([[0], [1], [1]])).squeeze(1)
        assert torch.allclose(attr.sum(dim=(1, 2)), p - b, atol=0.05)
    if name in ("layer_ig", "layer_gradient_x_input"):  # padding rows of the embedding are zero
        assert (attr[ids == 0] == 0).all()


def test_embedding_lookup_and_baselines():
    model = TokenLSTMClassifier(vocab_size=20, num_classes=2, embed_dim=4, hidden=4, special_token_ids=(1, 2),
                                mask_token_id=3)
    assert embedding_layer(model) is model.embedding
    ids = torch.tensor([[1, 9, 8, 2, 0]])
    assert baseline_ids(model, ids).tolist() == [[1, 3, 3, 2, 0]]
    with pytest.raises(TypeError, match="token ids"):
        explain("layer_ig", model, torch.rand(1, 5), 0)


def test_text_tasks_registered():
    for name in ("synthetic-sentiment", "synthetic-sentiment-minilm", "sst2", "sst2-minilm", "boolq",
                 "boolq-minilm"):
        assert name in TASKS
    for name in ("sst2", "boolq"):
        with pytest.raises(ValueError, match="needs --root"):
            get_task(name)
    task = get_task("synthetic-sentiment", quick=True)
    assert isinstance(task.units, TokenUnits) and task.ground_truth.shape == task.x_test.shape
    assert task.make_model()(task.x_test[:2]).shape == (2, 2)
