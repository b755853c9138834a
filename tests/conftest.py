"""Session fixtures: tiny models and QA files built offline once per test session."""

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import TRAIN, run_cli, run_flags
from tiny_models import qa_rows, save_tiny_model, write_jsonl


def share_the_cores() -> None:
    """Under pytest-xdist (`make test`), each worker and the scripts it runs take their share of the CPU
    cores: torch's default of one thread per core in every worker would oversubscribe them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))  # the scripts
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # this worker


share_the_cores()

# The longest any command a test runs may take (a training run on the tiny model takes seconds; the demo's reduced
# recipe minutes): one that hangs fails with its last output instead of holding CI to its budget.
COMMAND_TIMEOUT = 900


def _time_limited(run):
    def limited(*args, **kwargs):
        kwargs.setdefault("timeout", limited.default_timeout)
        try:
            return run(*args, **kwargs)
        except subprocess.TimeoutExpired as exc:
            output = "".join(
                part.decode("utf-8", "replace") if isinstance(part, bytes) else part
                for part in (exc.stdout, exc.stderr)
                if part
            )
            command = shlex.join(map(str, exc.cmd)) if isinstance(exc.cmd, (list, tuple)) else str(exc.cmd)
            pytest.fail(f"{command[:300]} ran past {exc.timeout:g} s; its last output:\n{output[-3000:]}")

    limited.limits_commands, limited.default_timeout = True, COMMAND_TIMEOUT
    return limited


if not getattr(subprocess.run, "limits_commands", False):
    subprocess.run = _time_limited(subprocess.run)


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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], subprocess.CompletedProcess]):
    """What `build(folder)` writes into a fresh folder, once for the whole session: under pytest-xdist the first
    worker to need it builds it and the others wait for it and read it. Returns the folder and the command's
    CompletedProcess (kept in the folder as command.json)."""
    workers_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        workers_root = workers_root.parent  # every worker's base folder is a child of this session's
    folder, record = workers_root / f"once-{name}", workers_root / f"once-{name}" / "command.json"
    with open(workers_root / f"once-{name}.lock", "w") as lock, contextlib.ExitStack() as unlock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        unlock.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        if not record.is_file():  # a worker that failed half-way leaves no record: built again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done = build(folder)
            assert done.returncode == 0, done.stderr[-3000:]
            kept = {"args": [str(a) for a in done.args], "returncode": 0, "stdout": done.stdout, "stderr": done.stderr}
            record.write_text(json.dumps(kept))
    kept = json.loads(record.read_text())
    return folder, subprocess.CompletedProcess(kept["args"], kept["returncode"], kept["stdout"], kept["stderr"])


@pytest.fixture(scope="session")
def trained(tiny_model_dir, qa_file, tmp_path_factory):
    """One training run (with --do_predict) on the tiny model: its output folder and the completed process.
    Read-only: a test that changes it copies it first."""

    def train(folder: Path) -> subprocess.CompletedProcess:
        return run_cli(
            *run_flags(tiny_model_dir, qa_file, folder / "out"),
            "--load_best_model_at_end",
            "--metric_for_best_model",
            "eval_rougeL",
            "--do_train",
            "--do_predict",
            *TRAIN,
            "--report_to",
            "tensorboard",
        )

    folder, result = built_once(tmp_path_factory, "trained", train)
    return folder / "out", result


@pytest.fixture(scope="session")
def merged(trained, tmp_path_factory):
    """`trained` merged into its base with the defaults (verification included): the folder and the process."""

    def merge(folder: Path) -> subprocess.CompletedProcess:
        flags = ["--adapter_dir", str(trained[0]), "--output_dir", str(folder / "merged")]
        return run_cli(*flags, script="merge_base_and_adapt_ft_models.py")

    folder, result = built_once(tmp_path_factory, "merged", merge)
    return folder / "merged", result
