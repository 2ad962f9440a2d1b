""".ci/run cannot hang: every program it starts runs under its ``bound`` (a timeout), so a stuck
psql, redis-cli or venv fails CI at once instead of eating its 90 minutes (issue 25, item 0)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.dbagnostic  # reads a file

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "run"
# Shell built-ins and commands that return at once.
UNBOUNDED_OK = {"set", "cd", "echo", "exit", "command", "rm", "fi", "else", "then"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def commands(line: str) -> list[list[str]]:
    """The simple commands of one line of the script (split at ``&&``, ``||``, ``;`` and ``|``),
    each without a leading ``if``/``!`` and variable assignments."""
    words = shlex.split(line, comments=True)
    found, current = [], []
    for word in [*words, ";"]:
        if word in {"&&", "||", ";", "|"} or word.endswith(";"):
            if word.endswith(";") and word != ";":
                current.append(word[:-1])
            while current and (current[0] in {"if", "!", "then"} or ASSIGNMENT.match(current[0])):
                current.pop(0)
            if current:
                found.append(current)
            current = []
        else:
            current.append(word)
    return found


def test_every_command_of_the_ci_script_is_bounded():
    unbounded = []
    for number, line in enumerate(SCRIPT.read_text().splitlines(), 1):
        if line.startswith(("#!", "bound()")) or not line.strip():
            continue
        for command in commands(line):
            if command[0] != "bound" and command[0] not in UNBOUNDED_OK:
                unbounded.append(f"line {number}: {' '.join(command)}")
            elif command[0] == "bound":
                assert re.fullmatch(r"\d+[smh]", command[1]), f"line {number}: bound needs a duration first"
    assert not unbounded, "commands in .ci/run without a bound:\n" + "\n".join(unbounded)


def test_the_check_finds_an_unbounded_command():
    assert commands("if redis-cli -h h ping >/dev/null 2>&1; then") == [
        ["redis-cli", "-h", "h", "ping", ">/dev/null", "2>&1"]
    ]
    assert commands('X="a b" bound 1m psql -c "DROP x" && psql y') == [
        ["bound", "1m", "psql", "-c", "DROP x"],
        ["psql", "y"],
    ]
