"""Session fixtures: tiny models and QA files built offline once per test session."""

import fcntl
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bioqa.io.files import write_json_atomic
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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder `build` fills once for the whole session: under pytest-xdist the first worker to need it builds it
    and the others wait for it, so every worker reads the same files by the same paths (a run's recorded settings
    name its inputs). A build that fails is not tried again by the next worker: it fails with the first's error."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every worker's base folder is a child of this session's
    folder, built, failed = root / f"once-{name}", root / f"once-{name}.built", root / f"once-{name}.failed"
    with open(root / f"once-{name}.lock", "w") as lock:  # released when closed
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.is_file():
            pytest.fail(f"building {name} failed in another worker:\n{failed.read_text()}")
        if not built.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker killed while building
            folder.mkdir()
            try:
                build(folder)
            except BaseException as exc:
                failed.write_text(str(exc)[-3000:])
                raise
            built.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with a ChatML chat template (EOS = <|im_end|>)."""
    return built_once(tmp_path_factory, "tiny-chat", lambda folder: save_tiny_model(folder, chat=True))


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory) -> Path:
    """The same without a chat template (EOS = <|endoftext|>), for the plain prompt path."""
    return built_once(tmp_path_factory, "tiny-plain", lambda folder: save_tiny_model(folder, chat=False))


@pytest.fixture(scope="session")
def qa_file(tmp_path_factory) -> Path:
    folder = built_once(tmp_path_factory, "data", lambda folder: write_jsonl(folder / "qa.jsonl", qa_rows(60)))
    return folder / "qa.jsonl"


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def run_once(tmp_path_factory, name: str, command: Callable[[Path], subprocess.CompletedProcess]):
    """`command(folder)` run once for the session (built_once); it must succeed. Returns the folder and the
    command's CompletedProcess, kept in the folder as command.json."""

    def build(folder: Path) -> None:
        done = command(folder)
        assert done.returncode == 0, done.stderr[-3000:]
        kept = {"args": [str(a) for a in done.args], "returncode": 0, "stdout": done.stdout, "stderr": done.stderr}
        write_json_atomic(folder / "command.json", kept)

    folder = built_once(tmp_path_factory, name, build)
    kept = json.loads((folder / "command.json").read_text())
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

    folder, result = run_once(tmp_path_factory, "trained", train)
    return folder / "out", result


@pytest.fixture(scope="session")
def merged(trained, tmp_path_factory):
    """`trained` merged into its base with the defaults (verification included): the folder and the process."""

    def merge(folder: Path) -> subprocess.CompletedProcess:
        flags = ["--adapter_dir", str(trained[0]), "--output_dir", str(folder / "merged")]
        return run_cli(*flags, script="merge_base_and_adapt_ft_models.py")

    folder, result = run_once(tmp_path_factory, "merged", merge)
    return folder / "merged", result
