"""load_models.py run as a user runs it: a subprocess on a tiny model, its files, its errors."""

import json

import pytest

import metrics_utils
from bioqa.devices import cpu_has_native_bf16
from helpers import TRAIN, quick_training, read_jsonl, run_cli, run_flags


def test_run_writes_every_output(trained):
    out, result = trained
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "run_config.yaml",
        "metrics.json",
        "run_manifest.json",
    ):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "eval-final.jsonl",
        "eval-step-16.jsonl",
        "eval-step-24.jsonl",
        "eval-step-8.jsonl",
    ]
    assert (
        "device cpu" in result.stderr
        and "LoRA:" in result.stderr
        and "data: train 48, validation 6, test 6" in result.stderr
    )


def test_generation_metrics_are_logged_at_each_evaluation(trained):
    out, _ = trained
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert [e["step"] for e in evals] == [8, 16, 24]
    for entry in evals:
        for name in ("eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_rougeLsum", "eval_bleu", "eval_meteor"):
            assert 0.0 <= entry[name] <= (100.0 if name == "eval_bleu" else 1.0), name
    rows = read_jsonl(out / "predictions" / "eval-step-24.jsonl")
    assert len(rows) == 6 and set(rows[0]) >= {"id", "question", "reference", "prediction", "rougeL", "bleu", "meteor"}
    assert sum(r["rougeL"] for r in rows) / 6 == pytest.approx(evals[-1]["eval_rougeL"])
    # the evaluation after training (the best adapter) has its own file, matching metrics.json
    final = read_jsonl(out / "predictions" / "eval-final.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(r["rougeL"] for r in final) / 6 == pytest.approx(metrics["eval_rougeL"])


def test_generation_metrics_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [run] = (trained[0] / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"eval/loss", "eval/rougeL", "eval/bleu", "eval/meteor", "train/loss"} <= set(events.Tags()["scalars"])
    # three evaluations during training, then the final one of the best adapter (load_best_model_at_end)
    assert [e.step for e in events.Scalars("eval/rougeL")] == [8, 16, 24, 24]


def test_best_model_is_selected_on_eval_rougeL(trained):
    out, _ = trained
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    best = max(evals, key=lambda e: e["eval_rougeL"])  # first of equal maxima, as the Trainer keeps it
    assert state["best_metric"] == best["eval_rougeL"]
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_rougeL"] == pytest.approx(best["eval_rougeL"])  # the saved adapter is the best one
    # its evaluation during training stands for the final one: the same weights, not generated again
    assert f"the kept adapter's scores from step {best['step']}" in trained[1].stderr
    final, answers = (out / "predictions" / f"eval-{name}.jsonl" for name in ("final", f"step-{best['step']}"))
    assert final.read_text() == answers.read_text()


def test_saved_adapter_reloads_with_peft(trained, tiny_model_dir):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, _ = trained
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)
    saved = load_file(out / "adapter_model.safetensors")
    assert saved and any(torch.count_nonzero(t) for name, t in saved.items() if "lora_B" in name)
    assert model.peft_config["default"].r == 8


def test_manifest_and_resolved_config(trained, qa_file):
    from bioqa.recipe import parse_recipe

    out, _ = trained
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["device"]["device"] == "cpu" and manifest["seed"] == 7
    native = "bfloat16" if cpu_has_native_bf16() else "float32"  # the CPU's fast dtype, for training and generating
    assert manifest["device"]["weights_dtype"] == manifest["device"]["generation_dtype"] == native
    assert json.loads((out / "predict_metrics.json").read_text())["generation"]["dtype"] == native
    assert manifest["split_sizes"] == {"train": 48, "validation": 6, "test": 6}
    assert manifest["data_sources"]["train"]["sha256"] and manifest["packages"]["transformers"]
    assert manifest["started_at"] <= manifest["finished_at"]
    # the final ROUGE-L is the final evaluation's answers scored again, and what metrics.json says
    final = read_jsonl(out / manifest["final_evaluation"])
    rescored = metrics_utils.compute_metrics([r["prediction"] for r in final], [r["reference"] for r in final])
    assert manifest["final_metrics"]["eval_rougeL"] == pytest.approx(rescored["rougeL"])
    assert json.loads((out / "metrics.json").read_text())["eval_rougeL"] == manifest["final_metrics"]["eval_rougeL"]
    opts = parse_recipe(["--config", str(out / "run_config.yaml")])
    assert opts.data.train_file == str(qa_file) and opts.training.max_steps == 24 and opts.adapter.lora_r == 8


def test_resume_from_latest_checkpoint(trained, tiny_model_dir, qa_file, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained[0], out)
    shutil.rmtree(out / "checkpoint-24")  # as if stopped after step 16
    common = [
        *run_flags(tiny_model_dir, qa_file, out),
        "--resume_from_checkpoint",
        "latest",
        "--load_best_model_at_end",
        "--metric_for_best_model",
        "eval_rougeL",
    ]
    longer = run_cli(*common, *[a if a != "24" else "32" for a in TRAIN])  # another run than the one it continues
    assert longer.returncode == 2 and "--max_steps 24 -> 32" in longer.stderr, longer.stderr[-3000:]
    result = run_cli(*common, *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    assert state["global_step"] == 24
    assert [e["step"] for e in state["log_history"] if "eval_loss" in e] == [8, 16, 24]
    assert json.loads((out / "run_manifest.json").read_text())["resumed_from"].endswith("checkpoint-16")


def test_help_lists_every_option_with_its_help():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--model_name_or_path",
        "--train_file",
        "--question_field",
        "--lora_r",
        "--use_dora",
        "--generation_eval_samples",
        "--config",
        "--learning_rate",
        "--precision",
        "--overwrite_output_dir",
    ):
        assert flag in result.stdout, flag


def test_trained_adapter_merges_with_probes_from_its_predictions(merged):
    folder, _ = merged
    report = json.loads((folder / "merge_report.json").read_text())
    assert report["verification"]["passed"] and report["verification"]["probes"] == 4
    assert json.loads((folder / "run_manifest.json").read_text())["seed"] == 7


def test_same_seed_same_adapter(tiny_model_dir, qa_file, tmp_path):
    from safetensors.torch import load_file

    args = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--train_file",
        str(qa_file),
        *quick_training(6),
    ]
    for name in ("a", "b"):
        assert run_cli(*args, "--output_dir", str(tmp_path / name)).returncode == 0
    a, b = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("a", "b"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)  # LoRA init and data order seeded


def test_padding_free_training_follows_the_padded_run(tiny_model_dir, qa_file, tmp_path):
    """--padding_free changes how batches are laid out, not what is learned: the same losses step by step."""
    args = ["--max_steps", "4", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]
    args += ["--report_to", "none", "--precision", "fp32"]
    losses = {}
    for name, extra in (("padded", []), ("packed", ["--padding_free"])):
        out = tmp_path / name
        result = run_cli(*run_flags(tiny_model_dir, qa_file, out), *args, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        losses[name] = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses["packed"]) == 4 and losses["packed"] == pytest.approx(losses["padded"], rel=1e-3)


def test_no_validation_pass_that_was_not_asked_for(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    """--eval_strategy no --no_generation_eval: the validation split is neither tokenised nor evaluated at the end."""
    import bioqa.cli.train as train_script
    from bioqa.train.trainer import BioQATrainer

    def evaluate(*args, **kwargs):
        raise AssertionError("an evaluation that was not asked for")

    monkeypatch.setattr(BioQATrainer, "evaluate", evaluate)
    out = tmp_path / "out"
    flags = ["--model_name_or_path", str(tiny_model_dir), "--train_file", str(qa_file), "--output_dir", str(out)]
    steps = ["--max_steps", "2", "--eval_strategy", "no", "--no_generation_eval", "--report_to", "none"]
    assert train_script.main([*flags, *steps, "--do_train"]) == 0
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert set(manifest["truncation"]) == {"train"} and not any(
        k.startswith("eval_") for k in manifest["final_metrics"]
    )


def test_early_stopping_ends_training_after_the_evaluations_without_improvement(tiny_model_dir, qa_file, tmp_path):
    """Patience 1: the evaluation at step 8 does not beat step 4's, so training stops there, not at step 40. The loss
    falls as training goes on; asking for a greater eval_loss makes every later evaluation one without improvement."""
    out = tmp_path / "out"
    result = run_cli(
        *run_flags(tiny_model_dir, qa_file, out),
        *quick_training(40, save_steps=4),
        *("--eval_strategy", "steps", "--eval_steps", "4", "--no_generation_eval", "--load_best_model_at_end"),
        *("--metric_for_best_model", "eval_loss", "--greater_is_better", "true", "--early_stopping_patience", "1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry and "step" in entry]
    assert state["global_step"] == 8 and [e["step"] for e in evaluations][:2] == [4, 8]
    assert evaluations[1]["eval_loss"] < evaluations[0]["eval_loss"]  # no improvement, as asked
    assert state["best_model_checkpoint"].endswith("checkpoint-4")
