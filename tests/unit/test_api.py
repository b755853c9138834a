"""The Python API: `import bioqa` loads nothing; `bioqa.compare` and `bioqa.score` give what the commands give."""

import json
import subprocess
import sys

import pytest

import bioqa
import metrics_utils
from helpers import ROOT

QUESTIONS = [f"Does drug {i} lower glucose?" for i in range(12)]
REFERENCES = [f"Drug {i} lowers fasting glucose by {i % 5} percent in adults." for i in range(12)]


def rows(predictions):
    return [
        {"id": str(i), "question": q, "reference": r, "prediction": p}
        for i, (q, r, p) in enumerate(zip(QUESTIONS, REFERENCES, predictions))
    ]


BASELINE = rows([f"Drug {i} may help." for i in range(12)])
CANDIDATE = rows([f"Drug {i} lowers glucose by {i % 5} percent." for i in range(12)])


@pytest.fixture
def files(tmp_path):
    paths = []
    for name, data in (("baseline", BASELINE), ("candidate", CANDIDATE)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in data))
        paths.append(path)
    return paths


def test_importing_the_package_loads_nothing_and_names_resolve():
    code = "import sys, bioqa; print(sorted(m for m in ('torch', 'transformers', 'bioqa.api') if m in sys.modules))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
    assert set(bioqa.__all__) == set(bioqa._EXPORTS) and all(getattr(bioqa, name) for name in bioqa.__all__)
    with pytest.raises(AttributeError, match="no attribute 'finetune_everything'"):
        bioqa.finetune_everything  # noqa: B018


def test_compare_writes_what_the_command_writes(files, tmp_path):
    baseline, candidate = files
    result = bioqa.compare(baseline, candidate, tmp_path / "api", bootstrap_samples=200, seed=3)
    command = [sys.executable, "-m", "bioqa.comparison", "--baseline", str(baseline), "--candidate", str(candidate)]
    command += ["--output_dir", str(tmp_path / "cli"), "--bootstrap_samples", "200", "--seed", "3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "api" / "comparison.json").read_text())
    assert written == json.loads((tmp_path / "cli" / "comparison.json").read_text())
    assert result.metrics == written["metrics"] and result.num_examples == 12
    assert result.output_dir == tmp_path / "api" and str(result) in done.stdout
    report = (tmp_path / "api" / "report.md").read_text()
    assert result.table in report and result.metrics["rougeL"]["difference"] > 0


def test_rows_in_memory_compare_the_same_and_write_nothing(files, tmp_path):
    in_memory = bioqa.compare(BASELINE, CANDIDATE, bootstrap_samples=200, seed=3)
    from_files = bioqa.compare(*files, bootstrap_samples=200, seed=3)
    assert in_memory.metrics == from_files.metrics and in_memory.output_dir is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.jsonl", "candidate.jsonl"]
    rouge = metrics_utils.compute_metrics([r["prediction"] for r in CANDIDATE], REFERENCES)["rougeL"]
    assert in_memory.metrics["rougeL"]["candidate"] == pytest.approx(rouge)


def test_every_bad_setting_is_named_at_once_as_a_python_caller_spells_it(files):
    with pytest.raises(bioqa.InputError) as caught:
        bioqa.compare(*files, bootstrap_samples=0, examples_shown=-1)
    message = str(caught.value)
    assert "bootstrap_samples must be positive, got 0" in message and "examples_shown must be 0 or more" in message
    assert "--" not in message


def test_compare_refuses_files_about_other_questions(files):
    other = [{**row, "question": "Another question?"} if row["id"] == "4" else row for row in CANDIDATE]
    with pytest.raises(bioqa.InputError, match="id '4' has another question"):
        bioqa.compare(files[0], other)


def test_a_label_only_one_file_holds_compares_the_answers_alone():
    """A recipe that learns the decision against one that writes the answer only: their answers are compared; a label
    both files hold must agree."""
    labelled = [{**row, "label": "yes", "predicted_label": "yes"} for row in CANDIDATE]
    result = bioqa.compare(BASELINE, labelled, bootstrap_samples=100)
    assert "rougeL" in result.metrics and "accuracy" not in result.metrics and result.labels == {}
    relabelled = [{**row, "label": "no"} if row["id"] == "2" else row for row in labelled]
    with pytest.raises(bioqa.InputError, match="id '2' has another label"):
        bioqa.compare(relabelled, labelled)


def test_runs_over_seeds_are_compared_by_the_two_level_bootstrap(tmp_path):
    """Two runs per side, in memory and from files alike; with one run per side, the paired comparison."""
    from bioqa.evaluate.bootstrap import two_level_bootstrap

    def write(name, data):
        path = tmp_path / name / "predictions.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps(row) + "\n" for row in data))
        return path

    other = rows([f"Drug {i} lowers glucose." for i in range(12)])
    sides = [[write("a1", BASELINE), write("a2", other)], [write("b1", CANDIDATE), write("b2", other)]]
    result = bioqa.compare(*sides, tmp_path / "report", bootstrap_samples=200)
    scores = [
        [metrics_utils.score_predictions([r["prediction"] for r in data], REFERENCES) for data in side]
        for side in ([BASELINE, other], [CANDIDATE, other])
    ]
    expected = two_level_bootstrap(scores[0], scores[1], 200)["rougeL"]
    row = result.metrics["rougeL"]
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    assert row["baseline"] == pytest.approx((scores[0][0].corpus()["rougeL"] + scores[0][1].corpus()["rougeL"]) / 2)
    assert result.names == ("baseline", "candidate") and (tmp_path / "report" / "report.md").is_file()
    in_memory = bioqa.compare([BASELINE, other], [CANDIDATE, other], bootstrap_samples=200)  # lists of row lists
    assert in_memory.metrics == result.metrics


def test_score_is_compute_metrics_with_intervals():
    predictions = [(c if i % 2 else b)["prediction"] for i, (b, c) in enumerate(zip(BASELINE, CANDIDATE))]
    scores = bioqa.score(predictions, REFERENCES, bootstrap_samples=100, seed=1)
    expected = metrics_utils.compute_metrics(predictions, REFERENCES, bootstrap_samples=100, seed=1)
    assert scores == expected
    assert scores["rougeL_ci_low"] < scores["rougeL"] < scores["rougeL_ci_high"]


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    from tiny_models import make_adapter, make_base

    root = tmp_path_factory.mktemp("merge")
    base = make_base(root / "base")
    return base, make_adapter(base, root / "adapter")


def test_merge_writes_a_verified_model_and_finds_it_intact_the_second_time(base_and_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, adapter = base_and_adapter
    report = bioqa.merge(adapter, tmp_path / "merged")
    assert report.output_dir == tmp_path / "merged" and report.verification["passed"] is True
    assert report.report == json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    assert report.summary().startswith(f"merged model: {tmp_path / 'merged'} (in memory")
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    torch.testing.assert_close(merged(input_ids=ids).logits, reference.eval()(input_ids=ids).logits, atol=1e-4, rtol=0)
    again = bioqa.merge(adapter, tmp_path / "merged")
    assert again.already_merged and "every file intact; nothing to do (overwrite to redo)" in again.summary()


def test_merge_names_a_setting_it_does_not_have_and_a_bad_value_as_python_spells_it(base_and_adapter, tmp_path):
    _, adapter = base_and_adapter
    with pytest.raises(bioqa.InputError, match="bioqa.merge has no setting low_mem; the settings are base_model, "):
        bioqa.merge(adapter, tmp_path / "m", low_mem=True)
    with pytest.raises(bioqa.InputError, match="^max_shard_size lots is not a size"):
        bioqa.merge(adapter, tmp_path / "m", max_shard_size="lots")
    assert not (tmp_path / "m").exists()


def test_merge_keywords_are_the_merge_settings_with_their_defaults():
    """bioqa.merge spells its settings out for a reader's editor; they must stay MergeSettings' own."""
    import dataclasses
    import inspect

    from bioqa.merge_run import MergeSettings

    keywords = {
        name: parameter.default
        for name, parameter in inspect.signature(bioqa.merge).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    declared = {
        f.name: f.default for f in dataclasses.fields(MergeSettings) if f.name not in ("adapter_dir", "output_dir")
    }
    assert keywords == declared


def test_a_comparison_replaces_only_its_own_earlier_output(files, tmp_path):
    out = tmp_path / "report"
    first = bioqa.compare(*files, out, bootstrap_samples=100)
    with pytest.raises(bioqa.InputError, match="is not empty; pass overwrite to replace it"):
        bioqa.compare(*files, out, bootstrap_samples=100)
    again = bioqa.compare(*reversed(files), out, bootstrap_samples=100, overwrite=True)
    assert again.metrics["rougeL"]["difference"] == pytest.approx(-first.metrics["rougeL"]["difference"])
    assert json.loads((out / "comparison.json").read_text())["baseline"] == str(files[1])
    (out / "my_notes.md").write_text("mine")
    with pytest.raises(bioqa.InputError, match="my_notes.md is not one of the files it wrote"):
        bioqa.compare(*files, out, bootstrap_samples=100, overwrite=True)
    assert (out / "my_notes.md").read_text() == "mine" and (out / "report.md").is_file()


def test_a_comparison_failing_while_it_writes_leaves_the_earlier_one(files, tmp_path, monkeypatch):
    from bioqa.evaluate import report

    out = tmp_path / "report"
    bioqa.compare(*files, out, bootstrap_samples=100)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "plot_distributions", full_disk)
    with pytest.raises(OSError, match="No space left"):
        bioqa.compare(*reversed(files), out, bootstrap_samples=100, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.jsonl", "candidate.jsonl", "report"]
