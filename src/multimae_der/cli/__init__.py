"""The ``multimae-der`` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import os

# Before torch loads OpenMP: busy-waiting threads collapse on a shared machine (measured on 2 cores with other
# jobs running: 5.9 s per tiny-VideoMAE training step with the default policy, 0.46 s with "passive").
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import typer

from ffidelity.cli._common import setup_environment

app = typer.Typer(name="multimae-der", help="Audio-visual dynamic emotion recognition (MultiMAE-DER).",
                  no_args_is_help=True, pretty_exceptions_enable=False)

_MODULES: tuple[str, ...] = ("multimae_der.cli.data", "multimae_der.cli.model", "multimae_der.cli.explain",
                             "multimae_der.cli.serve")  # each defines register(app)

for _name in _MODULES:
    __import__(_name, fromlist=["register"]).register(app)


@app.command()
def version() -> None:
    """Print the version."""
    from multimae_der._version import __version__

    typer.echo(__version__)


def main() -> None:
    setup_environment()
    app()
