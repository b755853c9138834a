"""`python -m bioqa.score` from the shell: the same numbers as metrics_utils, multi-reference included."""

import json
import subprocess
import sys

import pytest

import metrics_utils
from helpers import ROOT

PREDICTIONS = ["insulin lowers blood glucose", "the liver makes bile"]
REFERENCES_A = ["insulin lowers the blood glucose level", "bile is made by the liver"]
REFERENCES_B = ["it reduces glucose in the blood", "the liver produces bile"]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_scores_text_files_like_metrics_utils_with_two_references(tmp_path):
    command = [
        sys.executable,
        "-m",
        "bioqa.score",
        "--predictions",
        write_lines(tmp_path / "p.txt", PREDICTIONS),
        "--references",
        write_lines(tmp_path / "a.txt", REFERENCES_A),
        write_lines(tmp_path / "b.txt", REFERENCES_B),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = metrics_utils.compute_metrics(PREDICTIONS, [list(pair) for pair in zip(REFERENCES_A, REFERENCES_B)])
    single = metrics_utils.compute_metrics(PREDICTIONS, REFERENCES_A)
    for name in ("rouge1", "rougeL", "bleu", "meteor"):
        assert printed[name] == pytest.approx(expected[name]), name
    assert printed["bleu"] != pytest.approx(single["bleu"])  # the second reference counted


def test_lines_split_on_newlines_only_and_a_bom_is_ignored(tmp_path):
    from bioqa.cli.score import read_lines

    (tmp_path / "p.txt").write_bytes("\ufeffinsulin\u2028lowers glucose\r\nthe liver\x85makes bile\n".encode("utf-8"))
    assert read_lines(str(tmp_path / "p.txt")) == ["insulin\u2028lowers glucose", "the liver\x85makes bile"]
