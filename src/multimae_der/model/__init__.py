"""The emotion model: VideoMAE configs and builders, checkpoint conversion, audio-visual fusion, batching,
training, pre-training, evaluation, prediction, cross-validation, the run folder and the SynthAV fusion study.

The package re-exports the names of the former ``multimae_der.model`` module (now
:mod:`multimae_der.model.videomae`).
"""

from multimae_der.model.videomae import (
    MODEL_CONFIGS,
    DropoutLinear,
    MultiMAEClassifier,
    MultiMAEPreTraining,
    build_classifier,
    build_pretrainer,
    encoder_state_dict,
    freeze_backbone,
    load_encoder,
    make_config,
    num_tokens,
    validate_config,
)

__all__ = [
    "MODEL_CONFIGS",
    "DropoutLinear",
    "MultiMAEClassifier",
    "MultiMAEPreTraining",
    "build_classifier",
    "build_pretrainer",
    "encoder_state_dict",
    "freeze_backbone",
    "load_encoder",
    "make_config",
    "num_tokens",
    "validate_config",
]
