"""Writes the CLI reference (Markdown) from the typer apps, so every command is documented automatically.

Used by ``docs/hooks.py`` during ``mkdocs build``; run on its own it prints the page:
``PYTHONPATH=src python docs/gen_cli.py``.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

APPS: tuple[tuple[str, str], ...] = (("ffidelity", "ffidelity.cli"), ("multimae-der", "multimae_der.cli"))


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "option") == "option"


def _default(param: Any) -> str:
    """The parameter's default as shown in the table ('' when it has none worth showing)."""
    if getattr(param, "required", False):
        return "required"
    default = param.default
    if default is None or callable(default) or "UNSET" in repr(default).upper():
        return ""
    if _is_option(param) and getattr(param, "is_flag", False) and param.secondary_opts:
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if isinstance(default, (list, tuple)):
        return f"`{', '.join(map(str, default))}`" if default else ""
    return f"`{default}`"


def _names(param: Any) -> str:
    if not _is_option(param):
        return f"`{param.name.upper()}` (argument)"
    return " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])


def _type(param: Any, ctx: Any) -> str:
    if _is_option(param) and getattr(param, "is_flag", False):
        return "flag"
    shown = param.display_type(ctx) if hasattr(param, "display_type") else ""
    return str(shown or "").strip("<>").upper()


def commands(module: str) -> tuple[Any, list[tuple[str, Any]]]:
    """The command group of ``module``'s typer ``app`` and its visible (name, command) pairs, recursively."""
    import typer
    from typer._click.core import Context  # typer >= 0.2x vendors click: its objects are not click's

    app = __import__(module, fromlist=["app"]).app
    group = typer.main.get_command(app)
    out: list[tuple[str, Any]] = []

    def walk(cmd: Any, prefix: str) -> None:
        ctx = Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            out.append((f"{prefix} {name}".strip(), sub))
            if hasattr(sub, "list_commands"):
                walk(sub, f"{prefix} {name}")

    walk(group, "")
    return group, out


def command_markdown(prog: str, name: str, cmd: Any) -> str:
    """One command's section: heading, help, usage and a table of its options and arguments."""
    from typer._click.core import Context

    lines = [f"### `{prog} {name}`", ""]
    help_text = inspect.cleandoc(cmd.help or cmd.short_help or "")
    if help_text:
        lines += [help_text.replace("\b\n", ""), ""]
    ctx = Context(cmd, info_name=f"{prog} {name}")
    args = [p.name.upper() if p.required else f"[{p.name.upper()}]" for p in cmd.params
            if not _is_option(p) and not getattr(p, "hidden", False)]
    usage = " ".join(["[OPTIONS]", *args])
    lines += [f"**Usage:** `{prog} {name} {usage}`", ""]
    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| option | type | default | description |", "|---|---|---|---|"]
        for p in params:
            lines.append(f"| {_names(p)} | {_cell(_type(p, ctx))} | {_cell(_default(p))} | "
                         f"{_cell(getattr(p, 'help', None) or '')} |")
        lines.append("")
    return "\n".join(lines)


def cli_markdown() -> str:
    """The whole CLI reference page."""
    parts = ["# CLI reference", "",
             "Generated from the typer apps at build time (`docs/gen_cli.py`): every command of `ffidelity` "
             "and `multimae-der` is listed with its help, options and defaults (`--help` on a command shows "
             "the same).", ""]
    for prog, module in APPS:
        group, cmds = commands(module)
        parts += [f"## `{prog}`", "", inspect.cleandoc(group.help or ""), ""]
        parts += ["| command | summary |", "|---|---|"]
        for name, cmd in cmds:
            anchor = f"{prog}-{name}".replace(" ", "-")
            parts.append(f"| [`{name}`](#{anchor}) | {_cell(cmd.get_short_help_str(limit=120))} |")
        parts.append("")
        for name, cmd in cmds:
            anchor = f"{prog}-{name}".replace(" ", "-")
            section = command_markdown(prog, name, cmd)
            head, rest = section.split("\n", 1)
            parts += [f"{head} {{ #{anchor} }}", rest]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_markdown())
