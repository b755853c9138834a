"""bioqa-benchmark: lm-evaluation-harness run for real (no mock) on a tiny model and a local task from a labelled
file, with and without an adapter; every question kept, accuracy with its interval, lm-eval's own acc beside it."""

import json

import pytest

from helpers import read_jsonl, run_cli
from tiny_models import make_adapter

DECISIONS = ["yes", "no", "maybe"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("benchmark") / "decisions.jsonl"
    rows = [
        {"id": f"q{i}", "question": f"Does drug {i} lower glucose?", "decision": DECISIONS[i % 3]} for i in range(12)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def benchmark(*args: str):
    return run_cli("bioqa.cli.benchmark", *args, script="-m")


FLAGS = ["--tasks", "local", "--label_field", "decision", "--bootstrap_samples", "200", "--generation_dtype", "fp32"]


@pytest.fixture(scope="module")
def base_run(tiny_model_dir, labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark-run") / "base"
    result = benchmark(
        "--model_name_or_path", str(tiny_model_dir), *FLAGS, "--test_file", str(labelled), "--output_dir", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_a_local_task_runs_through_lm_eval_and_keeps_every_question(base_run, tiny_model_dir):
    from transformers import AutoTokenizer

    from bioqa.data.prompts import prompt_format, prompt_text
    from bioqa.settings import PromptArguments

    out, result = base_run
    rows = read_jsonl(out / "benchmark_predictions.jsonl")
    assert [row["id"] for row in rows] == [f"q{i}" for i in range(12)] and {row["task"] for row in rows} == {"local"}
    labels = sorted(DECISIONS)  # the label set as training reads it: the distinct values, sorted
    for i, row in enumerate(rows):
        assert row["gold"] == DECISIONS[i % 3] and len(row["logliks"]) == 3
        assert row["chosen"] == labels[max(range(3), key=row["logliks"].__getitem__)]
        assert row["correct"] == (row["chosen"] == row["gold"])
    results = json.loads((out / "benchmark.json").read_text())
    score = results["scores"]["local"]
    accuracy = sum(row["correct"] for row in rows) / 12
    assert score["accuracy"] == pytest.approx(accuracy) == results["lm_eval"]["bioqa_local"]["acc,none"]
    assert score["questions"] == 12 and score["ci95"][0] <= accuracy <= score["ci95"][1]
    assert f"| local | 12 | {accuracy:.3f} |" in result.stdout and (out / "benchmark.md").is_file()
    # lm-eval was asked the toolkit's own prompt, and offered each label as training writes it
    task = read_jsonl(out / "tasks" / "bioqa_local.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = prompt_format(tokenizer, PromptArguments())
    assert task[0]["prompt"] == prompt_text(tokenizer, fmt, "Does drug 0 lower glucose?", "")
    assert task[0]["choices"] == [fmt.answer_before + label for label in labels]
    assert str(out / "tasks" / "bioqa_local.jsonl") in (out / "tasks" / "bioqa_local.yaml").read_text()


def test_lm_evals_acc_and_the_toolkits_loglik_scoring_choose_the_same_option(base_run, tiny_model_dir):
    """One definition of log-likelihood choice: the sum of the label's token log-probabilities after the prompt.
    lm-eval moves the prompt's trailing newline into every continuation, which adds the same number to each label
    of a question: the choice cannot differ."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bioqa.data.prompts import label_continuations, prompt_format, prompt_ids
    from bioqa.generate.loglik import label_logliks
    from bioqa.settings import PromptArguments

    out, _ = base_run
    rows = read_jsonl(out / "benchmark_predictions.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = prompt_format(tokenizer, PromptArguments())
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    labels = tuple(sorted(DECISIONS))
    continuations = list(label_continuations(tokenizer, fmt, labels, "label").values())
    prompts = [prompt_ids(tokenizer, fmt, f"Does drug {i} lower glucose?", "") for i in range(12)]
    for row, ours in zip(rows, label_logliks(model, tokenizer, prompts, continuations), strict=True):
        assert row["chosen"] == labels[max(range(3), key=ours.__getitem__)]
        offsets = [theirs - mine for theirs, mine in zip(row["logliks"], ours, strict=True)]
        assert max(offsets) - min(offsets) < 1e-3  # the same per question: the newline's log-probability


def test_an_adapter_is_benchmarked_on_its_base_and_results_are_never_overwritten(
    base_run, tiny_model_dir, labelled, tmp_path
):
    out, _ = base_run
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    data = ["--test_file", str(labelled)]
    tuned = benchmark(
        "--adapter_name_or_path",
        str(adapter),
        "--model_name_or_path",
        str(tiny_model_dir),
        *FLAGS,
        *data,
        "--output_dir",
        str(tmp_path / "tuned"),
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    tuned_rows = read_jsonl(tmp_path / "tuned" / "benchmark_predictions.jsonl")
    assert [row["logliks"] for row in tuned_rows] != [
        row["logliks"] for row in read_jsonl(out / "benchmark_predictions.jsonl")
    ]
    assert json.loads((tmp_path / "tuned" / "benchmark.json").read_text())["adapter"] == str(adapter)
    again = benchmark("--model_name_or_path", str(tiny_model_dir), *FLAGS, *data, "--output_dir", str(out))
    assert again.returncode == 2 and "is not empty; pass --overwrite" in again.stderr
    # the forgetting check: the two result files compared question by question
    files = [str(folder / "benchmark_predictions.jsonl") for folder in (out, tmp_path / "tuned")]
    report = tmp_path / "report"
    compared = run_cli(
        "bioqa.comparison", "--baseline", files[0], "--candidate", files[1], "--output_dir", str(report), script="-m"
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    base_rows = read_jsonl(out / "benchmark_predictions.jsonl")
    local = json.loads((report / "comparison.json").read_text())["benchmark"]["local"]
    accuracy = [sum(row["correct"] for row in rows) / 12 for rows in (base_rows, tuned_rows)]
    assert (local["baseline"], local["candidate"]) == pytest.approx(accuracy)
    assert local["difference"] == pytest.approx(accuracy[1] - accuracy[0]) and local["questions"] == 12
    to_right = [f"local/{b['id']}" for b, c in zip(base_rows, tuned_rows) if c["correct"] and not b["correct"]]
    assert local["flipped"]["to_right"] == to_right and local["mcnemar"]["candidate_only_right"] == len(to_right)
    text = (report / "report.md").read_text()
    assert "## Questions that flipped" in text and f"| local | 12 | {accuracy[0]:.3f} | {accuracy[1]:.3f} |" in text


@pytest.mark.parametrize(
    ("tasks", "fragment"),
    [
        ("pubmedqaa", "--tasks pubmedqaa is no lm-evaluation-harness task or group (did you mean 'pubmedqa'"),
        ("local,medmcqa", "--tasks medmcqa loads its questions from the Hugging Face Hub, which is unreachable"),
    ],
)
def test_an_unknown_task_or_a_hub_task_offline_is_one_line(tasks, fragment, tiny_model_dir, tmp_path):
    result = benchmark(
        "--model_name_or_path", str(tiny_model_dir), "--tasks", tasks, "--output_dir", str(tmp_path / "o")
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and fragment in errors[0]
    assert not (tmp_path / "o").exists()
