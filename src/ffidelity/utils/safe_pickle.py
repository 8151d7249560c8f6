"""Reading pickles that real data sets ship (CIFAR batches, numpy object arrays) without running code.

The unpickler admits only numpy array reconstruction and plain built-in containers; anything else (a planted
``os.system`` call, a class of the user's) is refused with ``pickle.UnpicklingError``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any


class ArrayUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars, bytes and plain containers; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a plain array or container")


def loads(data: bytes | io.BufferedIOBase, encoding: str = "ASCII") -> Any:
    """Unpickles ``data`` (bytes or a binary stream positioned at the pickle) with ``ArrayUnpickler``."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return ArrayUnpickler(stream, encoding=encoding).load()
