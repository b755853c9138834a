"""Two processes on this CPU (gloo), under torchrun and under accelerate launch: training and the
generation-based evaluation neither deadlock nor score an example twice, the metrics equal a
single-process run's, and only the main process writes the outputs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, read_jsonl, run_flags

# The same global batch of 8 either way: 8 in one process, or 4 in each of two; sequential order,
# so that both see the same examples in the same steps.
COMMON = [
    "--max_steps",
    "8",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "4",
    "--save_strategy",
    "no",
    "--generation_max_new_tokens",
    "8",
    "--report_to",
    "none",
    "--precision",
    "fp32",
    "--train_sampling_strategy",
    "sequential",
    "--learning_rate",
    "5e-3",
    "--seed",
    "11",
    "--logging_steps",
    "1",
]


def launcher(kind: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if kind == "torchrun":
        return [shutil.which("torchrun", path=str(bin_dir)), "--nproc_per_node", "2", "--master_port", "29517"]
    accelerate = [shutil.which("accelerate", path=str(bin_dir)), "launch"]
    if kind == "accelerate-flags":  # without --multi_gpu, accelerate runs one process on a CPU machine
        return [*accelerate, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29519"]
    return [
        *accelerate,
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu-2proc.yaml"),
        "--main_process_port",
        "29518",
    ]


def train(prefix: list[str], out: Path, model: Path, data: Path, batch: int) -> subprocess.CompletedProcess:
    command = [
        *prefix,
        "load_models.py",
        *run_flags(model, data, out),
        "--per_device_train_batch_size",
        str(batch),
        *COMMON,
    ]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )


@pytest.fixture(scope="module")
def single(tiny_model_dir, qa_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    result = train([sys.executable], out, tiny_model_dir, qa_file, 8)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def outcome(out: Path) -> tuple[dict, list[float]]:
    """metrics.json and the training loss of every step (gathered over processes, as logged)."""
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return json.loads((out / "metrics.json").read_text()), [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torchrun", "accelerate-config", "accelerate-flags"])
def test_two_processes(kind, single, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    result = train(launcher(kind), out, tiny_model_dir, qa_file, 4)
    assert result.returncode == 0, result.stderr[-4000:]
    for step in (4, 8):
        rows = read_jsonl(out / "predictions" / f"eval-step-{step}.jsonl")
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)) == 6  # every validation example generated and scored exactly once
    (metrics, losses), (expected, expected_losses) = outcome(out), outcome(single)
    assert len(losses) == 8 and losses == pytest.approx(expected_losses, rel=1e-4)  # DDP trains the same adapter
    # train_loss and eval_loss are left out: the Trainer's train_loss is the main process's share of
    # the loss, and its eval_loss normalises each process's batch by the tokens of all processes' batches.
    for name in ("eval_rougeL", "eval_bleu", "eval_meteor"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-6), name
    # the tiny model's 8 steps score 0 on every metric, so the scores alone would pass for any answers: the answers
    # themselves (non-empty) must be the single process's, question by question
    answers = [
        {row["id"]: row["prediction"] for row in read_jsonl(folder / "predictions" / "eval-step-8.jsonl")}
        for folder in (out, single)
    ]
    assert answers[0] == answers[1] and all(answers[0].values())
    assert (out / "adapter_model.safetensors").is_file() and not list(out.glob(".*"))  # no staging or temporary left


PEER_DIES = """
import os, sys
import torch, torch.distributed as dist
from bioqa.cli.runner import run_main

def body():
    dist.init_process_group("gloo")
    tensor = torch.ones(4)
    dist.all_reduce(tensor)
    if dist.get_rank() == 1:
        os._exit(3)  # a process that dies (killed, out of memory) without a word
    for _ in range(100000):
        dist.all_reduce(tensor)
    return 0

sys.exit(run_main(body))
"""


def test_a_peer_that_dies_ends_the_other_process_with_one_line(tmp_path):
    """Under torchrun, the process left in a collective with a dead peer prints one error line, not gloo's
    "Connection reset" traceback."""
    script = tmp_path / "peer.py"
    script.write_text(PEER_DIES)
    torchrun = [shutil.which("torchrun", path=str(Path(sys.executable).parent)), "--nproc_per_node", "2"]
    result = subprocess.run(
        [*torchrun, "--master_port", "29521", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    # the collective's error, or, when torchrun's SIGTERM comes first, that signal: one line either way
    assert len(lines) == 1, result.stderr[-3000:]
    assert "another process of this distributed run ended" in lines[0] or "stopped by SIGTERM" in lines[0]
    # before the line, nothing from the process itself; after it, torchrun reports the dead one (its own traceback)
    assert "Traceback" not in result.stderr.split(lines[0])[0] and "RuntimeError" not in result.stderr
