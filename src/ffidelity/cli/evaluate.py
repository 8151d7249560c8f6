"""``ffidelity version`` (more commands register from their own modules)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print the version."""
        from ffidelity import __version__

        typer.echo(__version__)
