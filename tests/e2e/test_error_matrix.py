"""Every bad input the command-line tools handle (docs/ERRORS.md lists the same rows): run as a user
would, each must exit non-zero with one `error:` line naming the problem, no traceback, and leave
the output folder as it was."""

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from bioqa.io.inventory import record
from helpers import ROOT, fake_nvidia_smi, run_cli
from tiny_models import make_adapter, make_base

ERRORS_DOC = ROOT / "docs" / "ERRORS.md"
LOAD, MERGE = ["load_models.py"], ["merge_base_and_adapt_ft_models.py"]
COMPARE, SCORE = ["-m", "bioqa.comparison"], ["-m", "bioqa.score"]
BENCHMARK = ["-m", "bioqa.cli.benchmark"]


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def qa_line(question: str = "What does insulin do?", answer: str = "It lowers glucose.") -> str:
    return json.dumps({"question": question, "answer": answer}) + "\n"


def prediction_file(path: Path, ids: list[str]) -> str:
    return write(
        path,
        "".join(json.dumps({"id": i, "question": "q", "reference": "a b c", "prediction": "a b"}) + "\n" for i in ids),
    )


# Each row: id, the command (a function of the fixtures), the exit code, and the message fragment.
def rows(env) -> dict:
    t, model, data, out = env["tmp"], env["model"], env["data"], env["out"]
    train = ["--model_name_or_path", model, "--output_dir", out]
    return {
        "jsonl-bad-line": (
            LOAD + train + ["--train_file", write(t / "bad.jsonl", qa_line() + '{"question": "q", \n')],
            2,
            "line 2 is not valid JSON",
        ),
        "not-utf8": (
            LOAD
            + train
            + ["--train_file", write(t / "latin.jsonl", '{"question": "caf\xe9", "answer": "a"}\n'.encode("latin-1"))],
            2,
            "is not UTF-8 text",
        ),
        "csv-missing-column": (
            LOAD + train + ["--train_file", write(t / "d.csv", "question,response\nq,a\n")],
            2,
            "has no field 'answer'; its fields are question, response; set --answer_field",
        ),
        "unreadable-file": (
            LOAD + train + ["--train_file", "/proc/sys/vm/compact_memory", "--data_format", "jsonl"],
            2,
            "cannot read /proc/sys/vm/compact_memory",
        ),
        "data-file-is-directory": (
            LOAD + train + ["--train_file", env["dir"]],
            2,
            "is a directory; give the file inside it",
        ),
        "missing-data-file": (
            LOAD + train + ["--train_file", str(t / "nope.jsonl")],
            2,
            "does not exist; check the path",
        ),
        "all-answers-empty": (
            LOAD + train + ["--train_file", write(t / "e.jsonl", qa_line(answer="") * 5)],
            2,
            "answers in the train split are empty",
        ),
        "empty-train-split": (
            LOAD + train + ["--train_file", data, "--max_train_samples", "0"],
            2,
            "the training split is empty",
        ),
        "empty-test-split": (
            LOAD + train + ["--train_file", data, "--do_predict", "--split_ratios", "1", "0", "0"],
            2,
            "--do_predict: the test split is empty",
        ),
        "empty-validation-split": (
            LOAD + train + ["--train_file", data, "--split_ratios", "0.9", "0", "0.1"],
            2,
            "the validation split is empty but --eval_strategy is epoch; give --validation_file",
        ),
        "yaml-typo-key": (
            LOAD + train + ["--train_file", data, "--config", write(t / "typo.yaml", "lora_rnk: 8\n")],
            2,
            "unknown key 'lora_rnk'",
        ),
        "yaml-wrong-type": (
            LOAD + train + ["--train_file", data, "--config", write(t / "type.yaml", "lora_r: eight\n")],
            2,
            "invalid int value: 'eight'",
        ),
        "contradictory-flags": (
            LOAD + train + ["--train_file", data, "--adapter_name_or_path", env["adapter"]],
            2,
            "--adapter_name_or_path is for --do_predict alone",
        ),
        "output-under-a-file": (
            LOAD
            + [
                "--model_name_or_path",
                model,
                "--train_file",
                data,
                "--output_dir",
                str(Path(write(t / "plain.txt", "x")) / "out"),
            ],
            2,
            "cannot be created",
        ),
        "output-not-writable": (
            LOAD + ["--model_name_or_path", model, "--train_file", data, "--output_dir", "/proc/bioqa-out"],
            2,
            "is not writable",
        ),
        "output-not-empty": (
            LOAD + ["--model_name_or_path", model, "--train_file", data, "--output_dir", env["full"]],
            2,
            "is not empty; pass --overwrite_output_dir",
        ),
        "unknown-model-offline": (
            LOAD + ["--model_name_or_path", "no-org/no-model", "--train_file", data, "--output_dir", out],
            2,
            "is not a local folder and the Hugging Face Hub did not provide it",
        ),
        "non-positive-values": (
            LOAD + train + ["--train_file", data, "--lora_r", "0", "--learning_rate", "-1"],
            2,
            "2 problems: --lora_r must be positive, got 0 | --learning_rate must be positive",
        ),
        "ratios-not-summing-to-1": (
            LOAD + train + ["--train_file", data, "--split_ratios", "0.5", "0.2", "0.2"],
            2,
            "must be three non-negative numbers",
        ),
        "target-modules-match-nothing": (
            LOAD + train + ["--train_file", data, "--lora_target_modules", "qkv_proj"],
            2,
            "match no linear layer of this model; candidates:",
        ),
        "4bit-without-cuda": (
            LOAD + train + ["--train_file", data, "--load_in_4bit"],
            2,
            "--load_in_4bit needs a CUDA GPU",
        ),
        "fp16-generation-on-cpu": (
            LOAD + train + ["--train_file", data, "--device", "cpu", "--generation_dtype", "fp16"],
            2,
            "--generation_dtype fp16 is not supported on CPU; use auto, bf16 or fp32",
        ),
        "unknown-flag": (
            LOAD + train + ["--train_file", data, "--lora_rank", "8"],
            2,
            "unrecognized arguments: --lora_rank 8",
        ),
        "resume-without-checkpoint": (
            LOAD + train + ["--train_file", data, "--resume_from_checkpoint", "latest"],
            2,
            "no checkpoint-* folder in",
        ),
        "merge-adapter-missing": (
            MERGE + ["--adapter_dir", str(t / "none")],
            2,
            "does not exist; give the output folder of a training run",
        ),
        "merge-not-an-adapter": (
            MERGE + ["--adapter_dir", model, "--output_dir", out],
            2,
            "is not an adapter: it has no adapter_config.json",
        ),
        "merge-other-architecture": (
            MERGE + ["--adapter_dir", env["adapter"], "--base_model", env["wide"], "--output_dir", out],
            2,
            "the adapter does not fit this base",
        ),
        "merge-corrupt-safetensors": (
            MERGE + ["--adapter_dir", env["corrupt"], "--output_dir", out],
            2,
            "the adapter file is damaged",
        ),
        "merge-output-exists": (
            MERGE + ["--adapter_dir", env["adapter"], "--output_dir", env["full"]],
            2,
            "is not empty; pass --overwrite to replace it",
        ),
        "merge-base-offline": (
            MERGE + ["--adapter_dir", env["adapter"], "--base_model", "no-org/no-model", "--output_dir", out],
            2,
            "offline, pass a local folder with --base_model",
        ),
        "compare-different-ids": (
            COMPARE
            + [
                "--baseline",
                prediction_file(t / "a.jsonl", ["1", "2"]),
                "--candidate",
                prediction_file(t / "b.jsonl", ["1", "3"]),
                "--output_dir",
                out,
            ],
            2,
            "id '2' is in zero-shot but not in fine-tuned",
        ),
        "compare-missing-file": (
            COMPARE + ["--baseline", str(t / "none.jsonl"), "--candidate", str(t / "none.jsonl"), "--output_dir", out],
            2,
            "does not exist; give a predictions.jsonl",
        ),
        "compare-bad-line": (
            COMPARE
            + [
                "--baseline",
                write(t / "c.jsonl", "{oops\n"),
                "--candidate",
                write(t / "d.jsonl", "{oops\n"),
                "--output_dir",
                out,
            ],
            2,
            "line 1 is not valid JSON",
        ),
        "score-line-counts-differ": (
            SCORE + ["--predictions", write(t / "p.txt", "a\nb\nc\n"), "--references", write(t / "r.txt", "a\nb\n")],
            2,
            "has 3 lines but the references have",
        ),
        "score-empty-files": (
            SCORE + ["--predictions", write(t / "p0.txt", ""), "--references", write(t / "r0.txt", "")],
            2,
            "predictions is empty: there is nothing to score",
        ),
        "score-missing-file": (
            SCORE + ["--predictions", str(t / "none.txt"), "--references", str(t / "none.txt")],
            2,
            "does not exist or is not a file",
        ),
        **promise_rows(env),
        **label_rows(env),
        **device_rows(env),
        **peft_rows(env),
        **conversation_rows(env),
        **benchmark_rows(env),
        **seeds_rows(env),
    }


def peft_rows(env) -> dict:
    model, data, out = env["model"], env["data"], env["out"]
    train = LOAD + ["--model_name_or_path", model, "--output_dir", out, "--train_file", data]
    return {
        "peft-unknown-method": (train + ["--peft_method", "loraa"], 2, "--peft_method loraa is not a peft method"),
        "peft-prompt-learning": (
            train + ["--peft_method", "prefix_tuning"],
            2,
            "--peft_method prefix_tuning is a prompt-learning method",
        ),
        "peft-unknown-option": (
            train + ["--peft_options", '{"rank": 8}'],
            2,
            "--peft_options key 'rank' is no field of peft's LoraConfig",
        ),
        "peft-option-set-twice": (
            train + ["--peft_options", '{"r": 8}'],
            2,
            "--peft_options sets r, which --lora_r sets; use that instead",
        ),
        "peft-lora-setting-for-other-method": (
            train + ["--peft_method", "ia3", "--lora_r", "8"],
            2,
            "--lora_r is a LoRA setting and --peft_method is ia3",
        ),
        "peft-init-needs-data": (
            train + ["--peft_options", '{"init_lora_weights": "eva"}'],
            2,
            "init_lora_weights eva needs a pass over data",
        ),
        "merge-prompt-learning-adapter": (
            MERGE + ["--adapter_dir", env["prefix"], "--output_dir", out],
            2,
            "a PREFIX_TUNING adapter is prompt learning",
        ),
        "merge-unmergeable-adapter": (
            MERGE + ["--adapter_dir", env["xlora"], "--output_dir", out],
            2,
            "peft cannot merge a XLORA adapter",
        ),
        "merge-streaming-not-lora": (
            MERGE + ["--adapter_dir", env["ia3"], "--output_dir", out, "--low_memory"],
            2,
            "the streaming merge reads LoRA adapters (plain, rsLoRA, rank patterns), not IA3",
        ),
    }


def conversation_rows(env) -> dict:
    """Conversation records that are not conversations a model can learn from, and formats that do not match."""
    t, model, out = env["tmp"], env["model"], env["out"]
    user, answer = {"role": "user", "content": "What is HbA1c?"}, {"role": "assistant", "content": "Average glucose."}

    def train(name: str, *records: dict) -> list[str]:
        path = write(t / f"{name}.jsonl", "".join(json.dumps(record) + "\n" for record in records))
        return LOAD + ["--model_name_or_path", model, "--output_dir", out, "--train_file", path]

    good = {"messages": [user, answer]}
    return {
        "conversation-no-assistant-turn": (
            train("no-answer", good, {"messages": [user, answer, user]}),
            2,
            "has no assistant turn after its last user turn",
        ),
        "conversation-roles-out-of-order": (
            train("order", good, {"messages": [user, user, answer]}),
            2,
            "turn 2 is a user turn after a user turn",
        ),
        "conversation-unknown-role": (
            train("role", {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}),
            2,
            "turn 2 has the from 'bot'; the known ones are human, gpt, system",
        ),
        "conversation-empty-turn": (
            train("empty", good, {"messages": [user, {"role": "assistant", "content": " "}]}),
            2,
            "turn 2 (assistant) is empty; fix or remove it",
        ),
        "record-format-mismatch": (
            train("fields", {"question": "q", "answer": "a"}) + ["--record_format", "sharegpt"],
            2,
            "--record_format sharegpt: ",
        ),
        "conversation-with-label-field": (
            train("labelled", good) + ["--label_field", "decision"],
            2,
            "--label_field reads a label field; messages records have none",
        ),
    }


def benchmark_rows(env) -> dict:
    """Benchmarks that cannot run (a task lm-eval does not have, a Hub task offline, a local task without labels) and
    benchmark results that cannot be compared (other tasks, other questions)."""
    bench, t = BENCHMARK + ["--model_name_or_path", env["model"], "--output_dir", env["out"]], env["tmp"]
    train = LOAD + ["--model_name_or_path", env["model"], "--output_dir", env["out"], "--train_file", env["data"]]
    return {
        "benchmark-unknown-task": (
            bench + ["--tasks", "pubmedqaa"],
            2,
            "--tasks pubmedqaa is no lm-evaluation-harness task or group (did you mean 'pubmedqa'",
        ),
        "benchmark-hub-task-offline": (
            bench + ["--tasks", "pubmedqa"],
            2,
            "--tasks pubmedqa loads its questions from the Hugging Face Hub, which is unreachable; offline, benchmark "
            "your own labelled file: --tasks local --test_file FILE --label_field FIELD",
        ),
        "benchmark-local-without-labels": (
            bench + ["--tasks", "local", "--test_file", env["data"]],
            2,
            "--tasks local scores labels: give --label_field",
        ),
        "benchmark-output-is-the-adapter": (
            bench[:-2] + ["--adapter_name_or_path", env["adapter"], "--tasks", "local", "--output_dir", env["adapter"]],
            2,
            "is the adapter",
        ),
        "benchmark-tasks-unknown": (
            train + ["--benchmark_tasks", "pubmedqaa"],
            2,
            "--benchmark_tasks pubmedqaa is no lm-evaluation-harness task or group (did you mean 'pubmedqa'",
        ),
        "benchmark-tasks-local-without-labels": (
            train + ["--benchmark_tasks", "local"],
            2,
            "--benchmark_tasks local scores the test split's labels: give --label_field",
        ),
        "benchmark-tasks-without-training": (
            train + ["--do_predict", "--benchmark_tasks", "local", "--label_field", "decision"],
            2,
            "--benchmark_tasks runs after training; add --do_train, or benchmark a model with bioqa-benchmark",
        ),
        "compare-benchmark-different-tasks": (
            COMPARE + ["--baseline", results(t, "a", 2), "--candidate", results(t, "b", 2), "--output_dir", env["out"]],
            2,
            "holds the tasks a and ",
        ),
        "compare-benchmark-different-questions": (
            COMPARE + ["--baseline", results(t, "a", 2), "--candidate", results(t, "a", 3), "--output_dir", env["out"]],
            2,
            "task a: 1 questions are in one file only (e.g. q2); compare results on the same questions",
        ),
    }


def seeds_rows(env) -> dict:
    """Seeds studies that could not be one (a seed twice, nothing trained, one upload for several runs) and
    comparisons over seeds that would claim a spread they do not have (one run on a side, a run or a seed twice)."""
    t = env["tmp"]
    train = LOAD + ["--model_name_or_path", env["model"], "--output_dir", env["out"], "--train_file", env["data"]]
    runs = [seeded_run(t / f"run-{name}", seed) for name, seed in (("a", 1), ("b", 2), ("c", 1), ("d", 2))]

    def compare(baseline: list[str], candidate: list[str]) -> list[str]:
        return COMPARE + ["--baseline", *baseline, "--candidate", *candidate, "--output_dir", env["out"]]

    return {
        "seeds-given-twice": (
            train + ["--seeds", "1", "2", "1"],
            2,
            "--seeds gives 1 more than once; give each seed once",
        ),
        "seeds-without-training": (
            train + ["--do_predict", "--seeds", "1", "2"],
            2,
            "--seeds trains the recipe once per seed; add --do_train",
        ),
        "seeds-with-push-to-hub": (
            train + ["--seeds", "1", "2", "--push_to_hub", "--hub_model_id", "me/model"],
            2,
            "--push_to_hub uploads one run, and --seeds trains several",
        ),
        "compare-seeds-one-run-on-a-side": (
            compare(runs[:2], runs[2:3]),
            2,
            "a comparison over seeds needs two or more runs on each side, got 2 baseline and 1 candidate",
        ),
        "compare-seeds-run-twice": (
            compare([runs[0], runs[1]], [runs[2], runs[0]]),
            2,
            "is given twice; give each run once",
        ),
        "compare-seeds-same-seed": (
            compare([runs[0], runs[2]], [runs[1], runs[3]]),
            2,
            "two baseline runs were trained with seed 1; a comparison over seeds needs each seed once per side",
        ),
    }


def seeded_run(folder: Path, seed: int) -> str:
    """A run folder trained with `seed` (its run_config.yaml says so) holding a predictions.jsonl."""
    folder.mkdir(exist_ok=True)
    write(folder / "run_config.yaml", f"seed: {seed}\n")
    return prediction_file(folder / "predictions.jsonl", [f"q{i}" for i in range(12)])


def results(folder: Path, task: str, questions: int) -> str:
    """A bioqa-benchmark result file of `questions` questions of `task`, in `folder`."""
    rows = [{"id": f"q{i}", "task": task, "gold": 0, "chosen": i % 2, "correct": i % 2 == 0} for i in range(questions)]
    return write(folder / f"{task}-{questions}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


def of_kind(adapter: Path, path: Path, peft_type: str) -> str:
    """A copy of `adapter` whose adapter_config.json names another kind of peft adapter."""
    shutil.copytree(adapter, path)
    config = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps({**config, "peft_type": peft_type}))
    return str(path)


def device_rows(env) -> dict:
    """Devices this machine lacks or torch cannot use, refused before any weights load. A row's fourth item is
    what it adds to the environment: a PATH whose nvidia-smi lists a GPU that this CPU-only torch cannot use."""
    model, data, out = env["model"], env["data"], env["out"]
    train = ["--model_name_or_path", model, "--train_file", data, "--output_dir", out]
    gpu_path = {"PATH": f"{env['nvidia_bin']}:{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": "0"}
    return {
        "gpu-torch-cannot-use": (
            LOAD + train,
            2,
            "is a CPU-only build, so it would run on the CPU; install torch's CUDA build (README, 'GPU and Mac'); "
            "or pass --device cpu to run on the CPU anyway",
            gpu_path,
        ),
        "merge-gpu-torch-cannot-use": (
            MERGE + ["--adapter_dir", env["adapter"], "--output_dir", out, "--device", "cuda"],
            2,
            "this machine has an NVIDIA GPU (Tesla V100-SXM2-16GB, driver 535.104.05)",
            gpu_path,
        ),
        "merge-without-a-gpu": (
            MERGE + ["--adapter_dir", env["adapter"], "--output_dir", out, "--device", "cuda"],
            2,
            "--device cuda was asked for but no CUDA GPU is visible; use --device cpu",
        ),
        "liger-off-cuda": (
            LOAD + train + ["--use_liger_kernel"],
            2,
            "--use_liger_kernel runs Triton kernels, which need a CUDA GPU, but the device is cpu; drop it",
        ),
        "dict-option-not-json": (
            LOAD + train + ["--liger_kernel_config", "rope=false"],
            2,
            "argument --liger_kernel_config/--liger-kernel-config: rope=false is not a JSON object",
        ),
    }


def labelled(t: Path, name: str, decisions: list, **extra) -> str:
    rows = [
        {"question": f"Does drug {i} work?", "answer": "It does.", "decision": d, **extra}
        for i, d in enumerate(decisions)
    ]
    return write(t / name, "".join(json.dumps(row) + "\n" for row in rows))


def label_rows(env) -> dict:
    """Yes/no/maybe and multiple-choice settings that cannot work with the data given."""
    t, model, out = env["tmp"], env["model"], env["out"]
    yes_no = labelled(t, "yes-no.jsonl", ["yes", "no"] * 4)
    train = ["--model_name_or_path", model, "--output_dir", out, "--train_file", yes_no]
    return {
        "label-field-missing": (
            LOAD + train + ["--label_field", "verdict"],
            2,
            "has no field 'verdict'; its fields are question, answer, decision; set --label_field",
        ),
        "label-set-empty": (
            LOAD + train + ["--label_field", "decision", "--config", write(t / "labels.yaml", "labels: []\n")],
            2,
            "labels.yaml: argument --labels: expected at least one argument; see --help",
        ),
        "label-outside-the-set": (
            LOAD + train + ["--label_field", "decision", "--test_file", labelled(t, "odd.jsonl", ["perhaps"])],
            2,
            'record 1: label "perhaps" is not one of the labels no, yes; fix the record, or add it to --labels',
        ),
        "one-option": (
            LOAD
            + train
            + ["--label_field", "decision", "--options_field", "options", "--target", "label"]
            + ["--train_file", labelled(t, "mc.jsonl", [0, 1], options=["only"])],
            2,
            "record 1: 1 option(s); a multiple-choice question needs at least two",
        ),
        "target-without-label-field": (
            LOAD + train + ["--target", "label_then_answer"],
            2,
            "--target label_then_answer needs --label_field",
        ),
        "best-metric-not-logged": (
            LOAD + train + ["--eval_metrics", "rouge", "--metric_for_best_model", "eval_meteor"],
            2,
            "--metric_for_best_model eval_meteor is not logged by this run (it logs eval_rouge1, eval_rouge2, "
            "eval_rougeL, eval_rougeLsum); choose one of those",
        ),
        "unknown-metric": (
            LOAD + train + ["--eval_metrics", "rouge", "exactmatch"],
            2,
            "--eval_metrics exactmatch unknown (did you mean 'exact_match'?); choose from rouge bleu meteor "
            "exact_match token_f1, or register the metric first",
        ),
        "score-unknown-metric": (
            SCORE
            + ["--predictions", write(t / "pm.txt", "a\n"), "--references", write(t / "rm.txt", "a\n")]
            + ["--metrics", "rogue"],
            2,
            "--metrics rogue unknown (did you mean 'rouge'?); choose from rouge bleu meteor exact_match token_f1",
        ),
        "loglik-without-labels": (
            LOAD + train + ["--label_scoring", "loglik"],
            2,
            "--label_scoring loglik needs --label_field",
        ),
        "label-then-answer-without-answer": (
            LOAD + train + ["--label_field", "decision", "--target", "label_then_answer", "--answer_field", "long"],
            2,
            "has no field 'long' (--target label_then_answer writes it after the label); its fields are question, "
            "answer, decision; set --answer_field, or use --target label",
        ),
    }


def promise_rows(env) -> dict:
    """Outputs never overlap inputs, --overwrite replaces only a command's own output, one writer per folder,
    and input that would be mangled or trusted wrongly is refused."""
    t, model, data, out, adapter = env["tmp"], env["model"], env["data"], env["out"], env["adapter"]
    train = ["--model_name_or_path", model, "--train_file", data]
    run = env["run"]
    return {
        "output-is-the-base-model": (
            LOAD + train + ["--output_dir", model, "--overwrite_output_dir"],
            2,
            "is the base model",
        ),
        "output-contains-the-data": (
            LOAD + train + ["--output_dir", str(Path(data).parent)],
            2,
            "contains the training file",
        ),
        "output-inside-the-adapter": (
            LOAD
            + [
                "--model_name_or_path",
                model,
                "--do_predict",
                "--test_file",
                data,
                "--adapter_name_or_path",
                adapter,
                "--output_dir",
                str(Path(adapter) / "pred"),
            ],
            2,
            "lies inside the adapter",
        ),
        "overwrite-foreign-files": (
            LOAD + train + ["--output_dir", env["full"], "--overwrite_output_dir"],
            2,
            "holds files load_models.py did not write: it has no written_files.json",
        ),
        "overwrite-user-file-deep": (
            LOAD + train + ["--output_dir", env["earlier_run"], "--overwrite_output_dir"],
            2,
            "holds files load_models.py did not write: predictions/my_error_analysis.md is not one of the files "
            "it wrote",
        ),
        "overwrite-changed-file": (
            LOAD
            + ["--model_name_or_path", model, "--do_predict", "--test_file", data]
            + ["--output_dir", env["edited_run"], "--overwrite_output_dir"],
            2,
            "run_config.yaml was changed after it was written",
        ),
        "non-finite-numbers": (
            LOAD
            + train
            + ["--output_dir", out, "--learning_rate", "nan", "--num_train_epochs", "inf"]
            + ["--split_ratios", "nan", "nan", "nan", "--warmup_steps", "nan"],
            2,
            "4 problems: --split_ratios must be a finite number, got nan nan nan | --num_train_epochs must be a "
            "finite number, got inf | --learning_rate must be a finite number, got nan | --warmup_steps must be a "
            "finite number, got nan",
        ),
        "yaml-nan-and-huge-count": (
            LOAD
            + train
            + [
                "--output_dir",
                out,
                "--config",
                write(t / "nan.yaml", "learning_rate: .nan\nlora_r: 1" + "0" * 30 + "\n"),
            ],
            2,
            "--lora_r 1000000000000000000000000000000 is out of range (at most 2147483647)",
        ),
        "compare-baseline-is-a-folder": (
            COMPARE + ["--baseline", str(t), "--candidate", prediction_file(t / "c.jsonl", ["1"])],
            2,
            "is a folder, not a file; give a predictions.jsonl",
        ),
        "merge-adapter-is-a-file": (
            MERGE + ["--adapter_dir", data, "--output_dir", out],
            2,
            "is a file, not a folder; give the output folder of a training run",
        ),
        "config-is-dev-null": (
            LOAD + train + ["--output_dir", out, "--config", "/dev/null"],
            2,
            "--config /dev/null is a character device, not a YAML file; check the --config path",
        ),
        "config-is-a-folder": (
            LOAD + train + ["--output_dir", out, "--config", str(t)],
            2,
            "is a folder, not a YAML file",
        ),
        "yaml-merge-key": (
            LOAD
            + train
            + ["--output_dir", out, "--config", write(t / "merge.yaml", "lora_r: 4\n<<: {lora_alpha: 8}\n")],
            2,
            "line 2 is a YAML merge key (<<:), which a config file does not use",
        ),
        "lora-rank-above-hidden-size": (
            LOAD + train + ["--output_dir", out, "--lora_r", "100000"],
            2,
            "--lora_r 100000 exceeds the model's hidden size 32; choose at most 32",
        ),
        "compare-count-out-of-range": (
            COMPARE + ["--baseline", "a.jsonl", "--candidate", "b.jsonl", "--bootstrap_samples", "99999999999"],
            2,
            "--bootstrap_samples 99999999999 is out of range (at most 2147483647)",
        ),
        "output-is-a-symlink": (LOAD + train + ["--output_dir", env["link"]], 2, "is a symbolic link"),
        "output-dangling-symlink": (LOAD + train + ["--output_dir", env["dangling"]], 2, "is a symbolic link"),
        "output-locked": (LOAD + train + ["--output_dir", env["locked"]], 2, "is in use by process"),
        "output-stale-lock": (LOAD + train + ["--output_dir", env["stale"]], 2, "which is no longer running"),
        "field-not-text": (
            LOAD
            + train[:2]
            + [
                "--train_file",
                write(t / "bool.jsonl", qa_line() + json.dumps({"question": "q", "answer": True}) + "\n"),
                "--output_dir",
                out,
            ],
            2,
            "record 2: field 'answer' is true, not a text",
        ),
        "duplicate-ids": (
            LOAD
            + train[:2]
            + [
                "--test_file",
                write(t / "dup.jsonl", (json.dumps({"id": 7, "question": "q", "answer": "a"}) + "\n") * 2),
                "--do_predict",
                "--output_dir",
                out,
            ],
            2,
            "has the id '7' twice",
        ),
        "negative-count": (
            LOAD
            + train
            + [
                "--output_dir",
                out,
                "--max_predict_samples",
                "-1",
                "--num_train_epochs",
                "0",
                "--generation_num_beams",
                "0",
            ],
            2,
            "3 problems: --num_train_epochs must be positive",
        ),
        "merge-output-around-the-adapter": (
            MERGE + ["--adapter_dir", adapter, "--output_dir", str(Path(adapter).parent), "--overwrite"],
            2,
            "contains the adapter",
        ),
        "merge-output-is-the-base": (
            MERGE + ["--adapter_dir", adapter, "--output_dir", model, "--overwrite"],
            2,
            "is the base model",
        ),
        "merge-lora-bias-without-base-bias": (
            MERGE + ["--adapter_dir", env["biased"], "--output_dir", out],
            2,
            "the adapter holds lora_B.bias tensors",
        ),
        "merge-damaged-base-config": (
            MERGE + ["--adapter_dir", adapter, "--base_model", env["bad_base"], "--output_dir", out],
            2,
            "config.json (the base model's config) is damaged",
        ),
        "merge-bad-shard-size": (
            MERGE + ["--adapter_dir", adapter, "--output_dir", out, "--max_shard_size", "abc"],
            2,
            "--max_shard_size abc is not a size",
        ),
        "compare-negative-counts": (
            COMPARE
            + [
                "--baseline",
                prediction_file(t / "k1.jsonl", ["1"]),
                "--candidate",
                prediction_file(t / "k2.jsonl", ["1"]),
                "--bootstrap_samples",
                "0",
                "--examples_shown",
                "-1",
                "--output_dir",
                out,
            ],
            2,
            "2 problems: --bootstrap_samples must be positive, got 0 | --examples_shown must be 0 or more, got -1",
        ),
        "score-negative-bootstrap": (
            SCORE
            + [
                "--predictions",
                write(t / "pb.txt", "a\n"),
                "--references",
                write(t / "rb.txt", "a\n"),
                "--bootstrap_samples",
                "-5",
            ],
            2,
            "--bootstrap_samples must be 0 (no intervals) or more, got -5",
        ),
        "merge-damaged-report": (
            MERGE + ["--adapter_dir", adapter, "--output_dir", env["damaged_merge"]],
            2,
            "merge_report.json is damaged (not valid JSON); remove the damaged merge (rm -r",
        ),
        "compare-damaged-trainer-state": (
            COMPARE
            + [
                "--baseline",
                prediction_file(t / "s1.jsonl", ["1"]),
                "--candidate",
                prediction_file(t / "s2.jsonl", ["1"]),
                "--trainer_state",
                write(t / "trainer_state.json", "{ oops"),
                "--output_dir",
                out,
            ],
            2,
            "trainer_state.json (the trainer state) is damaged",
        ),
        "compare-output-inside-a-run": (
            COMPARE
            + [
                "--baseline",
                str(run / "predictions.jsonl"),
                "--candidate",
                str(run / "predictions.jsonl"),
                "--output_dir",
                str(run / "report"),
            ],
            2,
            "lies inside the baseline's run",
        ),
        "compare-other-questions": (
            COMPARE
            + [
                "--baseline",
                prediction_file(t / "q1.jsonl", ["1", "2"]),
                "--candidate",
                write(
                    t / "q2.jsonl",
                    "".join(
                        json.dumps({"id": i, "question": "other", "reference": "a b c", "prediction": "a"}) + "\n"
                        for i in "12"
                    ),
                ),
                "--output_dir",
                out,
            ],
            2,
            "id '1' has another question in fine-tuned than in zero-shot",
        ),
        "compare-null-prediction": (
            COMPARE
            + [
                "--baseline",
                write(t / "n.jsonl", json.dumps({"id": "1", "reference": "a", "prediction": None}) + "\n"),
                "--candidate",
                prediction_file(t / "n2.jsonl", ["1"]),
                "--output_dir",
                out,
            ],
            2,
            "row 1: prediction is null, not a text",
        ),
        "yaml-boolean-for-a-choice": (
            LOAD + train + ["--output_dir", out, "--config", write(t / "bool.yaml", "use_chat_template: no\n")],
            2,
            "key 'use_chat_template' is false (YAML reads unquoted yes, no",
        ),
        "yaml-list-for-one-value": (
            LOAD + train + ["--output_dir", out, "--config", write(t / "list.yaml", "lora_r: [8, 16]\n")],
            2,
            "key 'lora_r' is a list ([8, 16]), but it takes one int value",
        ),
        "yaml-key-twice": (
            LOAD + train + ["--output_dir", out, "--config", write(t / "twice.yaml", "lora_r: 8\nlora_r: 16\n")],
            2,
            "key 'lora_r' is given twice (again on line 2)",
        ),
        "yaml-alias-bomb": (
            LOAD
            + train
            + [
                "--output_dir",
                out,
                "--config",
                write(
                    t / "bomb.yaml",
                    "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 10)}]\n" for i in range(9)),
                ),
            ],
            2,
            "its aliases expand to more than 10000 values",
        ),
        "config-given-twice": (
            LOAD
            + train
            + [
                "--output_dir",
                out,
                "--config",
                write(t / "c1.yaml", "lora_r: 8\n"),
                "--config",
                write(t / "c2.yaml", "lora_r: 4\n"),
            ],
            2,
            "--config given 2 times",
        ),
        "damaged-model-weights": (
            LOAD
            + ["--model_name_or_path", env["bad_weights"], "--do_predict", "--test_file", data, "--output_dir", out],
            2,
            "Error while deserializing header",
        ),
        "damaged-adapter-weights": (
            LOAD
            + [
                "--model_name_or_path",
                model,
                "--do_predict",
                "--test_file",
                data,
                "--adapter_name_or_path",
                env["corrupt"],
                "--output_dir",
                out,
            ],
            2,
            "cannot load the adapter",
        ),
        "no-prompt-fits": (
            LOAD
            + [
                "--model_name_or_path",
                model,
                "--do_predict",
                "--test_file",
                data,
                "--max_seq_length",
                "8",
                "--output_dir",
                out,
            ],
            2,
            "--do_predict: none of the 60 test examples fits --max_seq_length 8",
        ),
        "compare-latin1": (
            COMPARE
            + [
                "--baseline",
                write(t / "l.jsonl", '{"id": "1", "reference": "caf\xe9", "prediction": "a"}\n'.encode("latin-1")),
                "--candidate",
                prediction_file(t / "l2.jsonl", ["1"]),
                "--output_dir",
                out,
            ],
            2,
            "is not UTF-8 text",
        ),
    }


@pytest.fixture(scope="module")
def env(tiny_model_dir, qa_file, tmp_path_factory):
    t = tmp_path_factory.mktemp("matrix")
    adapter = make_adapter(Path(tiny_model_dir), t / "adapter")
    corrupt = t / "corrupt"
    shutil.copytree(adapter, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    (t / "dir.jsonl").mkdir()
    (t / "full").mkdir()
    (t / "full" / "keep.txt").write_text("precious")
    (t / "link").symlink_to(t / "full")
    (t / "dangling").symlink_to(t / "nowhere")
    (t / ".locked.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # this live process
    (t / ".stale.lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    run = t / "run"  # a --do_predict output: its predictions are an input of the comparison
    run.mkdir()
    (run / "run_manifest.json").write_text("{}")
    prediction_file(run / "predictions.jsonl", ["1", "2"])
    for name, user_file in (("earlier-run", "predictions/my_error_analysis.md"), ("edited-run", None)):
        earlier = t / name  # an earlier run's output as the command recorded it
        (earlier / "predictions").mkdir(parents=True)
        (earlier / "run_config.yaml").write_text("seed: 7\n")
        (earlier / "predictions" / "eval-step-8.jsonl").write_text("{}\n")
        record(earlier, "load_models.py", "run_config.yaml", "predictions")
        if user_file:
            (earlier / user_file).write_text("the user's notes")
        else:
            (earlier / "run_config.yaml").write_text("seed: 8\n")  # the same size, edited by hand
    damaged_merge = t / "damaged-merge"
    damaged_merge.mkdir()
    (damaged_merge / "merge_report.json").write_text("{ oops")
    bad_weights = t / "bad-weights"
    shutil.copytree(tiny_model_dir, bad_weights)
    (bad_weights / "model.safetensors").write_bytes((bad_weights / "model.safetensors").read_bytes()[:300])
    (t / "nvidia-bin").mkdir()
    fake_nvidia_smi(t / "nvidia-bin")
    bad_base = t / "bad-base"
    shutil.copytree(tiny_model_dir, bad_base)
    (bad_base / "config.json").write_text("{ not json")
    return {
        "link": str(t / "link"),
        "dangling": str(t / "dangling"),
        "locked": str(t / "locked"),
        "stale": str(t / "stale"),
        "run": run,
        "bad_base": str(bad_base),
        "bad_weights": str(bad_weights),
        "damaged_merge": str(damaged_merge),
        "biased": str(make_adapter(Path(tiny_model_dir), t / "biased", lora_bias=True)),
        "tmp": t,
        "model": str(tiny_model_dir),
        "data": str(qa_file),
        "out": str(t / "out"),
        "dir": str(t / "dir.jsonl"),
        "adapter": str(adapter),
        "corrupt": str(corrupt),
        "full": str(t / "full"),
        "earlier_run": str(t / "earlier-run"),
        "edited_run": str(t / "edited-run"),
        "wide": str(make_base(t / "wide", hidden=48)),
        **{name: of_kind(adapter, t / name, name.upper()) for name in ("xlora", "ia3")},
        "prefix": of_kind(adapter, t / "prefix", "PREFIX_TUNING"),
        "nvidia_bin": str(t / "nvidia-bin"),
    }


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_matrix_has_at_least_25_rows_and_docs_list_them(env):
    table = rows(env)
    assert len(table) >= 25
    assert sorted(ALL_ROWS) == sorted(table) and set(PROCESS_ROWS) <= set(table)  # every row runs
    doc = ERRORS_DOC.read_text(encoding="utf-8")
    for row_id, (_, _, fragment, *_) in table.items():
        assert f"`{row_id}`" in doc and fragment.replace("|", "\\|") in doc, row_id


ALL_ROWS = [
    "jsonl-bad-line",
    "not-utf8",
    "csv-missing-column",
    "unreadable-file",
    "data-file-is-directory",
    "missing-data-file",
    "all-answers-empty",
    "empty-train-split",
    "empty-test-split",
    "empty-validation-split",
    "yaml-typo-key",
    "yaml-wrong-type",
    "contradictory-flags",
    "output-under-a-file",
    "output-not-writable",
    "output-not-empty",
    "unknown-model-offline",
    "non-positive-values",
    "ratios-not-summing-to-1",
    "target-modules-match-nothing",
    "4bit-without-cuda",
    "fp16-generation-on-cpu",
    "unknown-flag",
    "resume-without-checkpoint",
    "merge-adapter-missing",
    "merge-not-an-adapter",
    "merge-other-architecture",
    "merge-corrupt-safetensors",
    "merge-output-exists",
    "merge-base-offline",
    "compare-different-ids",
    "compare-missing-file",
    "compare-bad-line",
    "score-line-counts-differ",
    "score-empty-files",
    "score-missing-file",
    "output-is-the-base-model",
    "output-contains-the-data",
    "output-inside-the-adapter",
    "overwrite-foreign-files",
    "overwrite-user-file-deep",
    "overwrite-changed-file",
    "non-finite-numbers",
    "yaml-nan-and-huge-count",
    "compare-count-out-of-range",
    "lora-rank-above-hidden-size",
    "compare-baseline-is-a-folder",
    "merge-adapter-is-a-file",
    "config-is-dev-null",
    "config-is-a-folder",
    "yaml-merge-key",
    "output-is-a-symlink",
    "output-dangling-symlink",
    "output-locked",
    "output-stale-lock",
    "field-not-text",
    "duplicate-ids",
    "negative-count",
    "merge-output-around-the-adapter",
    "merge-output-is-the-base",
    "merge-lora-bias-without-base-bias",
    "merge-damaged-base-config",
    "compare-output-inside-a-run",
    "compare-other-questions",
    "compare-null-prediction",
    "compare-latin1",
    "yaml-boolean-for-a-choice",
    "yaml-list-for-one-value",
    "yaml-key-twice",
    "yaml-alias-bomb",
    "config-given-twice",
    "damaged-model-weights",
    "damaged-adapter-weights",
    "no-prompt-fits",
    "merge-damaged-report",
    "compare-damaged-trainer-state",
    "merge-bad-shard-size",
    "compare-negative-counts",
    "score-negative-bootstrap",
    "label-field-missing",
    "label-set-empty",
    "label-outside-the-set",
    "one-option",
    "target-without-label-field",
    "label-then-answer-without-answer",
    "unknown-metric",
    "score-unknown-metric",
    "loglik-without-labels",
    "best-metric-not-logged",
    "gpu-torch-cannot-use",
    "merge-gpu-torch-cannot-use",
    "merge-without-a-gpu",
    "liger-off-cuda",
    "dict-option-not-json",
    "peft-unknown-method",
    "peft-prompt-learning",
    "peft-unknown-option",
    "peft-option-set-twice",
    "peft-lora-setting-for-other-method",
    "peft-init-needs-data",
    "merge-prompt-learning-adapter",
    "merge-unmergeable-adapter",
    "merge-streaming-not-lora",
    "conversation-no-assistant-turn",
    "conversation-roles-out-of-order",
    "conversation-unknown-role",
    "conversation-empty-turn",
    "record-format-mismatch",
    "conversation-with-label-field",
    "benchmark-unknown-task",
    "benchmark-hub-task-offline",
    "benchmark-local-without-labels",
    "benchmark-output-is-the-adapter",
    "benchmark-tasks-unknown",
    "benchmark-tasks-local-without-labels",
    "benchmark-tasks-without-training",
    "compare-benchmark-different-tasks",
    "compare-benchmark-different-questions",
    "seeds-given-twice",
    "seeds-without-training",
    "seeds-with-push-to-hub",
    "compare-seeds-one-run-on-a-side",
    "compare-seeds-run-twice",
    "compare-seeds-same-seed",
]
# Rows also run as their own process, as a user would: each script's usage and runtime errors, the offline
# Hub, and a lock held by another process. The rest run each script's `main` in this process, which tests
# the same code without ten seconds of imports per row (the whole matrix took nine minutes that way).
PROCESS_ROWS = [
    "unknown-flag",
    "yaml-typo-key",
    "unknown-model-offline",
    "output-locked",
    "merge-base-offline",
    "merge-output-exists",
    "compare-missing-file",
    "score-missing-file",
    "gpu-torch-cannot-use",
]
# Rows about a machine without a GPU torch can use: on a CUDA machine they would train instead (skipped there).
NO_USABLE_GPU_ROWS = {"gpu-torch-cannot-use", "merge-gpu-torch-cannot-use", "merge-without-a-gpu", "liger-off-cuda"}
ENTRY_POINTS = {
    "load_models.py": "bioqa.cli.train",
    "merge_base_and_adapt_ft_models.py": "bioqa.cli.merge",
    "bioqa.comparison": "bioqa.cli.compare",
    "bioqa.score": "bioqa.cli.score",
    "bioqa.cli.benchmark": "bioqa.cli.benchmark",
}


@pytest.mark.parametrize("row_id", ALL_ROWS)
def test_bad_input_row(row_id, env, capfd, monkeypatch):
    assert_refused(row_id, env, partial(run_in_this_process, capfd=capfd, monkeypatch=monkeypatch))


@pytest.mark.slow
@pytest.mark.parametrize("row_id", PROCESS_ROWS)
def test_bad_input_row_as_a_process(row_id, env):
    assert_refused(row_id, env, run_as_a_process)


def assert_refused(row_id, env, run) -> None:
    """The row's command exits with its code and one `error:` line holding its fragment, touching nothing."""
    if row_id == "unreadable-file" and not Path("/proc/sys/vm/compact_memory").exists():
        pytest.skip("needs Linux's write-only /proc/sys/vm/compact_memory")
    if row_id in NO_USABLE_GPU_ROWS and torch_has_cuda():
        pytest.skip("this torch is a CUDA build: the row is about a machine without a GPU torch can use")
    command, code, fragment, *environment = rows(env)[row_id]
    before = sorted(p.name for p in Path(env["full"]).iterdir())
    inputs = snapshot(env["model"], env["adapter"], env["data"], env["run"])
    returncode, stderr = run(command, environment[0] if environment else {})
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert returncode == code, stderr[-2000:]
    assert len(errors) == 1 and fragment in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr
    assert not Path(env["out"]).exists()
    assert (
        sorted(p.name for p in Path(env["full"]).iterdir()) == before
        and (Path(env["full"]) / "keep.txt").read_text() == "precious"
    )
    assert snapshot(env["model"], env["adapter"], env["data"], env["run"]) == inputs  # no input touched


def torch_has_cuda() -> bool:
    import torch

    return bool(torch.version.cuda) or torch.cuda.is_available()


def run_as_a_process(command: list[str], environment: dict) -> tuple[int, str]:
    result = run_cli(*command[1:], script=command[0], env=environment)
    return result.returncode, result.stderr


def run_in_this_process(command: list[str], environment: dict, capfd, monkeypatch) -> tuple[int, str]:
    """The command's `main` called here, offline, from the repository root; its exit status as Python's."""
    import huggingface_hub.constants

    from bioqa.train.modeling import hub_reachable

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub_reachable.cache_clear()
    script, *args = command[1:] if command[0] == "-m" else command
    main = importlib.import_module(ENTRY_POINTS[script]).main
    try:
        code = main(args)
    except SystemExit as exc:  # what the interpreter makes of it
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        hub_reachable.cache_clear()
    return code, capfd.readouterr().err


def snapshot(*paths) -> dict:
    """Every file under `paths` with its size and modification time."""
    files = {}
    for path in map(Path, paths):
        for file in [path] if path.is_file() else sorted(path.rglob("*")):
            files[str(file)] = (file.stat().st_size, file.stat().st_mtime_ns)
    return files
