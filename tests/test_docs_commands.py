"""Every `flatarch search` and `flatarch train` command of the reproduction guide parses and its
settings resolve (nothing runs): each method and update of table 2 is reachable from the CLI."""

import os
import re
import shlex

import pytest
from flatarch.reference_spaces.engine.methods import METHODS
from flatarch.reference_spaces.registry import get_space

from flatarch.cli import build_parser
from flatarch.cli.search import config_from_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "docs", "reproduce.md")
#: placeholders of the guide's templates
PLACEHOLDERS = {"M": "darts", "U": "a2m", "S": "1", "D": "cifar10"}


def _commands():
    text = open(GUIDE).read().replace("\\\n", " ")
    found = re.findall(r"`(flatarch [^`]+)`", text)
    found += [line.strip() for line in text.splitlines() if line.strip().startswith("flatarch ")]
    for command in found:
        words = shlex.split(command)[1:]
        yield [re.sub(r"\b[MUSD]\b", lambda m: PLACEHOLDERS[m.group(0)], w) for w in words]


COMMANDS = [c for c in _commands() if c[0] in ("search", "train")]


def _cell(words):
    value = lambda flag, default: words[words.index(flag) + 1] if flag in words else default  # noqa: E731
    return value("--space", "nb201"), value("--method", None), value("--optimizer", None)


def _without(words, *flags):
    """The command without these options and their values."""
    drop = {i + k for i, w in enumerate(words) if w in flags for k in (0, 1)}
    return [w for i, w in enumerate(words) if i not in drop]


def test_the_guide_has_a_default_and_an_as_run_command_for_every_cell_of_table_2():
    searches = [c for c in COMMANDS if c[0] == "search"]
    as_run = [c for c in searches if "--recipe" in c]
    default = [c for c in searches if "--recipe" not in c]
    assert all(c[c.index("--recipe") + 1] == "a2m-authors" for c in as_run)
    cells = sorted((space, m, u) for space in ("nb201", "darts") for m in set(METHODS) - {"sdarts-adv"}
                   for u in ("first-order", "a2m"))
    assert sorted(map(_cell, default)) == cells and sorted(map(_cell, as_run)) == cells  # 28 each, once
    by_cell = {_cell(c): _without(c, "--out") for c in default}
    for c in as_run:  # the default command plus the recipe, into its own folder
        assert _without(c, "--out", "--recipe") == by_cell[_cell(c)]
        assert c[c.index("--out") + 1] != by_cell[_cell(c)] and "as-run" in c[c.index("--out") + 1]
    assert any(c[0] == "train" for c in COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c[:7]) for c in COMMANDS])
def test_every_command_parses_and_resolves(words):
    args = build_parser().parse_args(words)
    if words[0] == "search":
        config = config_from_args(args)
        resolved = config.resolved(get_space(config.space).defaults)
        assert resolved.seed == 0 and args.seeds == [1, 2, 3, 4, 5]
