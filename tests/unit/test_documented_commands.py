"""Every load_models.py command the README and `load_models.py --help` show passes the checks a run makes before
it loads anything: a user who copies one is never refused for its flags."""

import re
import shlex

import pytest

import bioqa.cli.train as train_script
from bioqa.checks import argument_problems
from bioqa.errors import options_spelled_as_flags
from bioqa.recipe import parse_recipe
from helpers import ROOT

COMMAND = re.compile(r"(?:load_models\.py|bioqa-train)((?:\s+--\S+(?:\s+(?!--)[^\s#]+)*)+)")


def documented_commands() -> list[tuple[str, str]]:
    texts = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8"), "--help": train_script.__doc__}
    commands = []
    for where, text in texts.items():
        for line in text.replace("\\\n", " ").splitlines():
            found = COMMAND.search(line)
            if found and "--help" not in found.group(1) and "..." not in line:
                commands.append((where, found.group(1).strip()))
    return commands


def test_the_readme_and_the_help_show_commands():
    assert len(documented_commands()) >= 10


@pytest.mark.parametrize(("where", "flags"), documented_commands())
def test_a_documented_command_passes_the_checks_made_before_loading(where, flags, monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs it names are the repository's
    with options_spelled_as_flags():
        assert argument_problems(parse_recipe(shlex.split(flags))) == [], f"{where}: load_models.py {flags}"
