"""MultiMAE-DER: audio-visual dynamic emotion recognition with a masked-autoencoder video transformer.

Subpackages, from the bottom layer up: :mod:`multimae_der.data` (datasets, preparation, SynthAV),
:mod:`multimae_der.model` (VideoMAE, fusion, training, evaluation), :mod:`multimae_der.explain` (attributions,
provenance, plots, faithfulness), :mod:`multimae_der.app` (web app, demo) and the command line
(:mod:`multimae_der.cli`). Each imports only from the layers below it.
"""

from ffidelity.utils.moved import install as _install
from multimae_der._version import __version__ as __version__

#: Module paths of the flat layout (before the subpackages) -> their new paths. They still import, with a
#: ``DeprecationWarning``. ``multimae_der.model`` and ``multimae_der.explain`` are now packages that re-export
#: the names the old modules had.
MOVED: dict[str, str] = {
    "multimae_der.naming": "multimae_der.data.naming",
    "multimae_der.labels": "multimae_der.data.labels",
    "multimae_der.sources": "multimae_der.data.sources",
    "multimae_der.folds": "multimae_der.data.folds",
    "multimae_der.heldout": "multimae_der.data.heldout",
    "multimae_der.media": "multimae_der.data.media",
    "multimae_der.audio_images": "multimae_der.data.audio_images",
    "multimae_der.prepare": "multimae_der.data.prepare",
    "multimae_der.datasets": "multimae_der.data.datasets",
    "multimae_der.synthav": "multimae_der.data.synthav",
    "multimae_der.convert": "multimae_der.model.convert",
    "multimae_der.fusion": "multimae_der.model.fusion",
    "multimae_der.collate": "multimae_der.model.collate",
    "multimae_der.train": "multimae_der.model.train",
    "multimae_der.pretrain": "multimae_der.model.pretrain",
    "multimae_der.evaluate": "multimae_der.model.evaluate",
    "multimae_der.predict": "multimae_der.model.predict",
    "multimae_der.cv": "multimae_der.model.cv",
    "multimae_der.metrics": "multimae_der.model.metrics",
    "multimae_der.run": "multimae_der.model.run",
    "multimae_der.experiments": "multimae_der.model.experiments",
    "multimae_der.explain_plots": "multimae_der.explain.plots",
    "multimae_der.provenance": "multimae_der.explain.provenance",
    "multimae_der.faithfulness": "multimae_der.explain.faithfulness",
    "multimae_der.serve": "multimae_der.app.serve",
    "multimae_der.demo": "multimae_der.app.demo",
}

_install("multimae_der", MOVED)
