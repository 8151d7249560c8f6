"""``multimae-der serve``: the local web app (upload or pick a clip; emotion, explanation, faithfulness)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ffidelity.cli._common import console, err_console, friendly_errors
from multimae_der.cli.runs import resolve_run


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @friendly_errors
    def serve_cmd(run: Annotated[Path, typer.Option(help="A finished run folder, or a folder of runs to choose from.")],
                  port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
                  host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")]
                  = "127.0.0.1",
                  examples: Annotated[Path | None, typer.Option(help="Folder of example clips (default: clips "
                                                                     "shipped with the run or its data).")] = None,
                  faithfulness: Annotated[Path | None, typer.Option(help="Folder written by `multimae-der "
                                                                         "faithfulness` (default: RUN/faithfulness "
                                                                         "or the demo's).")] = None,
                  explainer: Annotated[str, typer.Option(help="Explainer selected at start.")] = "saliency",
                  max_mb: Annotated[float, typer.Option(help="Largest accepted upload, MB.")] = 50.0,
                  max_seconds: Annotated[float, typer.Option(help="Longest accepted clip, seconds.")] = 30.0
                  ) -> None:
        """Start the local web app: drop in a video, see the emotion, why, and how faithful the why is."""
        from multimae_der.app.analysis import Limits
        from multimae_der.app.serve import serve

        run = resolve_run(run)
        if not 0 < port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {port}")
        limits = Limits(max_mb=max_mb, max_seconds=max_seconds)
        if host not in ("127.0.0.1", "localhost", "::1"):
            console.print(f"[yellow]binding to {host}: other machines can reach this app[/]", soft_wrap=True)
        try:
            serve(run, host=host, port=port, examples=examples, faithfulness=faithfulness, limits=limits,
                  explainer=explainer)
        except (ModuleNotFoundError, OSError) as exc:  # gradio missing; the port taken
            if isinstance(exc, FileNotFoundError):
                raise
            msg = str(exc)
            if isinstance(exc, OSError) and "port" in msg:
                msg = f"cannot listen on {host}:{port}: the port is in use; choose another with --port"
            err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
