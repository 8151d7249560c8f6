"""The VideoMAE encoder and classification head of MultiMAE-DER, built from named configs (no downloads).

The classifier is Hugging Face's ``VideoMAEForVideoClassification`` with the paper's head (mean-pool ->
LayerNorm(eps 1e-6) -> Dropout -> Linear) and the fixed sinusoidal position table kept; the pre-training model
is ``VideoMAEForPreTraining``. Both are thin subclasses that only set the original VideoMAE's LayerNorm eps and
add the (parameter-free) head dropout, so their state dicts and ``save_pretrained`` folders are plain HF ones.

Weights come from a local ``save_pretrained`` folder or from an original MCG-NJU VideoMAE checkpoint
(``.pth``), see :mod:`multimae_der.model.convert`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEForVideoClassification

#: Named architectures. Decoder sizes follow VideoMAE's pre-training models (4 decoder blocks).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    # tiny: 2 encoder layers. On SynthAV (24 actors, held-out actors) 2 layers generalised as well as 4 at half
    # the cost per step (measured: 0.77 vs 0.77 held-out WAR on 8 training actors; 0.64 for 4 layers at batch 8)
    "tiny": dict(hidden_size=192, num_hidden_layers=2, num_attention_heads=3, intermediate_size=768,
                 image_size=64, decoder_hidden_size=96, decoder_num_hidden_layers=2,
                 decoder_num_attention_heads=3, decoder_intermediate_size=384),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                  image_size=224, decoder_hidden_size=192, decoder_num_hidden_layers=4,
                  decoder_num_attention_heads=3, decoder_intermediate_size=768),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 image_size=224, decoder_hidden_size=384, decoder_num_hidden_layers=4,
                 decoder_num_attention_heads=6, decoder_intermediate_size=1536),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  image_size=224, decoder_hidden_size=512, decoder_num_hidden_layers=4,
                  decoder_num_attention_heads=8, decoder_intermediate_size=2048),
}

_COMMON: dict[str, Any] = dict(patch_size=16, tubelet_size=2, num_frames=16, num_channels=3, qv_bias=True,
                               use_mean_pooling=True, layer_norm_eps=1e-6, norm_pix_loss=True,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, head_dropout=0.0)


def make_config(name: str = "tiny", *, num_labels: int = 2, image_size: int | None = None,
                class_names: list[str] | None = None, **overrides: Any) -> VideoMAEConfig:
    """A ``VideoMAEConfig`` for a named architecture (``tiny``, ``small``, ``base``, ``large``).

    Args:
        name: architecture name, see :data:`MODEL_CONFIGS`.
        num_labels: number of classes (ignored when ``class_names`` is given).
        image_size: input height = width; must be a multiple of the patch size (16).
        class_names: class names, stored as ``id2label``.
        overrides: any other ``VideoMAEConfig`` field, e.g. ``num_hidden_layers=2`` or ``head_dropout=0.1``.
    """
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    kw: dict[str, Any] = {**_COMMON, **MODEL_CONFIGS[name], **overrides}
    if image_size is not None:
        kw["image_size"] = image_size
    if class_names is not None:
        num_labels = len(class_names)
        kw["id2label"] = dict(enumerate(class_names))
        kw["label2id"] = {c: i for i, c in enumerate(class_names)}
    kw["num_labels"] = num_labels
    validate_config(VideoMAEConfig(**kw))
    return VideoMAEConfig(**kw)


def validate_config(config: VideoMAEConfig) -> None:
    """Clear errors for geometry VideoMAE would only reject deep inside a forward pass."""
    if config.image_size % config.patch_size:
        raise ValueError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
    if config.num_frames % config.tubelet_size:
        raise ValueError(f"num_frames {config.num_frames} is not a multiple of tubelet_size {config.tubelet_size}")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                         f"{config.num_attention_heads}")


def num_tokens(config: VideoMAEConfig) -> int:
    """``(T / tubelet) * (S / patch)^2``: the encoder's sequence length."""
    return (config.num_frames // config.tubelet_size) * (config.image_size // config.patch_size) ** 2


class DropoutLinear(nn.Linear):
    """``Linear`` preceded by dropout; its state dict is a plain ``Linear``'s (``weight``, ``bias``)."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def _set_layernorm_eps(model: nn.Module, eps: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


class MultiMAEClassifier(VideoMAEForVideoClassification):
    """VideoMAE classifier with the paper's head: mean-pool -> LayerNorm(eps) -> Dropout -> Linear.

    Differences from the HF base class are parameter-free (LayerNorm eps = ``config.layer_norm_eps`` everywhere,
    like the original VideoMAE's 1e-6; dropout ``config.head_dropout`` before the classifier), so checkpoints
    are interchangeable with ``VideoMAEForVideoClassification``.
    """

    def __init__(self, config: VideoMAEConfig) -> None:
        if not config.use_mean_pooling:
            raise ValueError("MultiMAE-DER's head mean-pools the tokens: use_mean_pooling must be True")
        super().__init__(config)
        head = DropoutLinear(config.hidden_size, config.num_labels, float(getattr(config, "head_dropout", 0.0)))
        with torch.no_grad():
            head.weight.copy_(self.classifier.weight)
            head.bias.copy_(self.classifier.bias)
        self.classifier = head
        _set_layernorm_eps(self, config.layer_norm_eps)


class MultiMAEPreTraining(VideoMAEForPreTraining):
    """VideoMAE masked-autoencoder with the original LayerNorm eps; its ``videomae`` encoder is the classifier's."""

    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__(config)
        _set_layernorm_eps(self, config.layer_norm_eps)


def build_classifier(config: VideoMAEConfig) -> MultiMAEClassifier:
    """A randomly initialised classifier (offline; seeded by the global torch RNG)."""
    validate_config(config)
    return MultiMAEClassifier(config)


def build_pretrainer(config: VideoMAEConfig) -> MultiMAEPreTraining:
    """A randomly initialised masked-autoencoder sharing the classifier's encoder layout."""
    validate_config(config)
    return MultiMAEPreTraining(config)


def freeze_backbone(model: MultiMAEClassifier, frozen: bool = True) -> int:
    """Linear probe: freezes the encoder, leaving ``fc_norm`` and ``classifier`` trainable (as the official code).

    Returns:
        the number of trainable parameters left (``2 H + H C + C`` for width H, C classes).
    """
    for p in model.videomae.parameters():
        p.requires_grad_(not frozen)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encoder_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's weights (``videomae.*`` keys) of a classifier or pre-training model."""
    return {f"videomae.{k}": v for k, v in model.videomae.state_dict().items()}


def load_encoder(model: MultiMAEClassifier | MultiMAEPreTraining, source: nn.Module) -> None:
    """Copies ``source.videomae`` into ``model.videomae`` (pre-training -> classification hand-off).

    Raises:
        ValueError: when the encoders' architectures differ (a key or shape mismatch).
    """
    target, src = model.videomae.state_dict(), source.videomae.state_dict()
    if target.keys() != src.keys() or any(target[k].shape != src[k].shape for k in target):
        raise ValueError("the source encoder's architecture differs from the model's "
                         f"({sum(v.numel() for v in src.values())} vs {sum(v.numel() for v in target.values())} "
                         "parameters)")
    model.videomae.load_state_dict(src)
