"""The README's commands parse against the real CLIs (options exist, required ones are given); nothing is run.

Every line of a fenced code block that starts a ``ffidelity`` or ``multimae-der`` command (also after ``;``,
``&&``, ``||`` or ``|``; ``# comments`` and ``\\`` continuations handled) is split with :mod:`shlex` and parsed by
click's ``make_context``, which checks options, arguments and values but never calls the command. Placeholders
(``DIR``, ``RUN``, ``K``: capitals) stand for any value: given to a number or choice option, they are replaced by
one the option accepts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

README = Path(__file__).resolve().parents[2] / "README.md"
DOCS = sorted((README.parent / "docs").rglob("*.md"))
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")
SEPARATORS = {";", "&&", "||", "|", "&"}
SAMPLES = ("1", "0.5")  # values tried, in turn, for a placeholder that the option's type refuses
STARTS = re.compile(r"(?:^|[;&|]\s*)(?:ffidelity|multimae-der)(?:\s|$)")


def _apps() -> dict[str, Any]:
    from ffidelity.cli import app as ffidelity_app
    from multimae_der.cli import app as multimae_app

    return {"ffidelity": typer.main.get_command(ffidelity_app), "multimae-der": typer.main.get_command(multimae_app)}


def command_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, logical line)`` of every fenced-block line that starts a CLI command."""
    out: list[tuple[int, str]] = []
    fenced, pending, start = False, "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = raw.strip()
        if not pending:
            start = no
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).removeprefix("$ "), ""
        if STARTS.search(line):
            out.append((start, line))
    return out


def split_commands(line: str) -> list[list[str]]:
    """The argv of each ``ffidelity`` / ``multimae-der`` command of a shell line (comments dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split, lex.commenters = True, "#"
    commands: list[list[str]] = [[]]
    for token in lex:
        if token in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c and c[0] in ("ffidelity", "multimae-der")]


def _parse(command: Any, name: str, args: list[str], parent: Any) -> Any:
    """``command.make_context`` (parses and validates, never calls the command), a placeholder given to a typed
    option (``--fold K``) replaced by a value the option accepts."""
    args = [part for token in args
            for part in (token.split("=", 1) if token.startswith("--") and "=" in token else [token])]
    original, tried = list(args), [0] * len(args)
    while True:
        try:
            return command.make_context(name, list(args), parent=parent, resilient_parsing=False)  # it eats args
        except typer.BadParameter as exc:
            opts = getattr(exc.param, "opts", ())
            spots = [i for i in range(1, len(args)) if original[i - 1] in opts and PLACEHOLDER.fullmatch(original[i])
                     and tried[i] < len(SAMPLES)]
            if not spots:
                raise
            for i in spots:
                args[i], tried[i] = SAMPLES[tried[i]], tried[i] + 1


def parse_command(argv: list[str], apps: dict[str, Any] | None = None) -> Any:
    """The context of ``argv``'s (sub)command, its options in ``.params``; a ``typer.TyperException`` (click's
    usage errors) when an option does not exist, a required one is missing or a value is wrong. Runs nothing."""
    apps = apps or _apps()
    command, name, args, parent = apps[argv[0]], argv[0], argv[1:], None
    while True:
        ctx = _parse(command, name, args, parent)
        if not hasattr(command, "resolve_command"):  # a command, not a group
            return ctx
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the subcommand and its arguments
        if not rest:
            raise typer.BadParameter(f"`{ctx.command_path}` needs a command")
        name, command, args = command.resolve_command(ctx, rest)
        parent = ctx


def check_command(argv: list[str], apps: dict[str, Any] | None = None) -> str | None:
    """What is wrong with ``argv`` (``[program, subcommand, ...]``) for the real CLI, or None; runs nothing."""
    try:
        parse_command(argv, apps)
    except typer.TyperException as exc:  # typer's (vendored) click errors: no such option, missing, bad value
        return exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return None


def check_readme(text: str, name: str = "README.md") -> list[str]:
    """One message per broken command of a README (or docs page) text: its line number, the line and the problem."""
    apps, problems = _apps(), []
    for no, line in command_lines(text):
        try:
            commands = split_commands(line)
        except ValueError as exc:  # unbalanced quotes
            problems.append(f"{name}:{no}: {line}\n    cannot split the line: {exc}")
            continue
        for argv in commands:
            problem = check_command(argv, apps)
            if problem:
                problems.append(f"{name}:{no}: {line}\n    {shlex.join(argv)}: {problem}")
    return problems


def test_readme_commands_parse():
    text = README.read_text(encoding="utf-8")
    found = [argv[:2] for _, line in command_lines(text) for argv in split_commands(line)]
    assert ["multimae-der", "prepare"] in found and ["multimae-der", "cv"] in found  # the reader sees them
    problems = check_readme(text)
    assert not problems, "README commands the CLI rejects:\n" + "\n".join(problems)


def test_docs_commands_parse():
    """The documentation site's pages: the same check as the README's, page by page."""
    assert len(DOCS) >= 8
    found, problems = [], []
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        found += [argv[:2] for _, line in command_lines(text) for argv in split_commands(line)]
        problems += check_readme(text, str(page.relative_to(README.parent)))
    assert ["ffidelity", "benchmark"] in found and ["ffidelity", "explainers"] in found
    assert ["multimae-der", "faithfulness"] in found
    assert not problems, "docs commands the CLI rejects:\n" + "\n".join(problems)


def test_readme_prepare_fills_the_cache_train_reads():
    """The README's ``prepare`` line caches clips exactly as its ``train`` line prepares them (else train decodes
    every clip again, into another cache entry)."""
    from multimae_der.cli.model import _prepare_config, _train_config
    from multimae_der.data.prepare import PrepareConfig

    lines = {tuple(argv[:2]): argv for _, line in command_lines(README.read_text(encoding="utf-8"))
             for argv in split_commands(line)}
    p = parse_command(lines["multimae-der", "prepare"]).params
    t = parse_command(lines["multimae-der", "train"]).params
    prepared = PrepareConfig(num_frames=p["frames"], num_windows=p["windows"], image_size=p["image_size"],
                             sample_rate=p["sample_rate"], audio_feature=p["audio_feature"],
                             frame_sampling=p["frame_sampling"], frame_stride=p["frame_stride"], crop=p["crop"],
                             colormap=p["colormap"])
    trained = _prepare_config(_train_config(t["preset"], t["layers"], model=t["model"], image_size=t["image_size"],
                                            fusion=t["fusion"]),
                              t["frames"], t["windows"], t["audio_feature"], t["frame_sampling"], t["crop"])
    assert prepared.hash() == trained.hash(), (prepared, trained)
    assert (p["root"], p["cache"]) == (t["root"], t["cache"])


BAD = """\
Some text `multimae-der train --nope` outside a block is not checked.

```bash
multimae-der prepare --dataset ravdess --root DIR --nope        # an option that does not exist
multimae-der train --dataset ravdess --fusion fslf --out RUN    # --root is required
ffidelity datasets; ffidelity explainers --verbose              # the second command of the line
multimae-der evaluate \\
    --run RUN --batch-size many                                  # a continued line, a value of the wrong type
multimae-der train --dataset ravdess --root DIR --out RUN --fold K --epochs N   # placeholders are fine
multimae-der predict --run RUN                                  # the VIDEO argument is missing
multimae-der nonsense --run RUN
make demo && ffidelity benchmark --quick                         # --out is required
```
"""


def test_checker_reports_each_problem_with_its_line():
    problems = check_readme(BAD)
    assert len(problems) == 7, "\n".join(problems)
    by_line = {p.split(":")[1]: p for p in problems}
    assert set(by_line) == {"4", "5", "6", "7", "10", "11", "12"}
    assert "No such option: --nope" in by_line["4"] and "multimae-der prepare --dataset ravdess" in by_line["4"]
    assert "Missing option '--root'" in by_line["5"]
    assert "ffidelity explainers --verbose" in by_line["6"] and "No such option: --verbose" in by_line["6"]
    assert "Invalid value for '--batch-size'" in by_line["7"]
    assert "missing argument 'video'" in by_line["10"].lower()
    assert "No such command 'nonsense'" in by_line["11"]
    assert "Missing option '--out'" in by_line["12"]


@pytest.mark.parametrize("line, commands", [
    ("ffidelity datasets; ffidelity explainers   # what is registered", [["ffidelity", "datasets"],
                                                                         ["ffidelity", "explainers"]]),
    ("make demo && multimae-der serve --run 'my run'", [["multimae-der", "serve", "--run", "my run"]]),
    ("export X=1", []),
])
def test_split_commands(line, commands):
    assert split_commands(line) == commands


def test_a_good_line_passes_and_a_missing_cache_would_not():
    assert check_command(["multimae-der", "prepare", "--dataset", "ravdess", "--root", "data/synth"]) is None
    assert check_command(["multimae-der", "cv", "--dataset", "ravdess", "--root", "DIR", "--num-folds", "K",
                          "--out", "runs/cv"]) is None
