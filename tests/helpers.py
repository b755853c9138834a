"""Helpers the tests share: where the repository is, the short training recipe, and running a command
as a user would. (Fixtures live in conftest.py; helpers are imported, `from helpers import run_cli`.)"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

TRAIN = [
    "--max_steps",
    "24",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "8",
    "--save_strategy",
    "steps",
    "--save_steps",
    "8",
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "1e-2",
    "--lora_r",
    "8",
    "--generation_max_new_tokens",
    "12",
    "--logging_steps",
    "4",
    "--report_to",
    "none",
    "--seed",
    "7",
]


def quick_training(steps: int, save_steps: int | None = None) -> list[str]:
    """Flags of a short training run: `steps` steps of 8 examples at a high learning rate, no evaluation, a
    checkpoint every `save_steps` (None: none)."""
    save = ["--save_strategy", "steps", "--save_steps", str(save_steps)] if save_steps else ["--save_strategy", "no"]
    return [
        *("--max_steps", str(steps), "--eval_strategy", "no", "--per_device_train_batch_size", "8"),
        *("--learning_rate", "1e-2", "--report_to", "none", *save),
    ]


def run_flags(model: Path, train_file: Path, output_dir: Path) -> list[str]:
    """The three flags of a training run on a test model: its base, its data and its output folder."""
    return ["--model_name_or_path", str(model), "--train_file", str(train_file), "--output_dir", str(output_dir)]


def run_cli(*args: str, script: str = "load_models.py", env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one of the toolkit's scripts as a user would (script="-m" runs a module: the first arg); HF_HUB_OFFLINE
    makes a Hub id fail at once; `env` adds to the environment."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )


def contents(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` and its bytes: to check a command left an output exactly as it was."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_jsonl(path: Path) -> list[dict]:
    """A JSON Lines file's rows, split on "\n" only: str.splitlines() would also split inside an answer holding
    U+0085, U+2028 or a control character such as \x1c, which a generating model may write."""
    from bioqa.io.files import text_lines

    return [json.loads(line) for line in text_lines(Path(path).read_text(encoding="utf-8"))]


def prompt_args(**overrides):
    """Prompt options as PromptArguments holds them (the library reads them by attribute)."""
    base = dict(
        use_chat_template="auto",
        system_prompt="You are a biomedical expert.",
        question_template="Question: {question}",
        context_template="Context: {context}\nQuestion: {question}",
        answer_prefix="\nAnswer:",
    )
    return SimpleNamespace(**{**base, **overrides})


def fake_nvidia_smi(folder: Path, gpu: str = "Tesla V100-SXM2-16GB, 535.104.05, 16384, 7.0") -> Path:
    """A folder holding an `nvidia-smi` that answers the toolkit's query as a driver would, listing `gpu` (name,
    driver, memory in MiB, compute capability). Put it first on PATH: the machine then has an NVIDIA GPU that this
    CPU-only torch cannot use. A driver older than R510 has no compute_cap field: give `gpu` three fields."""
    name, driver, memory, *capability = [part.strip() for part in gpu.split(",")]
    with_cap = f"{name}, {driver}, {memory}, {capability[0]}" if capability else None
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *compute_cap*) {f'echo {shlex.quote(with_cap)}' if with_cap else 'echo unknown field >&2; exit 2'} ;;\n"
        f"  *) echo {shlex.quote(f'{name}, {driver}, {memory}')} ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return folder
