"""Session fixtures: tiny models and QA files built offline once per test session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_models import qa_rows, save_tiny_model, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with a ChatML chat template (EOS = <|im_end|>)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-chat"), chat=True)


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory) -> Path:
    """The same without a chat template (EOS = <|endoftext|>), for the plain prompt path."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-plain"), chat=False)


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "qa.jsonl", qa_rows(60))


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


TRAIN = ["--max_steps", "24", "--eval_strategy", "steps", "--eval_steps", "8", "--save_strategy", "steps",
         "--save_steps", "8", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--lora_r", "8",
         "--generation_max_new_tokens", "12", "--logging_steps", "4", "--report_to", "none", "--seed", "7"]


def run_cli(*args: str, script: str = "load_models.py") -> subprocess.CompletedProcess:
    """Run one of the toolkit's scripts as a user would; HF_HUB_OFFLINE makes a Hub id fail at once."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="session")
def trained(tiny_model_dir, qa_file, tmp_path_factory):
    """One training run (with --do_predict) on the tiny model: its output folder and the completed process."""
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_cli("--model_name_or_path", str(tiny_model_dir), "--train_file", str(qa_file), "--output_dir", str(out),
                     "--load_best_model_at_end", "--metric_for_best_model", "eval_rougeL", "--do_train", "--do_predict",
                     *TRAIN, "--report_to", "tensorboard")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result
