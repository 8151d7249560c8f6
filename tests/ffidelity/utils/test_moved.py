"""Module paths of the flat layout before subpackages still import, as the same module, with a warning."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import pytest

import ffidelity

OLD_PATHS = sorted(ffidelity._MOVED_MODULES)


@pytest.mark.parametrize("old", OLD_PATHS)
def test_an_old_module_path_imports_the_moved_module_with_a_warning(old) -> None:
    new = importlib.import_module(ffidelity._MOVED_MODULES[old])
    sys.modules.pop(old, None)  # a fresh import of the old path, whatever ran before
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new.__name__}"):
        module = importlib.import_module(old)
    assert module is new
    assert new.__spec__.name == new.__name__  # the moved module keeps its own identity


def test_old_imports_give_the_same_objects() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ffidelity.engine import Fidelity, logits_of
        from ffidelity.finetune import random_keep_mask
        from ffidelity.training import fit_classifier
        from ffidelity.video_units import VideoUnits
    from ffidelity.metrics.engine import Fidelity as F
    from ffidelity.models.training import fit_classifier as fit
    from ffidelity.units.random import random_keep_mask as rkm
    from ffidelity.units.video import VideoUnits as V
    from ffidelity.utils.modelio import logits_of as lo

    assert (Fidelity, logits_of, random_keep_mask, fit_classifier, VideoUnits) == (F, lo, rkm, fit, V)


def test_packages_that_kept_an_old_module_name_still_offer_its_names() -> None:
    """``ffidelity.units``, ``explainers``, ``data``, ``models`` and ``benchmark`` were modules; as packages they
    re-export every public name the module had."""
    from ffidelity import benchmark, data, explainers, models, units

    old = {
        units: ["Reference", "Units", "GridUnits", "fill_removed", "ImageUnits", "SequenceUnits", "TokenUnits",
                "check_token_ids"],
        explainers: ["Explainer", "EXPLAINERS", "register", "LogitsModule", "EXPLAINER_ALIASES", "resolve_explainer",
                     "explain", "saliency", "integrated_gradients", "smoothgrad", "sg_sq", "deeplift", "last_conv",
                     "gradcam", "occlusion", "random", "degrade"],
        data: ["ImageSplit", "digits", "safe_unpickle", "cifar"],
        models: ["conv_bn", "Residual", "ResNet9", "SmallCNN"],
        benchmark: ["METHODS", "METHOD_NAMES", "NOISES", "SCORES", "SCORE_NAMES", "StaleRunError", "BenchmarkConfig",
                    "BenchmarkResult", "run", "default_methods"],
    }
    missing = {m.__name__: [n for n in names if not hasattr(m, n)] for m, names in old.items()}
    assert not any(missing.values()), missing
    assert callable(explainers.EXPLAINERS.get("layer_ig"))  # the text explainers register with the package


def test_registries_are_complete_whichever_module_is_imported_first() -> None:
    """Tasks and explainers register on import of their package, so a fresh process that imports one module
    deep inside still sees every name."""
    code = ("from ffidelity.benchmark.tasks import TASKS\nfrom ffidelity.explainers.core import EXPLAINERS\n"
            "import json\nprint(json.dumps([sorted(TASKS.names()), sorted(EXPLAINERS.names())]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tasks, explainers = json.loads(out.stdout)
    assert {"digits", "freqshapes", "synthetic-sentiment"} <= set(tasks)
    assert {"saliency", "gradcam", "layer_ig"} <= set(explainers)
