"""The `gendetect` command: a thin top layer that parses arguments and runs a
command's implementation, imported lazily so `gendetect --help` stays fast.

Commands are not named here. Each layer declares its own (the core's in
`gendetect.commands`, the jobs' in `training.commands`, the API's in
`serving.commands`) and registers them under the `gendetect.commands` entry
point group in pyproject.toml, so the core's import graph never reaches the
job or web layers (the import-linter contract checks it).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import NoReturn

import argcomplete

from gendetect import __version__
from gendetect.errors import CliError, GendetectError

ENTRY_POINT_GROUP = "gendetect.commands"

__all__ = ["ENTRY_POINT_GROUP", "CliError", "Command", "main", "print_error"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: str  # "module:function"; the function takes the Namespace, returns an exit code
    # Listed in this order in `gendetect --help` (lower first).
    order: int = 100
    # "module:Class": the settings class the command reads when it extends
    # the core's (gendetect.config.Settings); how the core learns the names
    # of a layer's settings without importing the layer.
    settings: str | None = None
    # Command lines shown under "examples:" in the command's --help.
    examples: tuple[str, ...] = ()


def registered_commands() -> list[Command]:
    """Every layer's commands, from the entry points (none when the package
    is not installed)."""
    found: list[Command] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.extend(point.load())
    return sorted(found, key=lambda c: (c.order, c.name))


class _Parser(argparse.ArgumentParser):
    """argparse's parser with "did you mean" for a misspelt command or option."""

    def error(self, message: str) -> NoReturn:
        hint = _suggestion(self, message)
        self.print_usage(sys.stderr)
        print_error(self.prog, f"{message}{hint}")
        self.exit(2)


def print_error(prog: str, message: str) -> None:
    """`prog: error: message` on stderr, with `error:` in bold red on a
    terminal (rich; not when NO_COLOR is set), plain text anywhere else."""
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console
        from rich.text import Text

        # Text, not markup: a message may hold brackets ("[request 1]").
        line = Text.assemble(f"{prog}: ", ("error:", "bold red"), f" {message}")
        Console(file=sys.stderr, highlight=False, soft_wrap=True).print(line)
    else:
        print(f"{prog}: error: {message}", file=sys.stderr)


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                close = difflib.get_close_matches(choice.group(1), list(action.choices), n=1)
                if close:
                    return f"; did you mean '{close[0]}'?"
        return ""
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if unknown:
        known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        hints = []
        for word in unknown.group(1).split():
            if word.startswith("-"):
                typed = word.split("=")[0]
                # A prefix of an option is what a user who abbreviates meant.
                close = sorted(o for o in known if o.startswith(typed)) or (
                    difflib.get_close_matches(typed, known, n=1, cutoff=0.6))
                if close:
                    hints.append(f"{word} -> {close[0]}")
        if hints:
            return f" (did you mean {', '.join(hints)}?)"
    return ""


def _chosen_parser(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser that `args` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _chosen_parser(chosen, args)
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Shows a default where there is one (not "default: None"), and the
    examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.required or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    # allow_abbrev=False: an option is its full name. With prefixes,
    # `simulate --day 3 --cust 10` ran as --days/--customers and wrote 0 rows.
    parser = _Parser(
        prog="gendetect",
        allow_abbrev=False,
        description="Fraud detection with generative models (VAE, GAN, ensemble): simulate, "
        "train and register in MLflow, score files, serve a REST API.",
    )
    parser.add_argument("--version", action="version", version=f"gendetect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for command in commands:
        epilog = ("examples:\n" + "\n".join(f"  {e}" for e in command.examples)
                  if command.examples else None)
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           formatter_class=_HelpFormatter, allow_abbrev=False, epilog=epilog)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """allow_abbrev=False on every nested parser too (`db migrate`, ...),
    whoever created them."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """--quiet for commands that show progress (a bar on a terminal, log
    lines otherwise; see gendetect.progress)."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress (a live bar when stderr is a terminal, "
                        "plain log lines otherwise)")


# Argument types: a bad value is argparse's usage error (exit 2, naming the
# option) instead of a traceback or a message about a config key.
def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seed(text: str) -> int:
    # numpy's and torch's generators take seeds in 0 .. 2**32 - 1.
    value = _int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be within 0..{2**32 - 1}, got {value}")
    return value


_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")


def registry_alias(text: str) -> str:
    """An MLflow registry alias: letters, digits, `_` and `-`; not `latest` or
    `v<number>`, which MLflow reserves for version references."""
    if not _ALIAS.fullmatch(text) or text.lower() == "latest" or re.fullmatch(r"[vV]\d+", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an alias: letters, digits, '_' and '-', not 'latest' or 'v<number>'")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command reports its progress: unless --quiet. How (a bar or
    log lines) is gendetect.progress's choice, by the stream."""
    return not getattr(args, "quiet", False)


def main(argv: Sequence[str] | None = None) -> int:
    commands = registered_commands()
    if not commands:
        print("gendetect: error: no commands registered: install the package "
              "(pip install -e .)", file=sys.stderr)
        return 2
    parser = build_parser(commands)
    # Shell completion (argcomplete): `eval "$(register-python-argcomplete gendetect)"`.
    # Does nothing unless the shell's completion hook is asking.
    argcomplete.autocomplete(parser)
    args, extras = parser.parse_known_args(argv)
    if extras:
        # Refused by the command's own parser, which knows its options (the
        # "did you mean" looks there) and prints its own usage line.
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    module_name, func_name = args._run.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except GendetectError as exc:
        print_error(f"gendetect {args.command}", str(exc))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
