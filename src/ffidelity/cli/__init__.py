"""The ``ffidelity`` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import typer

from ffidelity.cli import benchmark, evaluate
from ffidelity.cli._common import setup_environment

app = typer.Typer(name="ffidelity", help="Faithfulness evaluation of explanations: Fidelity, R-Fidelity, "
                  "F-Fidelity, ROAR.", no_args_is_help=True, pretty_exceptions_enable=False)

for _module in (evaluate, benchmark):
    _module.register(app)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the engine decides (e.g. the "
                                                                        "batch size it chose).")) -> None:
    if verbose:
        import logging

        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("ffidelity").setLevel(logging.INFO)


def main() -> None:
    setup_environment()
    app()
