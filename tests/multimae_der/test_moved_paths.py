"""The module paths of the flat layout still import, as the modules at their new paths, with a DeprecationWarning."""

import importlib
import sys
from pathlib import Path

import pytest

import multimae_der
from multimae_der import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_path_imports_the_new_module_with_a_warning(old: str, new: str) -> None:
    module = importlib.import_module(new)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        old_module = importlib.import_module(old)
    assert old_module is module
    assert sys.modules[old] is module
    assert module.__name__ == new and module.__spec__.name == new


def test_no_file_is_left_at_an_old_path() -> None:
    root = Path(multimae_der.__path__[0])
    for old in MOVED:
        rel = old.split(".", 1)[1].replace(".", "/")
        assert not (root / f"{rel}.py").exists(), old


def test_from_old_path_import_name() -> None:
    sys.modules.pop("multimae_der.fusion", None)
    with pytest.warns(DeprecationWarning):
        from multimae_der.fusion import FUSIONS
    from multimae_der.model import fusion

    assert FUSIONS is fusion.FUSIONS


@pytest.mark.parametrize(("package", "module"), [("multimae_der.model", "multimae_der.model.videomae"),
                                                 ("multimae_der.explain", "multimae_der.explain.attributions")])
def test_packages_named_like_old_modules_keep_their_names(package: str, module: str) -> None:
    pkg = importlib.import_module(package)
    mod = importlib.import_module(module)
    assert pkg.__all__
    for name in pkg.__all__:
        assert getattr(pkg, name) is getattr(mod, name), name


def test_old_model_and_explain_names() -> None:
    from multimae_der.explain import ClipExplanation, EmotionLogits, explain_clips
    from multimae_der.explain.provenance import ClipExplanation as defined
    from multimae_der.model import MODEL_CONFIGS, build_classifier, make_config

    assert ClipExplanation is defined
    assert callable(explain_clips) and isinstance(EmotionLogits, type)
    assert "tiny" in MODEL_CONFIGS and callable(build_classifier) and callable(make_config)


def test_old_names_of_split_modules_still_import() -> None:
    """serve and faithfulness were split in two; their old paths still offer every name they had."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from multimae_der.faithfulness import emotion_units, paired_signal
        from multimae_der.serve import FaithfulnessView, check_upload
    from multimae_der.app.analysis import check_upload as defined_upload
    from multimae_der.app.faithfulness_view import FaithfulnessView as defined_view
    from multimae_der.explain.faithfulness_task import emotion_units as defined_units
    from multimae_der.explain.faithfulness_task import paired_signal as defined_signal

    assert (check_upload, FaithfulnessView, emotion_units, paired_signal) == (
        defined_upload, defined_view, defined_units, defined_signal)


def test_python_m_on_an_old_path_runs_the_moved_module() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "multimae_der.demo", "--help"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "multimae_der.demo has moved to multimae_der.app.demo" in proc.stderr
    assert "--out" in proc.stdout  # the demo's own usage
