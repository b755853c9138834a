"""Several seeds as one result: `load_models.py --seeds` trains one run per seed and summarises them, a study resumes
and is replaced like a run, and `bioqa-compare` compares two studies over seeds."""

import json
import statistics

import pytest

import bioqa
from helpers import quick_training, read_jsonl, run_cli, run_flags
from tiny_models import write_jsonl, yes_no_rows

# Labels scored by log-likelihood: every run answers, with no generation to wait for, and accuracy varies by seed.
LABELLED = [
    *("--label_field", "decision", "--labels", "yes", "no", "--label_scoring", "loglik"),
    *("--split_ratios", "0.7", "0.1", "0.2", "--do_train", "--do_predict"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("seeds") / "yes_no.jsonl", yes_no_rows(60))


def study(model, data, out, *more):
    return run_cli(*run_flags(model, data, out), *LABELLED, *quick_training(6), *more)


@pytest.fixture(scope="module")
def studies(tiny_model_dir, data, tmp_path_factory):
    """Two recipes (learning rates), two seeds each."""
    folder = tmp_path_factory.mktemp("studies")
    for name, rate in (("a", "1e-2"), ("b", "3e-2")):
        result = study(tiny_model_dir, data, folder / name, "--seeds", "1", "2", "--learning_rate", rate)
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_a_study_trains_each_seed_as_its_own_run_and_summarises_them(studies, tiny_model_dir, data, tmp_path):
    out = studies / "a"
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["split"] == "test"
    own = {}
    for seed in (1, 2):
        run = out / f"seed-{seed}"
        assert f"seed: {seed}\n" in (run / "run_config.yaml").read_text()
        own[seed] = {k: v["score"] for k, v in json.loads((run / "predict_metrics.json").read_text())["scores"].items()}
    assert summary["scores"] == {str(seed): scores for seed, scores in own.items()}
    for name in own[1]:
        assert summary["mean"][name] == pytest.approx(statistics.fmean([own[1][name], own[2][name]]))
        assert summary["sd"][name] == pytest.approx(statistics.stdev([own[1][name], own[2][name]]))
    weights = [(out / f"seed-{s}" / "adapter_model.safetensors").read_bytes() for s in (1, 2)]
    assert weights[0] != weights[1]
    # seed 1 of the study is the run `--seed 1` trains alone
    alone = study(tiny_model_dir, data, tmp_path / "alone", "--seed", "1", "--learning_rate", "1e-2")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert (tmp_path / "alone" / "adapter_model.safetensors").read_bytes() == weights[0]
    assert "| **mean** |" in (out / "seeds.md").read_text()


def test_a_study_resumes_keeping_finished_seeds_and_is_replaced_only_with_overwrite(tiny_model_dir, data, tmp_path):
    out = tmp_path / "study"
    assert study(tiny_model_dir, data, out, "--seeds", "1", "2").returncode == 0
    first = (out / "seed-1" / "adapter_model.safetensors").stat().st_mtime_ns
    again = study(tiny_model_dir, data, out, "--seeds", "3")
    assert again.returncode == 2 and "is not empty" in again.stderr and "resume_from_checkpoint latest" in again.stderr
    more = study(tiny_model_dir, data, out, "--seeds", "1", "2", "3", "--resume_from_checkpoint", "latest")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "seed 1: the run in" in more.stderr and "complete; kept" in more.stderr
    assert (out / "seed-1" / "adapter_model.safetensors").stat().st_mtime_ns == first
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [1, 2, 3]
    (out / "notes.txt").write_text("mine")
    refused = study(tiny_model_dir, data, out, "--seeds", "4", "--overwrite_output_dir")
    assert refused.returncode == 2 and "notes.txt" in refused.stderr
    (out / "notes.txt").unlink()
    replaced = study(tiny_model_dir, data, out, "--seeds", "4", "--overwrite_output_dir")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-4"]


def test_two_studies_are_compared_over_seeds(studies, tmp_path):
    report = tmp_path / "report"
    result = run_cli(
        "bioqa.comparison",
        *("--baseline", str(studies / "a"), "--candidate", str(studies / "b"), "--output_dir", str(report)),
        script="-m",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["runs"] == {"baseline": 2, "candidate": 2}
    row = comparison["metrics"]["loglik_accuracy"]
    for side, name in (("baseline", "a"), ("candidate", "b")):
        own = []
        for seed in (1, 2):
            rows = read_jsonl(studies / name / f"seed-{seed}" / "predictions.jsonl")
            own.append(sum(r["loglik_label"] == r["label"] for r in rows) / len(rows))
        assert [r["loglik_accuracy"] for r in comparison["per_run"][side]] == pytest.approx(own)
        assert row[side] == pytest.approx(statistics.fmean(own))
    assert row["difference"] == pytest.approx(row["candidate"] - row["baseline"])
    assert [r["seed"] for r in comparison["runs_compared"]["baseline"]] == [1, 2]
    text = (report / "report.md").read_text()
    assert "two-level bootstrap" in text and "## Each run" in text
    in_python = bioqa.compare(bioqa.Seeds(studies / "a"), bioqa.Seeds(studies / "b"))  # what finetune_seeds returns
    assert in_python.metrics == comparison["metrics"]
