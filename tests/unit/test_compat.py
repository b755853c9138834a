"""Private names of other libraries are used in bioqa/compat.py only, each checked against the pinned versions."""

import ast

import pytest
import transformers

from bioqa import compat
from helpers import ROOT


def pins() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("#")[0].strip().split("==") for line in lines if "==" in line)


def test_compat_was_written_for_the_pinned_versions():
    pinned = pins()
    for library, version in compat.WRITTEN_FOR.items():
        if library != "python":
            assert pinned[library] == version, f"requirements.txt pins {library} {pinned[library]}; compat: {version}"


def test_every_private_name_is_where_the_pinned_versions_have_it():
    assert compat.problems() == []
    assert compat.version_differences() == {}


def test_a_name_that_moved_is_reported_with_the_pin(monkeypatch):
    monkeypatch.delattr(transformers.CompileConfig, "_compile_all_devices")
    monkeypatch.delattr(transformers.Trainer, "_get_grad_norm")
    found = compat.problems()
    assert len(found) == 2, found
    assert found[0].startswith(f"transformers {transformers.__version__} has no transformers.CompileConfig.")
    assert "written for transformers 5.23.0, the pin in requirements.txt" in found[0]
    assert "transformers.Trainer._get_grad_norm" in found[1]


def test_a_version_other_than_the_pin_is_named(monkeypatch):
    monkeypatch.setitem(compat.WRITTEN_FOR, "peft", "0.0.1")
    assert compat.version_differences() == {"peft": (pins()["peft"], "0.0.1")}


def private_uses(tree: ast.Module) -> list[tuple[str, int]]:
    """`x._name` where x is not self, cls or super(): another object's private attribute."""
    return [
        (f"{ast.unparse(node.value)}.{node.attr}", node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and ast.unparse(node.value) not in ("self", "cls", "super()")
        and node.attr not in ("_replace", "_fields", "_asdict")  # a NamedTuple's public methods
    ]


@pytest.mark.parametrize(
    "path", sorted(p for p in (ROOT / "bioqa").rglob("*.py") if p.name != "compat.py"), ids=lambda p: p.name
)
def test_no_module_but_compat_touches_a_private_attribute(path):
    assert private_uses(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_scan_sees_private_uses():
    tree = ast.parse("config._compile_all_devices = True\nself._x = 1\nopts._replace(a=1)\nsuper()._save_checkpoint()")
    assert private_uses(tree) == [("config._compile_all_devices", 1)]


def test_the_trainer_overrides_exactly_the_private_methods_compat_checks():
    from bioqa.train.trainer import BioQATrainer

    overridden = {
        name
        for name, value in vars(BioQATrainer).items()
        if name.startswith("_")
        and not name.startswith("__")
        and callable(value)
        and hasattr(transformers.Trainer, name)
    }
    assert overridden == set(compat.OVERRIDDEN)
