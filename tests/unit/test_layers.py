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


# Each package imports only those before it (and the foundation); the top-level modules that compose a run
# (finetuning, training, prediction, run_files, merge_run, model_card, checks, results, api) import anything.
ORDER = ("foundation", "io", "data", "generate", "evaluate", "settings", "train", "merging", "benchmark")
FOUNDATION = {"errors", "compat", "hardware", "devices", "roles"}
SETTINGS = {"settings", "config", "recipe"}


def layer_of(name: str) -> int | None:
    """The place of a top-level name of the package in ORDER (None: a module that composes the rest)."""
    if name in FOUNDATION:
        return 0
    if name in SETTINGS:
        return ORDER.index("settings")
    return ORDER.index(name) if name in ORDER else None


def bioqa_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """The first name under bioqa of every bioqa import (`from bioqa import x` names x)."""
    found = []
    for name, line in imported_modules(tree):
        parts = name.split(".")
        if parts[0] == "bioqa" and len(parts) > 1:
            found.append((parts[1], line))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "bioqa":
            found += [(alias.name, node.lineno) for alias in node.names]
    return sorted(found, key=lambda found_at: found_at[1])


@pytest.mark.parametrize("path", [p for p in LIBRARY if len(p.relative_to(PACKAGE).parts) > 1], ids=shown)
def test_packages_import_only_the_layers_below_them(path):
    mine = layer_of(path.relative_to(PACKAGE).parts[0])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    upward = [
        (name, line)
        for name, line in bioqa_imports(tree)
        if name != path.relative_to(PACKAGE).parts[0] and (layer_of(name) is None or layer_of(name) >= mine)
    ]
    assert not upward, f"{shown(path)} imports from its own layer or above: {upward}"


def test_the_layer_check_sees_an_upward_import():
    tree = ast.parse(
        "from bioqa.train.modeling import load_model\nfrom bioqa import finetuning\nimport bioqa.io.files\n"
    )
    assert bioqa_imports(tree) == [("train", 1), ("finetuning", 2), ("io", 3)]
    assert [layer_of(name) for name, _ in bioqa_imports(tree)] == [6, None, 1]
