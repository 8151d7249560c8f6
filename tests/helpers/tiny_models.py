"""Tiny models whose outputs are known by hand, shared by the metric tests."""

import torch
from torch import nn


class LinearTwoClass(nn.Module):
    """logit_0 = <w, x>, logit_1 = 0 on (B, 1, H, W) inputs: p_0 = sigmoid(<w, x>)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) * self.w.flatten()).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def tiny_videomae(seed: int = 0) -> nn.Module:
    """An emotion VideoMAE on (B, 4, 3, 32, 32) clips: 8 tokens (tubelet 2, patch 16), one layer, 3 classes."""
    from multimae_der.explain.attributions import EmotionLogits
    from multimae_der.model.videomae import build_classifier, make_config

    torch.manual_seed(seed)
    cfg = make_config("tiny", num_labels=3, image_size=32, num_frames=4, num_hidden_layers=1, hidden_size=32,
                      num_attention_heads=2, intermediate_size=64)
    return EmotionLogits(build_classifier(cfg)).eval()


def tiny_vit(seed: int = 0) -> nn.Module:
    """A Hugging Face ViT on (B, 3, 16, 16) images: 16 patches of 4 x 4, two layers, 3 classes."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, num_labels=3)
    return ViTForImageClassification(cfg).eval()
