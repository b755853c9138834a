"""bioqa-doctor: can this machine fine-tune? The first command to run on a GPU box, a Mac or a CPU.

It reports the machine (CPU, memory), the torch build and what it was built for, the NVIDIA driver and GPUs as
the driver lists them (whether or not torch can use them), the Apple chip, the device, training precision and
generation dtype the toolkit would choose and why, which of its own speed-ups that device gets, and which optional
kernels are installed and usable. Then a smoke run: a tiny model built from a config (`bioqa.smoke`) trains a few
LoRA steps with one generation-based evaluation (`bioqa-train`) and is merged and verified (`bioqa-merge`), each
in a process of its own, timed, with its peak memory. It ends in a one-line verdict; exit 0 ready, 1 not.

    bioqa-doctor                    # = python -m bioqa.cli.doctor; make doctor
    bioqa-doctor --device cpu       # check one device
    bioqa-doctor --no_smoke         # the report alone, in seconds
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bioqa import compat, hardware
from bioqa.cli.runner import run_main
from bioqa.config import build_parser, parse_arguments
from bioqa.devices import DEVICES, DeviceChoice, choose_device, cpu_has_native_bf16, mps_available
from bioqa.errors import InputError, short
from bioqa.generate import backends

KERNELS = {  # optional package -> (what it is for, how to install it)
    "bitsandbytes": ("4-bit QLoRA, --load_in_4bit (CUDA)", "pip install -e '.[gpu]'"),
    "liger_kernel": ("Liger's Triton kernels, --use_liger_kernel (CUDA)", "pip install -e '.[gpu]'"),
    "flash_attn": ("--attn_implementation flash_attention_2 (CUDA, compute capability 8.0+)", "README, GPU and Mac"),
    "deepspeed": ("DeepSpeed ZeRO through accelerate launch (CUDA)", "README, GPU and Mac"),
}
SMOKE_STEPS = 8


@dataclass
class DoctorArguments:
    device: str = field(
        default="auto",
        metadata={
            "help": "The device to check: auto (what training would choose), cuda, mps or cpu.",
            "choices": DEVICES,
        },
    )
    smoke: bool = field(
        default=True,
        metadata={"help": "Train, evaluate and merge a tiny model on the device (--no_smoke: the report alone)."},
    )
    keep_dir: str | None = field(
        default=None,
        metadata={"help": "Keep the smoke run's model, data, adapter, merge and logs in this new folder."},
    )


def machine_lines() -> list[tuple[str, str]]:
    import psutil
    import torch

    memory = psutil.virtual_memory()
    bf16 = "yes (AVX512-BF16 / AMX)" if cpu_has_native_bf16() else "no"
    build = (
        f"CUDA {torch.version.cuda}"
        if torch.version.cuda
        else f"ROCm {torch.version.hip}"
        if torch.version.hip
        else "CPU only"
    )
    lines = [
        ("machine", f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"),
        ("cpu", f"{hardware.cpu_name()}, {os.cpu_count()} cores, native bf16: {bf16}"),
        ("memory", f"{memory.total / 2**30:.1f} GiB RAM, {memory.available / 2**30:.1f} GiB available"),
        ("torch", f"{torch.__version__} ({build})"),
    ]
    return lines + gpu_lines() + apple_lines()


def gpu_lines() -> list[tuple[str, str]]:
    import torch

    gpus = hardware.nvidia_gpus()
    lines = [("nvidia driver", hardware.nvidia_driver(gpus) or "none")]
    for index, gpu in enumerate(gpus):
        shown = f"{gpu.name}, compute capability {gpu.capability or '?'}, {(gpu.memory_mb or 0) / 1024:.1f} GiB"
        lines.append((f"gpu {index} (driver)", shown))
    for index in range(hardware.cuda_device_count()):
        major, minor = hardware.cuda_capability(index)
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        lines.append(
            (f"cuda:{index} (torch)", f"{name}, {major}.{minor}, {total / 2**30:.1f} GiB, {free / 2**30:.1f} free")
        )
    if torch.version.cuda and hardware.cuda_device_count():
        lines.append(("torch kernels", " ".join(torch.cuda.get_arch_list())))
    return lines


def apple_lines() -> list[tuple[str, str]]:
    chip = hardware.apple_chip()
    if chip is None:
        return []
    return [
        ("apple", f"{chip}, macOS {platform.mac_ver()[0]}, MPS {'available' if mps_available() else 'not available'}")
    ]


def choice_lines(device: str) -> tuple[list[tuple[str, str]], DeviceChoice | None, str | None]:
    """What training would choose on `device` (None: the problem that stops it, a GPU torch cannot use too)."""
    try:
        choice = choose_device(device)
    except InputError as exc:
        return [("choice", f"none: {exc}")], None, str(exc)
    backend = backends.backend_for(choice.device)
    cache, fold = backend.cache, "folded" if backend.fold_lora else "not folded"
    lines = [
        ("choice", choice.describe()),
        ("speed-ups", f"{backend.name}: {cache} KV cache, LoRA {fold} while generating"),
    ]
    return lines, choice, None


def kernel_lines(device: str | None) -> list[tuple[str, str]]:
    lines = []
    for module, (purpose, install) in KERNELS.items():
        if importlib.util.find_spec(module) is None:
            lines.append((module, f"not installed ({install}); for {purpose}"))
            continue
        version = installed_version(module)
        usable = device == "cuda" and (module != "flash_attn" or hardware.cuda_capability()[0] >= 8)
        where = "usable here" if usable else f"not usable on {device or 'this machine'}"
        lines.append((module, f"{version}, {where}; for {purpose}"))
    return lines


def compat_lines(moved: list[str]) -> list[tuple[str, str]]:
    """The pinned libraries whose private names bioqa/compat.py uses: as written for, or which differ and what moved."""
    differ = compat.version_differences()
    pins = (
        ", ".join(f"{name} {installed} (written for {pinned})" for name, (installed, pinned) in differ.items())
        if differ
        else "the versions bioqa/compat.py was written for"
    )
    return [("pins", pins)] + [("private API", line) for line in moved]


def installed_version(module: str) -> str:
    for name in (module, module.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "installed"


@dataclass
class Step:
    name: str
    seconds: float
    ok: bool
    detail: str


def smoke_run(folder: Path, device: str) -> list[Step]:
    """Train the tiny model a few steps with one generation-based evaluation, then merge and verify the adapter, each
    as the command a user runs; stop at the first step that fails."""
    from transformers.utils import logging as transformers_logging

    from bioqa.io.files import write_jsonl_atomic
    from bioqa.smoke import qa_rows, save_tiny_model

    transformers_logging.disable_progress_bar()  # saving the tiny model would draw one into the report
    model = save_tiny_model(folder / "model")
    data = folder / "qa.jsonl"
    write_jsonl_atomic(data, qa_rows(160))  # 128 train, 16 validation, 16 test
    run, merged = folder / "run", folder / "merged"
    train = ["bioqa.cli.train", "--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(run)]
    train += ["--device", device, "--max_steps", str(SMOKE_STEPS), "--per_device_train_batch_size", "8"]
    train += ["--eval_strategy", "steps", "--eval_steps", str(SMOKE_STEPS), "--save_strategy", "no"]
    train += ["--learning_rate", "1e-2", "--generation_max_new_tokens", "12"]
    train += ["--report_to", "none", "--logging_steps", "2"]
    merge = ["bioqa.cli.merge", "--adapter_dir", str(run), "--output_dir", str(merged), "--device", device]
    steps = [command_step("train + evaluate", train, folder / "train.log", lambda: trained_detail(run))]
    if steps[-1].ok:
        steps.append(command_step("merge + verify", merge, folder / "merge.log", lambda: merged_detail(merged)))
    return steps


def command_step(name: str, module_argv: list[str], log_file: Path, detail: Callable[[], str]) -> Step:
    """Run a command's module in a process of its own, its output to `log_file`; what it did comes from `detail`."""
    start = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as log:
        code = subprocess.run([sys.executable, "-m", *module_argv], stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = [line for line in log_file.read_text(encoding="utf-8").splitlines() if line.strip()][-1:]
        return Step(name, seconds, False, f"exit {code}: {short(tail[0] if tail else '', 300)} (log: {log_file})")
    return Step(name, seconds, True, detail())


def trained_detail(run: Path) -> str:
    """What the training run's own files record: its steps, the answers scored, peak memory. (The tiny model's
    weights are random: its few steps check that everything runs, not what it learns.)"""
    manifest = json.loads((run / "run_manifest.json").read_text(encoding="utf-8"))
    steps = json.loads((run / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    peak, answers = manifest["peak_memory_mb"], manifest["final_metrics"].get("eval_num_examples", 0)
    device = f", device peak {peak['device']:.0f} MB" if peak["device"] is not None else ""
    return f"{steps} LoRA steps, {answers:.0f} generated answers scored; host peak {peak['host']:.0f} MB{device}"


def merged_detail(merged: Path) -> str:
    """What merge_report.json records: the verification and peak memory."""
    report = json.loads((merged / "merge_report.json").read_text(encoding="utf-8"))
    device = report["peak_device_memory_mb"]
    shown = f", device peak {device:.0f} MB" if device is not None else ""
    return f"{report['verification']['method']}: passed; host peak {report['peak_memory_mb']:.0f} MB{shown}"


def verdict(choice: DeviceChoice | None, problem: str | None, steps: list[Step] | None) -> tuple[bool, str]:
    if choice is None:
        return False, f"not ready: {problem}"
    failed = [step for step in steps or [] if not step.ok]
    if failed:
        return False, f"not ready: the smoke run's {failed[0].name} failed ({failed[0].detail})"
    done = "trains, evaluates and merges" if steps else "is chosen (smoke run skipped)"
    seconds = f" in {sum(s.seconds for s in steps):.0f} s" if steps else ""
    return (
        True,
        f"ready: {choice.device} ({choice.precision} training, {choice.generation_dtype} generation) {done}{seconds}",
    )


def doctor(argv: list[str] | None) -> int:
    args = parse_arguments(build_parser([DoctorArguments], description=__doc__.split("\n\n")[0]), argv)[0]
    keep = Path(args.keep_dir) if args.keep_dir else None
    if keep is not None and keep.exists():
        raise InputError(f"--keep_dir {keep} exists; give a new folder for the smoke run's files")
    print("bioqa-doctor: can this machine fine-tune?")
    lines, choice, problem = choice_lines(args.device)
    moved = compat.problems()
    show(machine_lines() + lines + kernel_lines(choice.device if choice else None) + compat_lines(moved))
    if moved and choice is not None:
        choice, problem = None, moved[0]
    steps = None
    if args.smoke and choice is not None:
        folder = keep or Path(tempfile.mkdtemp(prefix="bioqa-doctor-"))
        folder.mkdir(parents=True, exist_ok=True)
        steps = smoke_run(folder, choice.device)
        show([(f"smoke: {s.name}", f"{'ok' if s.ok else 'FAILED'} in {s.seconds:.1f} s; {s.detail}") for s in steps])
        if keep is None and all(step.ok for step in steps):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    ready, line = verdict(choice, problem, steps)
    show([("verdict", line)])
    return 0 if ready else 1


def show(lines: list[tuple[str, str]]) -> None:
    for label, value in lines:
        print(f"  {label:<20} {value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: doctor(argv))


if __name__ == "__main__":
    sys.exit(main())
