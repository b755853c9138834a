"""bioqa.finetune and bioqa.predict in one process, as a notebook calls them: the files load_models.py writes,
the values a notebook reads, and errors that name settings as Python does."""

import json

import pytest
import yaml

import bioqa
from helpers import read_jsonl, run_cli, run_flags

ANSWERS = {"max_predict_samples": 4, "generation_max_new_tokens": 8, "report_to": "none"}


def recipe_for(model, data, out, **changes) -> bioqa.Recipe:
    return bioqa.Recipe.defaults(model_name_or_path=str(model), train_file=str(data), output_dir=str(out), **changes)


def test_predict_writes_what_the_command_writes(tiny_model_dir, qa_file, tmp_path):
    predictions = bioqa.predict(recipe_for(tiny_model_dir, qa_file, tmp_path / "api", **ANSWERS))
    flags = [f"--{name}={value}" for name, value in ANSWERS.items()]
    done = run_cli(*run_flags(tiny_model_dir, qa_file, tmp_path / "cli"), "--do_predict", *flags)
    assert done.returncode == 0, done.stderr[-2000:]
    command_rows = read_jsonl(tmp_path / "cli" / "predictions.jsonl")
    assert [r["prediction"] for r in predictions.rows] == [r["prediction"] for r in command_rows]
    summary = json.loads((tmp_path / "cli" / "predict_metrics.json").read_text())
    assert predictions.scores == summary["scores"] and len(predictions.rows) == 4
    configs = [yaml.safe_load((tmp_path / side / "run_config.yaml").read_text()) for side in ("api", "cli")]
    assert {k for k in configs[0] if configs[0][k] != configs[1][k]} == {"output_dir"}
    manifest = json.loads((tmp_path / "api" / "run_manifest.json").read_text())
    assert manifest["command"] == ["bioqa.predict"] and "| ROUGE-L |" in str(predictions)


def test_finetune_returns_the_run_and_its_pieces_feed_the_rest_of_the_api(tiny_model_dir, qa_file, tmp_path):
    steps = {"max_steps": 4, "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 2}
    best = {"load_best_model_at_end": True, "metric_for_best_model": "eval_rougeL", "per_device_train_batch_size": 8}
    recipe = recipe_for(tiny_model_dir, qa_file, tmp_path / "run", do_predict=True, **steps, **best, **ANSWERS)
    run = bioqa.finetune(recipe)
    assert run.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    final = read_jsonl(tmp_path / "run" / run.manifest["final_evaluation"])
    assert run.validation["scores"]["rougeL"]["score"] == pytest.approx(run.metrics["eval_rougeL"])
    assert run.validation["num_examples"] == len(final) == 6
    assert run.validation["scores"]["rougeL"]["ci95"] is None  # below bootstrap.MIN_EXAMPLES: no interval
    assert run.best_checkpoint in {str(tmp_path / "run" / f"checkpoint-{step}") for step in (2, 4)}
    assert run.manifest["command"] == ["bioqa.finetune"] and run.config["max_steps"] == 4
    assert len(run.predictions.rows) == 4 and "eval_rougeL=" in repr(run)
    again = bioqa.predict(recipe.replace(output_dir=str(tmp_path / "again")), adapter=run)
    assert again.summary["model"]["adapter"] == str(tmp_path / "run")
    comparison = bioqa.compare(again, run.predictions)
    assert comparison.num_examples == 4


def test_python_callers_see_settings_by_name(tiny_model_dir, qa_file, tmp_path):
    recipe = recipe_for(tiny_model_dir, qa_file, tmp_path / "out")
    with pytest.raises(bioqa.InputError, match=r"^2 problems: lora_r must be positive, got 0 \| learning_rate"):
        bioqa.finetune(recipe.replace(lora_r=0, learning_rate=-1.0))
    with pytest.raises(bioqa.InputError, match=r"unknown key 'lora_rank'; did you mean .*'lora_r'"):
        bioqa.Recipe.from_yaml(_write(tmp_path / "run.yaml", "lora_rank: 8\n"))
    with pytest.raises(bioqa.InputError, match=r"see bioqa\.Recipe\.help\(\)"):
        bioqa.Recipe.from_yaml(_write(tmp_path / "run.yaml", "lora_r: [1, 2]\n"))
    assert not (tmp_path / "out").exists()
    assert "--lora_r LORA_R" in bioqa.Recipe.help()


def _write(path, text):
    path.write_text(text)
    return path


def test_a_failed_training_gives_the_signal_handlers_back(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    """In a notebook the kernel lives on after a failure: Ctrl-C must interrupt again, not be swallowed."""
    import signal

    from bioqa.train.trainer import BioQATrainer

    def fails(*args, **kwargs):
        raise RuntimeError("a step that fails")

    monkeypatch.setattr(BioQATrainer, "training_step", fails)
    before = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    recipe = recipe_for(tiny_model_dir, qa_file, tmp_path / "out", max_steps=2, eval_strategy="no", **ANSWERS)
    with pytest.raises(RuntimeError, match="a step that fails"):
        bioqa.finetune(recipe.replace(save_strategy="no", generation_eval=False))
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == before


def test_importing_the_score_module_leaves_bioqa_score_callable():
    """`python -m bioqa.score` is a module of that name; imported, it replaces the function's attribute."""
    import importlib

    importlib.import_module("bioqa.score")
    scores = bioqa.score(["Metformin lowers glucose."], ["Metformin lowers glucose."], metrics=("rouge",))
    assert scores["rougeL"] == pytest.approx(1.0) and "finetune" in dir(bioqa)


def test_a_metric_registered_in_a_notebook_reaches_every_output(tiny_model_dir, qa_file, tmp_path):
    """Registered once, a metric is logged by the Trainer, kept in the model card, the prediction rows and
    predict_metrics.json, and compared with its interval, like a built-in."""
    import metrics_utils

    def answer_words(prediction, references):
        return float(len(prediction.split()))

    metrics_utils.register_metric(
        metrics_utils.mean_metric("answer_words", answer_words, title="Answer words", top=100)
    )
    try:
        chosen = {"eval_metrics": ["rouge", "token_f1", "answer_words"], "metric_for_best_model": "eval_answer_words"}
        steps = {"max_steps": 2, "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 2}
        both = dict(**ANSWERS, **chosen, load_best_model_at_end=True)
        run = bioqa.finetune(recipe_for(tiny_model_dir, qa_file, tmp_path / "run", do_predict=True, **steps, **both))
        zero_shot = bioqa.predict(recipe_for(tiny_model_dir, qa_file, tmp_path / "zero", **ANSWERS, **chosen))
        comparison = bioqa.compare(zero_shot, run.predictions, output_dir=tmp_path / "cmp")
    finally:
        metrics_utils.unregister_metric("answer_words")
    final = read_jsonl(tmp_path / "run" / run.manifest["final_evaluation"])
    assert run.metrics["eval_answer_words"] == pytest.approx(sum(len(r["prediction"].split()) for r in final) / 6)
    assert "| Answer words |" in (tmp_path / "run" / "README.md").read_text()
    for predictions in (zero_shot, run.predictions):
        words = [len(row["prediction"].split()) for row in predictions.rows]
        assert [row["answer_words"] for row in predictions.rows] == words
        assert predictions.scores["answer_words"]["score"] == pytest.approx(sum(words) / 4)
    assert "meteor" not in zero_shot.rows[0] and "token_f1" in zero_shot.rows[0]
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["metrics"]
    assert table["answer_words"]["baseline"] == pytest.approx(zero_shot.scores["answer_words"]["score"])
    assert table["answer_words"]["candidate"] == pytest.approx(run.predictions.scores["answer_words"]["score"])
    assert {"rougeL", "meteor", "token_f1"} <= set(table)  # the defaults, and what either file was scored with
    assert "| answer_words (0-100) |" in (tmp_path / "cmp" / "report.md").read_text()
    assert comparison.num_examples == 4
