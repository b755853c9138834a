"""Session fixtures: tiny models and QA files built offline once per test session."""

from pathlib import Path

import pytest

from helpers import TRAIN, run_cli, run_flags
from tiny_models import qa_rows, save_tiny_model, write_jsonl


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


@pytest.fixture(scope="session")
def trained(tiny_model_dir, qa_file, tmp_path_factory):
    """One training run (with --do_predict) on the tiny model: its output folder and the completed process."""
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_cli(
        *run_flags(tiny_model_dir, qa_file, out),
        "--load_best_model_at_end",
        "--metric_for_best_model",
        "eval_rougeL",
        "--do_train",
        "--do_predict",
        *TRAIN,
        "--report_to",
        "tensorboard",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result
