"""Every command line the README and the docs give for our four programs parses with that
program's real parser, so an installer copying a line from them never meets "unrecognized
arguments" (a renamed option, a subcommand that moved).

The lines are taken from the fenced shell blocks as written: a trailing backslash joins the
next line, `#` starts a comment, and `&&`, `;` and `|` separate commands. `sudo` and `sudo -u
USER` in front are the shell's business and are dropped. Placeholders such as `<TOKEN>` are
just words to a parser, which is all this checks: it parses, it does not run.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from voltbook_fw.cli import build_parser as fw_parser

from cloud.cli import build_parser as cloud_parser
from demo.cli import build_parser as demo_parser
from edge.cli import build_parser as edge_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?P<language>\w*)")
SHELL = {"sh", "shell", "bash", "console"}
SYNOPSIS = re.compile(r"[\[{…]")  # `[--opt X]`, `{a,b}`, `ARG …`
INLINE = re.compile(r"(?<!`)`(?P<command>voltbook-(?:edge|cloud|fw|demo)(?: [^`]*)?)`(?!`)")
OPTION = re.compile(r"--[a-z][a-z0-9-]*")
REDIRECTION = re.compile(r"[0-9]?(>|>>|<)")
ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=.*")  # VOLTBOOK_PASSWORD=… voltbook-fw claim
DUPLICATION = re.compile(r"[0-9]?>&[0-9]+")
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "voltbook-edge": edge_parser,
    "voltbook-cloud": cloud_parser,
    "voltbook-fw": fw_parser,
    "voltbook-demo": demo_parser,
}


class Refused(Exception):
    """argparse would have printed a usage error and exited."""


def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser and its subparsers raise instead of printing and exiting."""

    def error(message: str) -> None:
        raise Refused(message)

    stack = [parser]
    while stack:
        each = stack.pop()
        each.error = error  # type: ignore[method-assign]
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return parser


def fenced_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of each fenced block."""
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line.strip())
        if opened is None and fence:
            opened, lines = (number + 1, fence["language"]), []
        elif opened is not None and line.strip() == "```":
            yield opened[0], opened[1], lines
            opened = None
        elif opened is not None:
            lines.append(line)


def _logical_lines(lines: list[str], *, synopsis: bool) -> Iterator[str]:
    """A trailing backslash joins the next line; in a synopsis an indented line does."""
    joined = ""
    for line in lines:
        if synopsis and joined and line.startswith(" "):
            joined += " " + line.strip()
        elif not synopsis and joined.endswith("\\"):
            joined = joined[:-1] + " " + line.strip()
        else:
            if joined:
                yield joined
            joined = line.rstrip()
    if joined:
        yield joined


def _commands(words: list[str]) -> Iterator[list[str]]:
    """Split a shell line's words at `&&`, `;`, `|`, `&`; drop redirections, and a leading
    sudo or VARIABLE=value."""
    command: list[str] = []
    redirected = False
    for word in [*words, ";"]:
        if redirected:  # the file a redirection names
            redirected = False
        elif REDIRECTION.fullmatch(word):
            redirected = True
        elif DUPLICATION.fullmatch(word):  # 2>&1
            continue
        elif word not in ("&&", ";", "|", "||", "&"):
            command.append(word)
        else:
            while command[:1] == ["sudo"] or (command and ASSIGNMENT.fullmatch(command[0])):
                skip = 3 if command[:2] == ["sudo", "-u"] else 1
                command = command[skip:]
            if command:
                yield command
            command = []


def command_lines() -> Iterator[tuple[str, bool, str, list[str]]]:
    """(where, synopsis?, program, arguments) of each of our programs' lines in a fenced block:
    a shell block's lines are commands to type; a plain block's are usage synopses
    (`[--opt X]`, `{a,b}`, PLACEHOLDERS)."""
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for line_no, language, block in fenced_blocks(text):
            if language not in SHELL and language != "":
                continue
            for line in _logical_lines(block, synopsis=language == ""):
                synopsis = language == "" and SYNOPSIS.search(line.split("#")[0]) is not None
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue  # not shell (an unbalanced quote in prose): not ours to judge
                for command in _commands(words):
                    if command[0] in PARSERS:
                        yield f"{document.name}:{line_no}", synopsis, command[0], command[1:]
        for span in INLINE.finditer(text):  # `voltbook-fw update --root DIR` in a sentence
            line_no = text.count("\n", 0, span.start()) + 1
            program, *arguments = span["command"].split()
            yield f"{document.name}:{line_no}", True, program, arguments


COMMANDS = list(command_lines())


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser the leading words of a synopsis select (`a|b` names alternatives, all of
    which must exist; the first is followed); a word where a subcommand must be that is none is
    refused."""
    taking_value = False
    for word in words:
        if taking_value:
            taking_value = False
            continue
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {}
        )
        if word.startswith("-"):
            option = parser._option_string_actions.get(word)
            taking_value = option is not None and option.nargs != 0
        elif not choices or word == "…":  # `voltbook-cloud --log-format json …`: any of them
            break
        elif missing := [name for name in word.split("|") if name not in choices]:
            raise Refused(f"no subcommand {missing[0]!r} (choose from {', '.join(choices)})")
        else:
            parser = choices[word.split("|")[0]]
    return parser


def test_the_documents_give_command_lines_for_every_program() -> None:
    # The scan itself must find what is there; an empty list would pass every check below.
    programs = {program for _, synopsis, program, _ in COMMANDS if not synopsis}
    assert programs >= {"voltbook-edge", "voltbook-cloud", "voltbook-fw"}
    assert sum(not synopsis for _, synopsis, _, _ in COMMANDS) >= 25
    assert sum(synopsis for _, synopsis, _, _ in COMMANDS) >= 15


@pytest.mark.parametrize(
    ("where", "synopsis", "program", "arguments"),
    COMMANDS,
    ids=[f"{w} {p}" for w, _, p, _ in COMMANDS],
)
def test_each_documented_command_line_parses(
    where: str, synopsis: bool, program: str, arguments: list[str]
) -> None:
    parser = _strict(PARSERS[program]())
    line = f"{where}: `{program} {shlex.join(arguments)}`"
    if synopsis:  # every option it names is one of that subcommand's (or the program's)
        try:
            chosen = _subcommand(parser, arguments)
        except Refused as exc:
            pytest.fail(f"{line}: {exc}")
        known = {
            option
            for each in (parser, chosen)
            for action in each._actions
            for option in action.option_strings
        }
        named = {option for word in arguments for option in OPTION.findall(word)}
        assert named <= known, f"{line} names options its parser lacks: {sorted(named - known)}"
        return
    try:
        parser.parse_args(arguments)
    except SystemExit as exc:  # `--version` and `--help` print and exit 0
        assert exc.code == 0, f"{line} exits {exc.code}"
    except Refused as exc:
        pytest.fail(f"{line} is refused: {exc}")


def test_a_mistyped_option_is_caught() -> None:
    parser = _strict(fw_parser())
    with pytest.raises(Refused, match="--valdi"):
        parser.parse_args(
            [
                "claim",
                "--site",
                "S",
                "--cloud",
                "https://vb.example",
                "--user",
                "li",
                "--valdi",
                "2h",
            ]
        )
