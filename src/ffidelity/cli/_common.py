"""Shared CLI plumbing: one-line errors instead of tracebacks, and a rich console."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

#: exceptions that mean "the user's input is wrong": shown as one line, exit code 1.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                 PermissionError, IsADirectoryError, NotADirectoryError,
                                                 TypeError)


def friendly_errors(fn: F) -> F:
    """Turns user errors raised by a command into ``error: <message>`` and exit code 1.

    Set ``FFIDELITY_DEBUG=1`` to see the full traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            if os.environ.get("FFIDELITY_DEBUG"):
                raise
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def setup_environment() -> None:
    """Offline by default (nothing may download weights or data at run time), and the tuned allocator.

    The commands keep glibc from returning activation buffers to the kernel after every batch, from the start
    (:func:`ffidelity.utils.allocator.auto_tune_allocator`; ``FFIDELITY_DEFAULT_MALLOC=1`` turns it off).
    """
    from ffidelity.utils.allocator import auto_tune_allocator

    auto_tune_allocator()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not sys.warnoptions:
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def batch_size_option(value: str) -> int | str:
    """``--batch-size``: ``auto`` (the engine times a few sizes) or a positive integer."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--batch-size must be a positive integer or auto, got {value!r}") from None
