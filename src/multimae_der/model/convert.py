"""Weights between the original MCG-NJU VideoMAE key layout and Hugging Face's, and safe checkpoint loading.

Original layout (fine-tuning models; pre-training ones put the encoder under ``encoder.`` and add
``encoder_to_decoder``, ``mask_token`` and ``decoder.blocks.N`` / ``decoder.norm`` / ``decoder.head``)::

    patch_embed.proj.{weight,bias}          -> videomae.embeddings.patch_embeddings.projection.*
    blocks.N.norm1 / norm2                  -> videomae.encoder.layer.N.layernorm_before / layernorm_after
    blocks.N.attn.qkv.weight (3H x H)       -> ...attention.attention.{query,key,value}.weight (split in 3)
    blocks.N.attn.q_bias / v_bias           -> ...attention.attention.query.bias / value.bias (key: no bias)
    blocks.N.attn.proj                      -> ...attention.output.dense
    blocks.N.mlp.fc1 / fc2                  -> ...intermediate.dense / output.dense
    norm (no mean pooling) / fc_norm        -> videomae.layernorm / fc_norm
    head                                    -> classifier

Checkpoints are read with ``torch.load(weights_only=True)``: nothing in the file can run code; a file holding
other objects than tensors and plain containers is rejected with a clear error.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import VideoMAEConfig

from multimae_der.model.videomae import (
    MODEL_CONFIGS,
    MultiMAEClassifier,
    MultiMAEPreTraining,
    build_classifier,
    make_config,
)

_BLOCK_MAP = {  # original block sub-key -> HF layer sub-key
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (``.safetensors``, or a torch file read with ``weights_only=True``).

    Unwraps a ``"model"``, ``"module"`` or ``"state_dict"`` entry and strips a DDP ``module.`` key prefix.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable checkpoint, holds pickled objects other than tensors, or holds
            no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} holds objects other than tensors; refusing to unpickle it (only weight "
                         f"checkpoints are loaded, with weights_only=True): {first}") from None
    except Exception as exc:
        raise ValueError(f"{path} is not a readable torch checkpoint: {exc}") from None
    for key in ("model", "module", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(f"{path} holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for MCG-NJU key names (``patch_embed.proj.weight`` / ``encoder.patch_embed.proj.weight``)."""
    return any(k.endswith("patch_embed.proj.weight") for k in sd)


def _block_to_hf(sub: str, val: torch.Tensor, prefix: str, n: int, width: int, out: dict[str, torch.Tensor]
                 ) -> bool:
    base = f"{prefix}{n}."
    if sub == "attn.qkv.weight":
        q, k, v = val.split(width, dim=0)
        out[base + "attention.attention.query.weight"] = q
        out[base + "attention.attention.key.weight"] = k
        out[base + "attention.attention.value.weight"] = v
        return True
    if sub == "attn.qkv.bias":  # timm-style full qkv bias; VideoMAE has none for keys
        q, k, v = val.split(width, dim=0)
        if k.abs().max() > 0:
            raise ValueError("the checkpoint has a non-zero key bias, which VideoMAE's attention does not have")
        out[base + "attention.attention.query.bias"] = q
        out[base + "attention.attention.value.bias"] = v
        return True
    if sub in ("attn.q_bias", "attn.v_bias"):
        out[base + ("attention.attention.query.bias" if sub == "attn.q_bias" else
                    "attention.attention.value.bias")] = val
        return True
    for o, h in _BLOCK_MAP.items():
        if sub.startswith(o + "."):
            out[base + h + sub[len(o):]] = val
            return True
    return False


def original_to_hf(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Renames an original-layout state dict to HF keys.

    Returns:
        the HF state dict and the original keys that have no HF counterpart (e.g. a learnable ``pos_embed``).
    """
    width = next(v.shape[0] for k, v in sd.items() if k.endswith("patch_embed.proj.weight"))
    dec_width = sd["decoder.norm.weight"].shape[0] if "decoder.norm.weight" in sd else None
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    block = re.compile(r"^(encoder\.)?blocks\.(\d+)\.(.+)$")
    dec_block = re.compile(r"^decoder\.blocks\.(\d+)\.(.+)$")
    for key, val in sd.items():
        if m := dec_block.match(key):
            ok = _block_to_hf(m.group(2), val, "decoder.decoder_layers.", int(m.group(1)), dec_width, out)
        elif m := block.match(key):
            ok = _block_to_hf(m.group(3), val, "videomae.encoder.layer.", int(m.group(2)), width, out)
        else:
            k = key[len("encoder."):] if key.startswith("encoder.") else key
            simple = {"patch_embed.proj.weight": "videomae.embeddings.patch_embeddings.projection.weight",
                      "patch_embed.proj.bias": "videomae.embeddings.patch_embeddings.projection.bias",
                      "norm.weight": "videomae.layernorm.weight", "norm.bias": "videomae.layernorm.bias",
                      "fc_norm.weight": "fc_norm.weight", "fc_norm.bias": "fc_norm.bias",
                      "head.weight": "classifier.weight", "head.bias": "classifier.bias",
                      "encoder_to_decoder.weight": "encoder_to_decoder.weight", "mask_token": "mask_token",
                      "decoder.norm.weight": "decoder.norm.weight", "decoder.norm.bias": "decoder.norm.bias",
                      "decoder.head.weight": "decoder.head.weight", "decoder.head.bias": "decoder.head.bias"}
            ok = key in simple or k in simple
            if ok:
                out[simple.get(key, simple.get(k))] = val
        if not ok:
            unknown.append(key)
    return out, unknown


def hf_saved_to_module_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``save_pretrained`` files name the q/v biases ``attention.attention.q_bias``/``v_bias`` (the legacy
    names transformers 5 still writes); the modules call them ``query.bias``/``value.bias``."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"attention\.attention\.q_bias$", "attention.attention.query.bias", k)
        k = re.sub(r"attention\.attention\.v_bias$", "attention.attention.value.bias", k)
        out[k] = v
    return out


def hf_to_original(model: nn.Module) -> dict[str, torch.Tensor]:
    """The original MCG-NJU state dict of a classifier or pre-training model (inverse of :func:`original_to_hf`)."""
    sd = model.state_dict()
    pre = isinstance(model, MultiMAEPreTraining) or "encoder_to_decoder.weight" in sd
    enc = "encoder." if pre else ""
    out: dict[str, torch.Tensor] = {}
    inverse = {h: o for o, h in _BLOCK_MAP.items()}
    layer = re.compile(r"^(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$")
    qkv: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    for key, val in sd.items():
        if m := layer.match(key):
            prefix = f"{enc}blocks" if m.group(1).startswith("videomae") else "decoder.blocks"
            n, sub = int(m.group(2)), m.group(3)
            if sub.startswith("attention.attention."):
                qkv.setdefault((prefix, n), {})[sub[len("attention.attention."):]] = val
                continue
            for h, o in inverse.items():
                if sub.startswith(h + "."):
                    out[f"{prefix}.{n}.{o}{sub[len(h):]}"] = val
                    break
            else:
                raise ValueError(f"no original name for {key}")
        elif key.startswith("videomae.embeddings.patch_embeddings.projection."):
            out[enc + "patch_embed.proj." + key.rsplit(".", 1)[1]] = val
        elif key.startswith("videomae.layernorm."):
            out[enc + "norm." + key.rsplit(".", 1)[1]] = val
        elif key.startswith("classifier."):
            out["head." + key.rsplit(".", 1)[1]] = val
        else:  # fc_norm, encoder_to_decoder, mask_token, decoder.norm, decoder.head keep their names
            out[key] = val
    for (prefix, n), parts in qkv.items():
        out[f"{prefix}.{n}.attn.qkv.weight"] = torch.cat([parts["query.weight"], parts["key.weight"],
                                                          parts["value.weight"]])
        if "query.bias" in parts:
            out[f"{prefix}.{n}.attn.q_bias"] = parts["query.bias"]
            out[f"{prefix}.{n}.attn.v_bias"] = parts["value.bias"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def save_original_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Writes ``{"model": original-layout state dict}`` with ``torch.save`` (atomically)."""
    from ffidelity.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": hf_to_original(model)}, str(tmp))


def config_from_original(sd: Mapping[str, torch.Tensor], *, num_attention_heads: int | None = None,
                         **overrides: Any) -> VideoMAEConfig:
    """Infers a ``VideoMAEConfig`` from original-layout weights (widths, depth, patch and tubelet sizes).

    The number of heads, the image size and the number of frames are not visible in the weights (the position
    table is the fixed sinusoidal one): heads default to VideoMAE's for the width (192: 3, 384: 6, 768: 12,
    1024: 16), image size and frames to the named config of that width; pass them to override.
    """
    hf, _ = original_to_hf(sd)
    proj = hf["videomae.embeddings.patch_embeddings.projection.weight"]
    width, _, tubelet, patch, _ = proj.shape
    depth = 1 + max(int(k.split(".")[3]) for k in hf if k.startswith("videomae.encoder.layer."))
    heads = num_attention_heads or _HEADS_BY_WIDTH.get(width)
    if heads is None:
        raise ValueError(f"cannot infer the number of attention heads for width {width}; pass it explicitly")
    kw: dict[str, Any] = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                              intermediate_size=hf["videomae.encoder.layer.0.intermediate.dense.weight"].shape[0],
                              patch_size=patch, tubelet_size=tubelet,
                              qv_bias="videomae.encoder.layer.0.attention.attention.query.bias" in hf)
    if "decoder.norm.weight" in hf:
        dw = hf["decoder.norm.weight"].shape[0]
        kw.update(decoder_hidden_size=dw,
                  decoder_num_hidden_layers=1 + max(int(k.split(".")[2]) for k in hf
                                                    if k.startswith("decoder.decoder_layers.")),
                  decoder_num_attention_heads=_HEADS_BY_WIDTH.get(dw, max(1, dw // 64)),
                  decoder_intermediate_size=hf["decoder.decoder_layers.0.intermediate.dense.weight"].shape[0])
    if "classifier.weight" in hf and "num_labels" not in overrides and "class_names" not in overrides:
        kw["num_labels"] = hf["classifier.weight"].shape[0]
    base = next((n for n, c in MODEL_CONFIGS.items() if c["hidden_size"] == width), "base")
    return make_config(base, **{**kw, **overrides})


@dataclass
class LoadReport:
    """What :func:`load_weights` did: keys loaded, target keys left at their initial values, source keys unused."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def load_weights(model: nn.Module, sd: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
                 strict_head: bool = False) -> LoadReport:
    """Loads HF- or original-layout weights into a classifier or pre-training model.

    Every encoder weight must be present with the right shape, and the file may hold no encoder layer the model
    lacks (else ``ValueError``, naming ``source``). The
    classification head and ``fc_norm`` load only when their shapes match (a Kinetics-400 head does not fit 7
    emotions) unless ``strict_head``; decoder weights are ignored by a classifier, and a classifier's head by a
    pre-training model. A stored position table must equal the fixed sinusoidal one.
    """
    if is_original_layout(sd):
        original = sd
        sd, unknown = original_to_hf(original)
        pos = [k for k in unknown if k.endswith("pos_embed")]
        _check_pos_embed(original, pos, source)
        unknown = [k for k in unknown if k not in pos]
        if unknown:
            raise ValueError(f"{source}: unexpected original-layout keys {unknown[:5]}")
    else:
        sd = hf_saved_to_module_keys(sd)
    target = model.state_dict()
    report = LoadReport()
    to_load: dict[str, torch.Tensor] = {}
    for key, tval in target.items():
        val = sd.get(key)
        encoder = key.startswith("videomae.")
        if val is None:
            if encoder or strict_head:
                raise ValueError(f"{source} lacks the encoder weight {key}: its architecture differs from the "
                                 "model's")
            report.missing.append(key)
        elif val.shape != tval.shape:
            if encoder or strict_head:
                raise ValueError(f"{source}: {key} has shape {tuple(val.shape)}, the model expects "
                                 f"{tuple(tval.shape)}")
            report.missing.append(key)
        else:
            to_load[key] = val
            report.loaded.append(key)
    report.unused = sorted(set(sd) - set(to_load))
    extra = [k for k in report.unused if k.startswith("videomae.encoder.layer.")]
    if extra:  # a deeper encoder: silently keeping its first layers would be another model
        raise ValueError(f"{source} holds encoder weights the model lacks ({extra[0]}, {len(extra)} in all): its "
                         "architecture differs from the model's")
    model.load_state_dict(to_load, strict=False)
    return report


def _check_pos_embed(sd: Mapping[str, torch.Tensor], keys: list[str], source: str) -> None:
    """A stored position table is accepted only when it is the fixed sinusoidal one VideoMAE rebuilds."""
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    for k in keys:
        stored = sd[k].reshape(-1, sd[k].shape[-1]).float()
        table = get_sinusoid_encoding_table(stored.shape[0], stored.shape[1])[0]
        if not torch.allclose(stored, table, atol=1e-4):
            raise ValueError(f"{source}: {k} is a learned position table; only VideoMAE's fixed sinusoidal "
                             "table is supported")


def load_pretrained(source: str | Path, *, config: VideoMAEConfig | None = None, num_attention_heads: int | None
                    = None, **overrides: Any) -> tuple[MultiMAEClassifier, LoadReport]:
    """A classifier initialised from local pretrained weights (never a download).

    Args:
        source: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``; a pre-training or a
            classification model) or an original VideoMAE checkpoint file (``.pth``/``.pt``/``.bin``/
            ``.safetensors``; ``{"model": ...}`` / ``{"module": ...}`` or a bare state dict).
        config: the classifier's config; by default the source's architecture with ``overrides``
            (e.g. ``class_names=[...]``, ``image_size=112``: the fixed position table is rebuilt for any size).
        num_attention_heads: for original checkpoints whose width does not tell it.

    Returns:
        the classifier and a :class:`LoadReport`.
    """
    source = Path(source)
    if source.is_dir():
        cfg_file = source / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{source} has no config.json (expected a save_pretrained folder)")
        weights = next((source / n for n in ("model.safetensors", "pytorch_model.bin") if (source / n).is_file()),
                       None)
        if weights is None:
            raise FileNotFoundError(f"{source} has no model.safetensors or pytorch_model.bin")
        sd = read_state_dict(weights)
        if config is None:
            base = VideoMAEConfig.from_pretrained(str(source)).to_dict()
            keep = {k: base[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                         "intermediate_size", "patch_size", "tubelet_size", "num_frames",
                                         "image_size", "qv_bias", "decoder_hidden_size",
                                         "decoder_num_hidden_layers", "decoder_num_attention_heads",
                                         "decoder_intermediate_size") if k in base}
            config = make_config("base", **{**keep, **overrides})
    else:
        sd = read_state_dict(source)
        if config is None:
            config = config_from_original(sd, num_attention_heads=num_attention_heads, **overrides)
    model = build_classifier(config)
    report = load_weights(model, sd, source=str(source))
    return model, report
