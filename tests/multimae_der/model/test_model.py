"""VideoMAE configs, the paper's head, linear probe, weight conversion round trips and safe loading."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from transformers import VideoMAEForVideoClassification

from multimae_der.model.convert import (
    config_from_original,
    hf_to_original,
    load_pretrained,
    load_weights,
    read_state_dict,
    save_original_checkpoint,
)
from multimae_der.model.pretrain import tube_mask
from multimae_der.model.videomae import (
    MODEL_CONFIGS,
    build_classifier,
    build_pretrainer,
    freeze_backbone,
    load_encoder,
    make_config,
    num_tokens,
)

TINY = dict(image_size=32, num_hidden_layers=2, num_frames=4)


def x_of(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g)


def test_named_configs():
    tiny = make_config("tiny", num_labels=7)
    assert (tiny.hidden_size, tiny.num_hidden_layers, tiny.num_attention_heads, tiny.intermediate_size) == (
        192, 2, 3, 768)
    assert (tiny.patch_size, tiny.tubelet_size, tiny.num_frames, tiny.image_size) == (16, 2, 16, 64)
    assert num_tokens(tiny) == 128
    large = make_config("large", num_labels=7)
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.image_size) == (
        1024, 24, 16, 224)
    assert num_tokens(large) == 1568
    assert make_config("small").hidden_size == 384 and make_config("base").hidden_size == 768
    assert make_config("tiny", image_size=112).image_size == 112
    assert set(MODEL_CONFIGS) == {"tiny", "small", "base", "large"}
    with pytest.raises(ValueError, match="multiple of patch_size"):
        make_config("tiny", image_size=40)
    with pytest.raises(ValueError, match="unknown model config"):
        make_config("huge")


def test_head_is_meanpool_layernorm_dropout_linear():
    cfg = make_config("tiny", class_names=["a", "b", "c"], head_dropout=0.3, **TINY)
    model = build_classifier(cfg).eval()
    assert model.fc_norm.eps == 1e-6 and model.classifier.dropout.p == 0.3
    assert model.videomae.embeddings.position_embeddings.abs().sum() > 0  # fixed sin-cos table kept
    x = x_of(cfg)
    with torch.no_grad():
        tokens = model.videomae(x).last_hidden_state
        expected = model.classifier(model.fc_norm(tokens.mean(1)))
        assert torch.allclose(model(pixel_values=x).logits, expected, atol=1e-6)
    model.train()  # dropout is active in training mode only
    with torch.no_grad():
        assert not torch.allclose(model(pixel_values=x).logits, expected, atol=1e-4)
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_linear_probe_trains_only_the_head():
    cfg = make_config("tiny", num_labels=7, **TINY)
    model = build_classifier(cfg)
    assert freeze_backbone(model) == 2 * 192 + 192 * 7 + 7  # the official code's 9,223 for width 1024
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}


def test_save_pretrained_round_trip(tmp_path):
    cfg = make_config("tiny", num_labels=3, **TINY)
    model = build_classifier(cfg).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    x = x_of(cfg)
    loaded, report = load_pretrained(tmp_path, num_labels=3)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-6)
    assert not report.missing
    plain = VideoMAEForVideoClassification.from_pretrained(tmp_path).eval()  # plain HF class reads it too
    assert set(plain.state_dict()) == set(model.state_dict())


def test_original_layout_round_trip(tmp_path):
    cfg = make_config("tiny", num_labels=5, **TINY)
    model = build_classifier(cfg).eval()
    sd = hf_to_original(model)
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * 192, 192)
    assert {"patch_embed.proj.weight", "blocks.1.attn.q_bias", "blocks.1.attn.v_bias", "blocks.0.norm1.weight",
            "blocks.0.mlp.fc1.weight", "blocks.0.attn.proj.weight", "fc_norm.weight", "head.weight"} <= set(sd)
    assert not any(k.startswith("videomae") for k in sd)
    path = tmp_path / "videomae_original.pth"
    save_original_checkpoint(model, path)
    # also the "module" wrapper with a DDP prefix
    torch.save({"module": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "ddp.pth")
    x = x_of(cfg)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
        for p in (path, tmp_path / "ddp.pth"):
            loaded, report = load_pretrained(p, image_size=32, num_frames=4)  # not stored in the weights
            assert loaded.config.num_labels == 5 and loaded.config.num_hidden_layers == 2
            assert torch.allclose(loaded.eval()(pixel_values=x).logits, ref, atol=1e-6)
            assert not report.missing and not report.unused
    # the q/k/v split is exact
    assert torch.equal(read_state_dict(path)["blocks.1.attn.qkv.weight"][192:384],
                       model.videomae.encoder.layer[1].attention.attention.key.weight)


def test_pretraining_model_original_round_trip(tmp_path):
    cfg = make_config("tiny", num_labels=2, **TINY)
    pre = build_pretrainer(cfg).eval()
    sd = hf_to_original(pre)
    assert "encoder.blocks.0.attn.qkv.weight" in sd and "decoder.blocks.0.attn.qkv.weight" in sd
    assert {"encoder_to_decoder.weight", "mask_token", "decoder.norm.weight", "decoder.head.weight"} <= set(sd)
    other = build_pretrainer(cfg).eval()
    report = load_weights(other, sd)
    assert not report.missing and not report.unused
    x, mask = x_of(cfg), tube_mask(2, cfg, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(other(pixel_values=x, bool_masked_pos=mask).logits,
                              pre(pixel_values=x, bool_masked_pos=mask).logits, atol=1e-6)
    assert config_from_original(sd).decoder_hidden_size == cfg.decoder_hidden_size


def test_classifier_from_pretraining_checkpoint_keeps_encoder(tmp_path):
    """A pre-training checkpoint initialises the encoder; head and fc_norm stay fresh; decoder is unused."""
    cfg = make_config("tiny", num_labels=4, **TINY)
    pre = build_pretrainer(cfg)
    path = tmp_path / "pretrain.pth"
    save_original_checkpoint(pre, path)
    clf, report = load_pretrained(path, num_labels=4, image_size=32, num_frames=4)
    assert set(report.missing) == {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
    assert any(k.startswith("decoder.") for k in report.unused)
    for k, v in pre.videomae.state_dict().items():
        assert torch.equal(clf.videomae.state_dict()[k], v)


def test_pretrain_to_classifier_hand_off():
    cfg = make_config("tiny", num_labels=3, **TINY)
    pre, clf = build_pretrainer(cfg), build_classifier(cfg)
    clf.videomae.load_state_dict(pre.videomae.state_dict())  # the documented one-liner matches all keys
    other = build_classifier(cfg)
    load_encoder(other, pre)
    assert all(torch.equal(a, b) for a, b in zip(other.videomae.state_dict().values(),
                                                 pre.videomae.state_dict().values(), strict=True))
    wide = build_pretrainer(make_config("small", num_labels=3, image_size=32, num_hidden_layers=1, num_frames=4))
    with pytest.raises(ValueError, match="architecture differs"):
        load_encoder(other, wide)


def test_mismatched_checkpoint_gives_clear_error(tmp_path):
    small = build_classifier(make_config("tiny", num_labels=3, image_size=32, num_hidden_layers=1, num_frames=4))
    path = tmp_path / "one_layer.pth"
    save_original_checkpoint(small, path)
    target = build_classifier(make_config("tiny", num_labels=3, **TINY))
    with pytest.raises(ValueError, match="lacks the encoder weight"):
        load_weights(target, read_state_dict(path), source=str(path))
    torch.save({"model": {"pos_embed": torch.randn(1, 8, 192), **hf_to_original(target)}}, tmp_path / "pos.pth")
    with pytest.raises(ValueError, match="learned position table"):
        load_weights(target, read_state_dict(tmp_path / "pos.pth"), source="pos.pth")


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_planted_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned.txt"
    bad = tmp_path / "evil.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}, "payload": _CreatesFile(marker)}, bad)
    assert not marker.exists()
    with pytest.raises(ValueError, match="objects other than tensors") as info:
        read_state_dict(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match="objects other than tensors"):
        load_pretrained(bad)
    assert not marker.exists()
    # sanity: a plain unpickler would have created it (so the test can fail)
    with open(tmp_path / "raw.pkl", "wb") as fh:
        pickle.dump(_CreatesFile(tmp_path / "control.txt"), fh)
    with open(tmp_path / "raw.pkl", "rb") as fh:
        pickle.load(fh).close()
    assert (tmp_path / "control.txt").exists()


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        read_state_dict(tmp_path / "junk.pth")
    save_file({"head.weight": torch.ones(2, 2)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_state_dict(tmp_path / "w.safetensors")["head.weight"], torch.ones(2, 2))


def test_tube_mask_equal_counts_and_tubes():
    cfg = make_config("tiny", num_labels=2, image_size=64, num_frames=16)
    mask = tube_mask(5, cfg, 0.9, torch.Generator().manual_seed(0))
    assert mask.shape == (5, 128) and mask.dtype == torch.bool
    assert (mask.sum(1) == 8 * int(0.9 * 16)).all()  # same number of hidden tokens in every clip
    per_slice = mask.view(5, 8, 16)
    assert (per_slice == per_slice[:, :1]).all()  # the same patches hidden in every time slice (tubes)
    assert not torch.equal(per_slice[0, 0], per_slice[1, 0])
    assert torch.equal(mask, tube_mask(5, cfg, 0.9, torch.Generator().manual_seed(0)))
    pre = build_pretrainer(cfg)
    out = pre(pixel_values=x_of(cfg, 5), bool_masked_pos=mask)
    assert out.loss.isfinite() and out.logits.shape == (5, 8 * 14, 2 * 16 * 16 * 3)
