"""The package's layers point one way: bioqa/cli/ knows commands and flags; the library below it does not."""

import ast
import re

import pytest

from helpers import ROOT

PACKAGE = ROOT / "bioqa"
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_]*")


def imported_modules(tree: ast.Module) -> list[tuple[str, int]]:
    """Every module imported anywhere in the file, except under `if __name__ == "__main__":`."""
    main_blocks = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    skipped = {id(n) for block in main_blocks for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
    return found


COMMAND_TEXT = {"model_card.py"}  # a model card quotes the commands that made the model, flags and all


def message_strings(tree: ast.Module) -> list[tuple[str, int]]:
    """String constants with a space in them (messages, not arguments such as "--porcelain") that are not
    docstrings; f-string pieces included."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and " " in node.value
        and id(node) not in docstrings
    ]


def shown(path):
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", LIBRARY, ids=shown)
def test_library_modules_import_neither_the_command_layer_nor_the_repository_root(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = [
        (name, line)
        for name, line in imported_modules(tree)
        if name.startswith("bioqa.cli") or name in ("metrics_utils", "load_models", "merge_base_and_adapt_ft_models")
    ]
    assert not wrong, f"{path.name} imports {wrong}"
    assert "sys.path" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path", [p for p in LIBRARY if p.name not in COMMAND_TEXT], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_library_messages_name_settings_through_errors_option(path):
    """A flag spelled out in a library message would be wrong for a Python caller; errors.option() spells it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    flags = [(FLAG.search(text).group(), line) for text, line in message_strings(tree) if FLAG.search(text)]
    assert not flags, f"{path.name} spells flags in messages: {flags}"


def test_the_checks_see_what_they_look_for():
    tree = ast.parse(
        '"""--doc is fine"""\nimport bioqa.cli.runner\nraise ValueError(f"use --lr {x}")\nrun(["git", "--porcelain"])\n'
        'if __name__ == "__main__":\n    from bioqa.cli.score import main\n'
    )
    assert [name for name, _ in imported_modules(tree)] == ["bioqa.cli.runner"]
    assert [FLAG.search(text).group() for text, _ in message_strings(tree) if FLAG.search(text)] == ["--lr"]
