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


def test_the_guide_has_a_row_for_every_method_update_and_space_of_table_2():
    searches = [c for c in COMMANDS if c[0] == "search"]
    assert len(searches) == 7 * 2 * 2
    methods = {c[c.index("--method") + 1] for c in searches}
    assert methods == set(METHODS) - {"sdarts-adv"}
    assert any(c[0] == "train" for c in COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c[:7]) for c in COMMANDS])
def test_every_command_parses_and_resolves(words):
    args = build_parser().parse_args(words)
    if words[0] == "search":
        config = config_from_args(args)
        resolved = config.resolved(get_space(config.space).defaults)
        assert resolved.seed == 0 and args.seeds == [1, 2, 3, 4, 5]
